"""The training input at image level: fused augmentation against Transform, options, tf.data service."""

import io
import os

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from tests import helpers
from trainer import data
from imat_common import features
from trainer.preprocessing import IMAGE_FEATURE, resize_and_scale

SIZE, NUM_LABELS = 75, 6
# (width, height): both sides shrink, one shrinks, both grow, unchanged.
PHOTO_SIZES = [(120, 90), (60, 80), (50, 60), (75, 75)]


def _photo(rng: np.random.Generator, width: int, height: int) -> bytes:
    """A JPEG with smooth shapes and noise, so that crops and mirrors change the pixels."""
    x, y = np.meshgrid(np.linspace(0, 1, width), np.linspace(0, 1, height))
    base = 128 + 90 * np.sin(9 * x[..., None] + 5 * y[..., None] ** 2 + np.arange(3))
    pixels = np.clip(base + rng.normal(0, 12, (height, width, 3)), 0, 255).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="JPEG", quality=90)
    return buf.getvalue()


@pytest.fixture(scope="module")
def photos():
    rng = np.random.default_rng(5)
    return [
        {features.IMAGE_KEY: [_photo(rng, w, h)], features.LABELS_KEY: [1 + i % NUM_LABELS, NUM_LABELS]}
        for i, (w, h) in enumerate(PHOTO_SIZES * 4)
    ]


@pytest.fixture(scope="module")
def transform_output(photos, tmp_path_factory):
    """(transformed rows, TFTransformOutput, shard pattern) for the photos at 75 px."""
    rows, tf_transform_output = helpers.transform(photos, str(tmp_path_factory.mktemp("tft")), NUM_LABELS, SIZE)
    shards = str(tmp_path_factory.mktemp("shards"))
    for shard in range(2):
        helpers.write_examples(photos[shard::2], os.path.join(shards, f"part-{shard}.tfrecord.gz"))
    return rows, tf_transform_output, os.path.join(shards, "*.tfrecord.gz")


def test_a_full_image_crop_is_transforms_image(photos, transform_output):
    rows, _, _ = transform_output
    for photo, row in zip(photos, rows):
        jpeg = tf.constant(photo[features.IMAGE_KEY][0])
        height, width = tf.image.extract_jpeg_shape(jpeg).numpy()[:2]
        whole = tf.constant([0, 0, height, width])
        expected = np.asarray(row[IMAGE_FEATURE])
        np.testing.assert_allclose(data.decode_crop_resize(jpeg, whole, tf.constant(False), SIZE), expected, atol=1e-5)
        np.testing.assert_allclose(
            data.decode_crop_resize(jpeg, whole, tf.constant(True), SIZE), expected[:, ::-1], atol=1e-5
        )


@pytest.mark.parametrize("height,width", [(60, 50), (75, 40), (75, 75), (299, 199), (10, 299)])
def test_enlarging_without_antialiasing_equals_the_antialiased_resize(height, width):
    image = tf.constant(np.random.default_rng(height * width).integers(0, 256, (height, width, 3), dtype=np.uint8))
    size = max(height, width)
    antialiased = tf.image.resize(image, [size, size], antialias=True) / 127.5 - 1.0
    np.testing.assert_allclose(resize_and_scale(image, size), antialiased, atol=2e-5)


def test_shrinking_stays_antialiased():
    image = tf.constant(np.random.default_rng(0).integers(0, 256, (120, 60, 3), dtype=np.uint8))
    antialiased = tf.image.resize(image, [75, 75], antialias=True) / 127.5 - 1.0
    plain = tf.image.resize(image, [75, 75]) / 127.5 - 1.0
    np.testing.assert_array_equal(resize_and_scale(image, 75), antialiased)
    assert np.abs(plain - antialiased).max() > 0.01  # the branch matters: plain bilinear would alias


def test_crop_windows_keep_80_to_100_percent_inside_the_image(photos):
    jpeg = tf.constant(photos[0][features.IMAGE_KEY][0])  # 120 x 90
    windows = np.array([data.random_crop_window(jpeg).numpy() for _ in range(200)])
    y, x, h, w = windows.T
    assert (y >= 0).all() and (x >= 0).all() and (y + h <= 90).all() and (x + w <= 120).all()
    assert (h >= 72).all() and (w >= 96).all() and (h <= 90).all() and (w <= 120).all()
    assert len(set(map(tuple, windows))) > 100  # random, not one fixed crop


@pytest.mark.slow
def test_augmented_batches_are_inception_images_and_vary(transform_output):
    _, tf_transform_output, pattern = transform_output
    kwargs = dict(batch_size=8, training=True, shuffle_buffer=1, cycle_length=1, seed=3)
    augmented = data.input_fn(pattern, tf_transform_output, augment_images=True, **kwargs)
    plain = data.input_fn(pattern, tf_transform_output, augment_images=False, **kwargs)
    for (images, labels), (plain_images, plain_labels) in zip(augmented.take(2), plain.take(2)):
        assert images.shape == (8, SIZE, SIZE, 3) and images.dtype == tf.float32
        assert -1.0 <= float(tf.reduce_min(images)) and float(tf.reduce_max(images)) <= 1.0
        assert labels.shape == (8, NUM_LABELS) and set(np.unique(labels)) <= {0.0, 1.0}
        assert float(tf.reduce_sum(labels[:, NUM_LABELS - 1])) == 8  # every photo has the last label
        assert np.abs(images - plain_images).mean() > 0.01


def test_only_training_gives_up_deterministic_order(transform_output):
    _, tf_transform_output, pattern = transform_output
    training = data.input_fn(pattern, tf_transform_output, 4, training=True)
    evaluation = data.input_fn(pattern, tf_transform_output, 4, training=False)
    assert training.options().deterministic is False
    assert evaluation.options().deterministic is not False
    first = [labels.numpy() for _, labels in evaluation]
    second = [labels.numpy() for _, labels in data.input_fn(pattern, tf_transform_output, 4, training=False)]
    assert all((a == b).all() for a, b in zip(first, second)) and sum(len(b) for b in first) == 16


def test_batches_come_through_a_tf_data_service(transform_output):
    _, tf_transform_output, pattern = transform_output
    dispatcher = tf.data.experimental.service.DispatchServer()
    address = dispatcher.target.split("://")[1]
    worker = tf.data.experimental.service.WorkerServer(
        tf.data.experimental.service.WorkerConfig(dispatcher_address=address)
    )
    dataset = data.input_fn(
        pattern, tf_transform_output, 4, training=True, augment_images=True, data_service_address=dispatcher.target
    )
    batches = list(dataset.take(3))
    assert len(batches) == 3
    for images, labels in batches:
        assert images.shape == (4, SIZE, SIZE, 3) and labels.shape == (4, NUM_LABELS)
        assert float(tf.reduce_sum(labels[:, NUM_LABELS - 1])) == 4
    del worker, dispatcher


def test_evaluation_through_the_service_is_refused(transform_output):
    _, tf_transform_output, pattern = transform_output
    with pytest.raises(ValueError, match="training input only"):
        data.input_fn(pattern, tf_transform_output, 4, training=False, data_service_address="grpc://localhost:1")
