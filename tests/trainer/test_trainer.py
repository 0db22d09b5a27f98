"""Transform's preprocessing_fn, the model, and the serving signatures, on a few real JPEGs."""

import random

import numpy as np
import pytest
import tensorflow as tf
import tf_keras as keras

from cli import demo_data
from tests.helpers import jpeg, transform
from trainer import calibration, exporter, model as model_lib, trivial_baseline
from imat_common import features
from trainer.preprocessing import IMAGE_FEATURE, LABELS_FEATURE, multi_hot, read_example_count

SIZE, NUM_LABELS = 75, 18


@pytest.fixture(scope="module")
def raw_examples():
    rng = random.Random(3)
    rows = []
    for _ in range(6):
        im, labels = demo_data.render(rng, 120)
        rows.append({features.IMAGE_KEY: [jpeg(im.resize((120, 90)))], features.LABELS_KEY: labels})
    rows[-1][features.LABELS_KEY] = []  # an example without labels
    return rows


@pytest.fixture(scope="module")
def transformed(raw_examples, tmp_path_factory):
    """(transformed rows, TFTransformOutput) from tft_beam.AnalyzeAndTransformDataset."""
    return transform(raw_examples, str(tmp_path_factory.mktemp("tft")), NUM_LABELS, SIZE)


def test_preprocessing_gives_inception_images_and_dense_multi_hot(raw_examples, transformed):
    rows, _ = transformed
    assert len(rows) == len(raw_examples)
    for raw, row in zip(raw_examples, rows):
        image, labels = np.asarray(row[IMAGE_FEATURE]), np.asarray(row[LABELS_FEATURE])
        assert image.shape == (SIZE, SIZE, 3) and image.dtype == np.float32
        assert -1.0 <= image.min() < -0.2 and 0.2 < image.max() <= 1.0  # scaled for InceptionV3, not 0..255
        assert labels.shape == (NUM_LABELS,) and labels.dtype == np.float32
        expected = np.zeros(NUM_LABELS, np.float32)
        expected[np.asarray(raw[features.LABELS_KEY], int) - 1] = 1.0
        np.testing.assert_array_equal(labels, expected)
    assert np.asarray(rows[-1][LABELS_FEATURE]).sum() == 0


def test_transform_counts_train_labels_for_the_baseline(raw_examples, transformed):
    _, tf_transform_output = transformed
    expected = {}
    for raw in raw_examples:
        for label_id in raw[features.LABELS_KEY]:
            expected[label_id] = expected.get(label_id, 0) + 1
    assert trivial_baseline.read_frequencies(tf_transform_output) == expected
    assert read_example_count(tf_transform_output) == len(raw_examples)  # what train_epochs counts on


def test_a_transform_graph_without_the_count_is_refused_by_name(tmp_path):
    class Old:  # a graph written before Transform counted the train split
        def vocabulary_file_by_name(self, name):
            return None

    with pytest.raises(ValueError, match="no 'train_example_count' vocabulary.*run Transform again"):
        read_example_count(Old())
    (tmp_path / "count").write_text("12 labels\n")
    Old.vocabulary_file_by_name = lambda self, name: str(tmp_path / "count")
    with pytest.raises(ValueError, match="count: expected one line 'count example', got \\[\\['12', 'labels'\\]\\]"):
        read_example_count(Old())


def test_multi_hot_accepts_sparse_ragged_and_dense_label_ids():
    # The same three examples as SchemaGen's fixed-length guess (dense), a variable-length
    # schema (sparse) and a ragged one; a dense tensor pads with 0.
    lists = [[1, 4], [2, 3], [4, 4]]
    expected = np.array([[1, 0, 0, 1], [0, 1, 1, 0], [0, 0, 0, 1]], np.float32)
    ragged = tf.ragged.constant(lists, dtype=tf.int64)
    for label_ids in (ragged, ragged.to_sparse(), tf.constant(lists, tf.int64)):
        np.testing.assert_array_equal(multi_hot(label_ids, 4).numpy(), expected, err_msg=type(label_ids).__name__)
    padded = tf.constant([[1, 0], [3, 2], [0, 0]], tf.int64)
    np.testing.assert_array_equal(multi_hot(padded, 4).numpy(), [[1, 0, 0, 0], [0, 1, 1, 0], [0, 0, 0, 0]])
    one_each = tf.constant([2, 4, 1], tf.int64)  # a scalar feature: one id per example
    np.testing.assert_array_equal(multi_hot(one_each, 4).numpy(), [[0, 1, 0, 0], [0, 0, 0, 1], [1, 0, 0, 0]])


def test_the_trainer_tells_calibration_files_from_eval_files():
    files = ["/x/Examples/7/Split-calibration/*", "/x/Examples/7/Split-eval/*"]
    assert calibration.split_files(files, "eval") == ["/x/Examples/7/Split-eval/*"]
    assert calibration.split_files(files, "calibration") == ["/x/Examples/7/Split-calibration/*"]
    with pytest.raises(ValueError, match="no 'calibration' split"):
        calibration.split_files(files[1:], "calibration")


def _model():
    keras.utils.set_random_seed(0)
    return model_lib.build_model(model_lib.ModelConfig(num_labels=NUM_LABELS, image_size=SIZE, weights="none"))


@pytest.mark.slow
def test_one_training_step_lowers_the_loss():
    config = model_lib.ModelConfig(num_labels=NUM_LABELS, image_size=SIZE, weights="none", dropout=0.0)
    keras.utils.set_random_seed(0)
    model = model_lib.build_model(config)
    model_lib.compile_for_head(model, config)
    images = np.random.default_rng(0).uniform(-1, 1, (8, SIZE, SIZE, 3)).astype(np.float32)
    labels = (np.random.default_rng(1).uniform(size=(8, NUM_LABELS)) < 0.2).astype(np.float32)
    before = model.evaluate(images, labels, verbose=0)[0]
    model.train_on_batch(images, labels)
    after = model.evaluate(images, labels, verbose=0)[0]
    assert after < before
    assert model.output_shape == (None, NUM_LABELS)


def test_mixed_precision_stays_inside_the_model():
    config = model_lib.ModelConfig(
        num_labels=NUM_LABELS, image_size=SIZE, weights="none", mixed_precision="mixed_bfloat16"
    )
    model = model_lib.build_model(config)
    assert keras.mixed_precision.global_policy().name == "float32"  # the process is as it was
    conv = next(layer for layer in model_lib.backbone_of(model).layers if isinstance(layer, keras.layers.Conv2D))
    assert conv.compute_dtype == "bfloat16"
    assert model.get_layer(model_lib.PROBABILITIES).compute_dtype == "float32"


def test_fine_tuning_unfreezes_only_the_top_blocks():
    model = _model()
    config = model_lib.ModelConfig(num_labels=NUM_LABELS, image_size=SIZE, weights="none", fine_tune_from="mixed9")
    model_lib.compile_for_fine_tuning(model, config)
    backbone = model_lib.backbone_of(model)
    names = [layer.name for layer in backbone.layers]
    assert not any(layer.trainable for layer in backbone.layers[: names.index("mixed9")])
    assert all(layer.trainable for layer in backbone.layers[names.index("mixed9") :])
    with pytest.raises(ValueError, match="not a layer of inception_v3"):
        model_lib.compile_for_fine_tuning(model, model_lib.ModelConfig(NUM_LABELS, SIZE, "none", fine_tune_from="nope"))


@pytest.mark.slow
def test_serving_signatures_match_the_model_on_transformed_features(raw_examples, transformed, tmp_path):
    rows, tf_transform_output = transformed
    model = _model()
    thresholds = np.full(NUM_LABELS, 0.5, np.float32)
    thresholds[0] = 0.0  # label 1 always decided, label 2 never
    thresholds[1] = 1.01
    names = [f"name{i}" for i in range(1, NUM_LABELS + 1)]
    exporter.export(model, tf_transform_output, thresholds, str(tmp_path / "serving"), names)
    loaded = tf.saved_model.load(str(tmp_path / "serving"))

    images = np.stack([np.asarray(r[IMAGE_FEATURE]) for r in rows])
    expected = model(images, training=False).numpy()
    jpegs = tf.constant([r[features.IMAGE_KEY][0] for r in raw_examples])
    from_bytes = loaded.signatures["predict_images"](images=jpegs)
    np.testing.assert_allclose(from_bytes[exporter.PROBABILITIES].numpy(), expected, atol=1e-5)

    serialized = tf.constant(
        [
            tf.train.Example(
                features=tf.train.Features(
                    feature={
                        features.IMAGE_KEY: tf.train.Feature(bytes_list=tf.train.BytesList(value=r[features.IMAGE_KEY]))
                    }
                )
            ).SerializeToString()
            for r in raw_examples
        ]
    )
    from_examples = loaded.signatures["serving_default"](examples=serialized)
    np.testing.assert_allclose(from_examples[exporter.PROBABILITIES].numpy(), expected, atol=1e-5)
    decisions = from_examples[exporter.DECISIONS].numpy()
    np.testing.assert_array_equal(decisions, (expected >= thresholds).astype(np.float32))
    assert (from_examples[exporter.LABEL_IDS].numpy()[:, 0] == 1).all()
    assert (from_examples[exporter.LABEL_IDS].numpy()[:, 1] == 0).all()
    assert from_examples[exporter.LABEL_NAMES].numpy()[0, 0] == b"name1"

    embedding = loaded.signatures["embed_images"](images=jpegs)[exporter.EMBEDDING].numpy()
    assert embedding.shape == (len(rows), 2048)
    np.testing.assert_allclose(np.linalg.norm(embedding, axis=1), 1.0, atol=1e-5)
