"""The model's options: losses against hand-computed values, backbones, pooling and head."""

import dataclasses
import math

import numpy as np
import pytest
import tensorflow as tf
import tf_keras as keras

from trainer import backbones, canvas, losses, model as model_lib

NUM_LABELS = 5


def _bce(p, y):
    return -(y * math.log(p) + (1 - y) * math.log(1 - p))


def test_asymmetric_loss_equals_the_papers_formula_by_hand():
    y = [[1.0, 0.0, 0.0, 1.0]]
    p = [[0.8, 0.3, 0.02, 0.4]]
    # positives: gamma_pos 0 -> plain log loss; negatives: p_m = p - 0.05, weighted by p_m ** 4.
    expected = [
        -math.log(0.8),
        -(0.25**4) * math.log(1 - 0.25),
        0.0,  # 0.02 - 0.05 < 0: an easy negative costs nothing
        -math.log(0.4),
    ]
    got = losses.AsymmetricLoss()(tf.constant(y), tf.constant(p)).numpy()
    assert got == pytest.approx(sum(expected) / 4, rel=1e-5)


def test_asymmetric_loss_without_focusing_or_clip_is_cross_entropy():
    y = np.array([[1.0, 0.0, 1.0], [0.0, 0.0, 1.0]], np.float32)
    p = np.array([[0.7, 0.2, 0.9], [0.6, 0.1, 0.3]], np.float32)
    plain = losses.AsymmetricLoss(gamma_neg=0.0, gamma_pos=0.0, clip=0.0)(y, p).numpy()
    by_hand = np.mean([[_bce(pi, yi) for pi, yi in zip(pr, yr)] for pr, yr in zip(p, y)])
    assert plain == pytest.approx(by_hand, rel=1e-5)


def test_focal_loss_down_weights_easy_examples_by_hand():
    y, p = tf.constant([[1.0, 0.0]]), tf.constant([[0.9, 0.4]])
    got = losses.get_loss("focal")(y, p).numpy()
    expected = ((0.1**2) * -math.log(0.9) + (0.4**2) * -math.log(0.6)) / 2
    assert got == pytest.approx(expected, rel=1e-4)


def test_unknown_loss_backbone_and_pooling_fail_before_training():
    with pytest.raises(ValueError, match="unknown loss 'l2'"):
        losses.get_loss("l2")
    with pytest.raises(ValueError, match="unknown backbone 'vgg'"):
        model_lib.build_model(model_lib.ModelConfig(NUM_LABELS, 75, "none", backbone="vgg"))
    with pytest.raises(ValueError, match="unknown pooling 'sum'"):
        model_lib.build_model(model_lib.ModelConfig(NUM_LABELS, 75, "none", backbone="mobilenetv3small", pooling="sum"))
    with pytest.raises(ValueError, match="below inception_v3's minimum of 75"):
        model_lib.build_model(model_lib.ModelConfig(NUM_LABELS, 64, "none"))


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(backbones.BACKBONES))
def test_every_backbone_builds_trains_a_step_and_fine_tunes_from_its_default(name):
    config = model_lib.ModelConfig(NUM_LABELS, 75, "none", backbone=name)
    model = model_lib.build_model(config)
    assert model.output_shape == (None, NUM_LABELS)
    model_lib.compile_for_fine_tuning(model, config)
    backbone = model_lib.backbone_of(model)
    names = [layer.name for layer in backbone.layers]
    first = names.index(backbones.BACKBONES[name].fine_tune_from)
    assert 0 < first and not any(layer.trainable for layer in backbone.layers[:first])
    assert backbone.layers[first].trainable
    images = np.random.default_rng(0).uniform(-1, 1, (2, 75, 75, 3)).astype(np.float32)
    history = model.fit(images, np.eye(NUM_LABELS, dtype=np.float32)[:2], epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0])


def test_resnet_scaling_gives_the_caffe_pixels_its_weights_expect():
    image = tf.constant([[[[-1.0, 0.0, 1.0]]]])  # one RGB pixel: 0, 127.5, 255
    bgr_less_mean = backbones.BACKBONES["resnet50"].scale(image).numpy().ravel()
    np.testing.assert_allclose(bgr_less_mean, [255 - 103.939, 127.5 - 116.779, 0 - 123.68], rtol=1e-5)
    np.testing.assert_allclose(backbones.BACKBONES["efficientnetv2b0"].scale(image).numpy().ravel(), [0, 127.5, 255])


@pytest.mark.parametrize("pooling, width", [("avg", 576), ("max", 576), ("avgmax", 1152)])
def test_pooling_sets_the_embedding_width_and_the_dense_head_sits_after_it(pooling, width):
    config = model_lib.ModelConfig(NUM_LABELS, 64, "none", backbone="mobilenetv3small", pooling=pooling, head_units=16)
    model = model_lib.build_model(config)
    assert model.get_layer(model_lib.EMBEDDING_LAYER).output_shape == (None, width)
    dense = [layer for layer in model.layers if isinstance(layer, keras.layers.Dense)]
    assert [layer.units for layer in dense] == [16, NUM_LABELS]


def test_the_trainers_custom_config_rebuilds_the_model_config_with_types():
    config = model_lib.ModelConfig.from_custom_config(
        {
            "num_labels": "7",
            "image_size": 96.0,
            "backbone": "xception",
            "loss": "asl",
            "head_units": "32",
            "dropout": "0.1",
            "unrelated": 1,
        }
    )
    assert config == model_lib.ModelConfig(
        num_labels=7, image_size=96, backbone="xception", loss="asl", head_units=32, dropout=0.1
    )
    assert config.first_fine_tuned_layer == "block13_sepconv1_act"
    with pytest.raises(KeyError, match="num_labels"):
        model_lib.ModelConfig.from_custom_config({"image_size": 75})


def test_progressive_resizing_trains_on_small_images_then_serves_full_size():
    config = model_lib.ModelConfig(NUM_LABELS, 75, "none", progressive_image_size=48, backbone="mobilenetv3small")
    model = model_lib.build_model(config)
    on_canvas = canvas.training_model(model, 75, 80, augment=True, seed=0)
    model_lib.compile_for_fine_tuning(model, config, on_canvas)
    labels = np.eye(NUM_LABELS, dtype=np.float32)[:2]
    canvases = np.random.default_rng(1).integers(0, 256, (2, 80, 80, 3)).astype(np.uint8)
    batches = tf.data.Dataset.from_tensors(
        ({canvas.CANVAS: canvases, canvas.SHAPE: np.array([[80, 60], [70, 80]], np.int32)}, labels)
    ).repeat()
    for size in (48, 75):
        canvas.set_image_size(on_canvas, size)
        assert np.isfinite(on_canvas.fit(batches, steps_per_epoch=1, epochs=1, verbose=0).history["loss"][0])
    assert model(np.zeros((1, 75, 75, 3), np.float32)).shape == (1, NUM_LABELS)  # serves full size
    # The new size reaches the traced step: a network fixed at 75 px refuses the 48 px images.
    fixed_config = dataclasses.replace(config, progressive_image_size=0)
    fixed = model_lib.build_model(fixed_config)
    fixed_on_canvas = canvas.training_model(fixed, 75, 80, augment=False, seed=0)
    model_lib.compile_for_fine_tuning(fixed, fixed_config, fixed_on_canvas)
    fixed_on_canvas.fit(batches, steps_per_epoch=1, epochs=1, verbose=0)
    canvas.set_image_size(fixed_on_canvas, 48)
    with pytest.raises(ValueError, match="48"):
        fixed_on_canvas.fit(batches, steps_per_epoch=1, epochs=1, verbose=0)
    with pytest.raises(ValueError, match="progressive_image_size 24 is below mobilenetv3small's minimum of 32"):
        model_lib.build_model(
            model_lib.ModelConfig(NUM_LABELS, 75, "none", progressive_image_size=24, backbone="mobilenetv3small")
        )
