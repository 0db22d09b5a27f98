"""The Trainer's real ``run_fn`` trains what its plan says: which weights move in each segment.

A few steps of MobileNetV3Small at 32-48 px on demo garments, through ``trainer.task.run_fn``
with a real Transform graph and TFRecords. ``keras.Model.fit`` is wrapped to keep the weights
before and after each call (one call per segment); the export after training is skipped.
The layers each segment should train are worked out here from the layer order, not by the
model code under test.
"""

import numpy as np
import pytest
import tf_keras as keras
from tfx.components.trainer.fn_args_utils import FnArgs

from cli import demo_data
from tests.helpers import demo_splits
from trainer import canvas, model as model_lib, task

NUM_LABELS = max(label.label_id for label in demo_data.label_table())
MOBILENET_AUTO = "expanded_conv_9/expand"  # MobileNetV3Small's default first fine-tuned layer
TOTAL_STEPS = 10
SIZE = 48  # progressive resizing trains at 32 px, the smallest MobileNetV3Small takes


@pytest.fixture(scope="module")
def splits(tmp_path_factory):
    """(train files, eval files, transform dir) of demo garments at SIZE px."""
    root = tmp_path_factory.mktemp("examples")
    train, evals = demo_splits(
        str(root / "examples"), str(root / "transform"), {"train": 24, "calibration": 8, "eval": 8}, SIZE
    )
    return train, evals, str(root / "transform")


def _weights(model):
    """{(layer, variable): value} of every variable, the backbone's layer by layer."""
    backbone = model_lib.backbone_of(model)
    layers = [layer for layer in model.layers if layer is not backbone] + list(backbone.layers)
    return {(layer.name, w.name): w.numpy().copy() for layer in layers for w in layer.weights}


def _expected_trainable(model, phase_trains_backbone: bool, first_layer: str):
    """Keys of the variables a segment should train: the head's, and the backbone's from ``first_layer`` on."""
    backbone = model_lib.backbone_of(model)
    layers = [layer for layer in model.layers if layer is not backbone]
    if phase_trains_backbone:
        names = [layer.name for layer in backbone.layers]
        layers += backbone.layers[names.index(first_layer) if first_layer else 0 :]
    return {(layer.name, w.name) for layer in layers for w in layer.trainable_weights}


def _train(monkeypatch, tmp_path, splits, **settings):
    """Runs ``run_fn``; returns (model, [(steps, weights before, weights after)] per ``fit`` call)."""
    calls, trained = [], {}
    fit = keras.Model.fit

    def recording_fit(self, *args, **kwargs):
        network = canvas.network_of(self)  # fit trains the network behind the canvas layer
        assert not self.get_layer(canvas.LAYER_NAME).weights  # which has no weights of its own
        before = _weights(network)
        history = fit(self, *args, **kwargs)
        calls.append((kwargs["steps_per_epoch"], before, _weights(network)))
        return history

    monkeypatch.setattr(keras.Model, "fit", recording_fit)
    monkeypatch.setattr(task, "_calibrate_and_export", lambda model, *a: trained.setdefault("model", model))
    train_files, eval_files, transform_dir = splits
    config = {
        "num_labels": NUM_LABELS,
        "image_size": SIZE,
        "weights": "none",
        "backbone": "mobilenetv3small",
        "dropout": 0.0,
        "head_learning_rate": 1e-2,
        "fine_tune_learning_rate": 1e-2,
        "batch_size": 4,
        "shuffle_buffer": 32,
        "label_map": "",
        **settings,
    }
    task.run_fn(
        FnArgs(
            train_files=train_files,
            eval_files=eval_files,
            transform_output=transform_dir,
            serving_model_dir=str(tmp_path / "serving"),
            model_run_dir="",
            train_steps=TOTAL_STEPS,
            eval_steps=0,
            custom_config=config,
        )
    )
    return trained["model"], calls


def _check_segment(model, before, after, trains_backbone: bool, first_layer: str, label: str, kernels_only=False):
    """Frozen variables bit-identical, trainable ones moved (``kernels_only``: only kernels must move)."""
    expected = _expected_trainable(model, trains_backbone, first_layer)
    moved = {key for key in before if not np.array_equal(before[key], after[key])}
    # Every variable outside the segment's trainable set (batch-norm statistics of frozen layers
    # included) is bit-identical; every trainable one inside it has moved.
    assert moved - expected - _batch_norm_statistics(model, trains_backbone, first_layer) == set(), label
    must_move = {key for key in expected if not kernels_only or "kernel" in key[1]}
    assert must_move - moved == set(), f"{label}: trainable weights that did not move"


def _batch_norm_statistics(model, trains_backbone: bool, first_layer: str):
    """The moving means and variances of the batch norms a from-scratch segment trains (they move with them)."""
    if not trains_backbone:
        return set()
    backbone = model_lib.backbone_of(model)
    names = [layer.name for layer in backbone.layers]
    return {
        (layer.name, w.name)
        for layer in backbone.layers[names.index(first_layer) if first_layer else 0 :]
        if isinstance(layer, keras.layers.BatchNormalization)
        for w in layer.non_trainable_weights
    }


@pytest.mark.slow
def test_no_head_steps_trains_the_whole_network_from_step_zero(monkeypatch, tmp_path, splits):
    model, calls = _train(monkeypatch, tmp_path, splits, head_steps_fraction=0.0, fine_tune_from="")
    assert [steps for steps, _, _ in calls] == [TOTAL_STEPS]
    _check_segment(model, calls[0][1], calls[0][2], True, "", "fine-tuning from step 0")
    backbone = model_lib.backbone_of(model)
    assert len(model.trainable_weights) > 100 and all(layer.trainable for layer in backbone.layers)


@pytest.mark.slow
def test_the_head_phase_trains_only_the_head_then_the_top_blocks_train(monkeypatch, tmp_path, splits):
    model, calls = _train(monkeypatch, tmp_path, splits, head_steps_fraction=0.3, fine_tune_from="auto")
    assert [steps for steps, _, _ in calls] == [3, 7]
    (_, before_head, after_head), (_, before_tune, after_tune) = calls
    _check_segment(model, before_head, after_head, False, "", "phase 1")
    _check_segment(model, before_tune, after_tune, True, MOBILENET_AUTO, "phase 2")


@pytest.mark.slow
def test_all_head_steps_never_touch_the_backbone(monkeypatch, tmp_path, splits):
    model, calls = _train(monkeypatch, tmp_path, splits, head_steps_fraction=1.0, fine_tune_from="")
    assert [steps for steps, _, _ in calls] == [TOTAL_STEPS]
    _check_segment(model, calls[0][1], calls[0][2], False, "", "head only")


@pytest.mark.slow
def test_progressive_resizing_keeps_each_segments_trainable_set(monkeypatch, tmp_path, splits):
    model, calls = _train(
        monkeypatch,
        tmp_path,
        splits,
        head_steps_fraction=0.3,
        fine_tune_from="",
        progressive_image_size=32,
        progressive_fraction=0.5,
    )
    assert [steps for steps, _, _ in calls] == [3, 2, 5]  # head at 32 px, fine-tuning at 32 px, then 48 px
    for (_, before, after), trains_backbone, label in zip(
        calls, (False, True, True), ("phase 1, 32 px", "phase 2, 32 px", "phase 2, 48 px")
    ):
        _check_segment(model, before, after, trains_backbone, "", label)


@pytest.mark.slow
def test_training_starts_from_a_weights_file_and_fine_tunes_it(monkeypatch, tmp_path, splits):
    keras.utils.set_random_seed(11)
    start = keras.applications.MobileNetV3Small(include_top=False, weights=None, input_shape=(SIZE, SIZE, 3))
    start.save_weights(str(tmp_path / "backbone.h5"))
    model, calls = _train(monkeypatch, tmp_path, splits, weights=str(tmp_path / "backbone.h5"), head_steps_fraction=0.3)
    (_, before_head, after_head), (_, before_tune, after_tune) = calls
    for layer in start.layers:  # the Trainer's backbone began as the file's
        for w in layer.weights:
            np.testing.assert_array_equal(before_head[(layer.name, w.name)], w.numpy(), err_msg=w.name)
    _check_segment(model, before_head, after_head, False, "", "phase 1 from the file")
    # Pretrained weights run batch norm in inference mode, and on this random "pretrained" network
    # a gamma's gradient can be too small for a float32 Adam step to change it (seen once): the
    # kernels must move, and nothing frozen may.
    _check_segment(model, before_tune, after_tune, True, MOBILENET_AUTO, "phase 2 from the file", kernels_only=True)
