"""The training input at image level: canvases and the in-model crop and resize vs Transform, tf.data service."""

import io
import os

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from components.download.images import ImageSettings
from tests import helpers
from trainer import canvas, data
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


def _on_canvas(jpeg: bytes, side: int):
    """One photo through the training input's canvas batching, as a batch of one."""
    jpegs = tf.data.Dataset.from_tensors((tf.constant([jpeg]), tf.zeros([1, 1])))
    inputs, _ = next(iter(canvas.canvas_batches(jpegs, side, batch_size=1, drop_remainder=False)))
    return inputs


def test_a_whole_photo_on_the_canvas_is_transforms_image(photos, transform_output):
    rows, _, _ = transform_output
    layer = canvas.CanvasToImage(SIZE, augment=True, seed=0)
    whole, mirrored = tf.constant([[0, 0, 0, 0]]), tf.constant([True])
    for photo, row in zip(photos, rows):
        inputs = _on_canvas(photo[features.IMAGE_KEY][0], 128)
        expected = np.asarray(row[IMAGE_FEATURE])
        # Outside training the augmenting layer gives the whole photo, as serving sees it.
        np.testing.assert_allclose(layer(inputs, training=False)[0], expected, atol=1e-4)
        window = tf.concat([whole[:, :2], inputs[canvas.SHAPE]], axis=1)
        flipped = canvas.crop_and_resize(inputs[canvas.CANVAS], window, mirrored, SIZE)
        np.testing.assert_allclose(flipped[0], expected[:, ::-1], atol=1e-4)


def test_a_window_is_the_decoded_crop_resized_as_transform_resizes(photos):
    for photo in photos[:4]:
        jpeg = photo[features.IMAGE_KEY][0]
        inputs = _on_canvas(jpeg, 128)
        height, width = inputs[canvas.SHAPE][0].numpy()
        window = [3, 2, height - 7, width - 5]
        expected = resize_and_scale(tf.io.decode_jpeg(jpeg, channels=3)[3 : height - 4, 2 : width - 3], SIZE)
        got = canvas.crop_and_resize(inputs[canvas.CANVAS], tf.constant([window]), tf.constant([False]), SIZE)
        np.testing.assert_allclose(got[0], expected, atol=1e-4)


def test_a_photo_larger_than_the_canvas_is_shrunk_to_fit(photos):
    jpeg = photos[0][features.IMAGE_KEY][0]  # 120 x 90
    inputs = _on_canvas(jpeg, 60)
    assert inputs[canvas.CANVAS].shape == (1, 60, 60, 3) and inputs[canvas.CANVAS].dtype == tf.uint8
    assert inputs[canvas.SHAPE][0].numpy().tolist() == [45, 60]
    assert int(tf.reduce_max(inputs[canvas.CANVAS][0, 45:])) == 0  # below the photo: the zeros of the canvas
    small = tf.image.resize(tf.io.decode_jpeg(jpeg, channels=3), [45, 60], antialias=True)
    np.testing.assert_allclose(tf.cast(inputs[canvas.CANVAS][0, :45], tf.float32), tf.round(small), atol=1)


def test_batches_put_each_photo_on_its_canvas_as_one_photo_alone(photos):
    jpegs = [photo[features.IMAGE_KEY][0] for photo in photos[:5]]
    labels = np.arange(10, dtype=np.float32).reshape(5, 2)
    batches = tf.data.Dataset.from_tensor_slices((jpegs, labels)).batch(3)  # batches of the parser's size
    got = list(canvas.canvas_batches(batches, 128, batch_size=2, drop_remainder=False))
    assert [len(batch_labels) for _, batch_labels in got] == [2, 2, 1]
    canvases = np.concatenate([inputs[canvas.CANVAS] for inputs, _ in got])
    shapes = np.concatenate([inputs[canvas.SHAPE] for inputs, _ in got])
    np.testing.assert_array_equal(np.concatenate([batch_labels for _, batch_labels in got]), labels)
    for jpeg, on_canvas, shape in zip(jpegs, canvases, shapes):
        decoded = tf.io.decode_jpeg(jpeg, channels=3).numpy()  # all these photos fit on the canvas
        alone = np.zeros((128, 128, 3), np.uint8)
        alone[: decoded.shape[0], : decoded.shape[1]] = decoded
        np.testing.assert_array_equal(on_canvas, alone)
        np.testing.assert_array_equal(shape, decoded.shape[:2])


def test_the_canvas_holds_the_stored_size_unless_told():
    assert canvas.STORED_MAX_SIZE == ImageSettings().max_size  # the download job's default
    assert canvas.canvas_side(75) == 299 and canvas.canvas_side(331) == 331 and canvas.canvas_side(75, 96) == 96
    with pytest.raises(ValueError, match="canvas_size must be 0"):
        canvas.canvas_side(75, -1)


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


def test_crop_windows_keep_80_to_100_percent_inside_the_image():
    generator = tf.random.Generator.from_seed(0)
    shapes = tf.constant([[90, 120]] * 400)
    y, x, h, w = canvas.random_windows(shapes, lambda shape: generator.uniform(shape)).numpy().T
    assert (y >= 0).all() and (x >= 0).all() and (y + h <= 90).all() and (x + w <= 120).all()
    assert (h >= 72).all() and (w >= 96).all() and (h <= 90).all() and (w <= 120).all()
    assert len(set(zip(y, x, h, w))) > 100  # random, not one fixed crop
    assert np.corrcoef(h, w)[0, 1] > 0.9  # one zoom per photo: the aspect ratio is kept


@pytest.mark.slow
def test_training_batches_are_canvases_and_the_layer_augments_them(transform_output):
    _, tf_transform_output, pattern = transform_output
    dataset = data.input_fn(pattern, tf_transform_output, 8, training=True, shuffle_buffer=1, cycle_length=1, seed=3)
    layer = canvas.CanvasToImage(SIZE, augment=True, seed=3)
    sizes = {(h, w) for w, h in PHOTO_SIZES}
    for inputs, labels in dataset.take(2):
        assert inputs[canvas.CANVAS].shape == (8, 299, 299, 3) and inputs[canvas.CANVAS].dtype == tf.uint8
        assert {tuple(s) for s in inputs[canvas.SHAPE].numpy()} <= sizes
        assert labels.shape == (8, NUM_LABELS) and set(np.unique(labels)) <= {0.0, 1.0}
        assert float(tf.reduce_sum(labels[:, NUM_LABELS - 1])) == 8  # every photo has the last label
        augmented, plain = layer(inputs, training=True), layer(inputs, training=False)
        assert augmented.shape == (8, SIZE, SIZE, 3) and augmented.dtype == tf.float32
        assert -1.0 <= float(tf.reduce_min(augmented)) and float(tf.reduce_max(augmented)) <= 1.0
        assert np.abs(augmented - plain).mean() > 0.01
        assert np.abs(augmented - layer(inputs, training=True)).mean() > 0.01  # a new draw each call


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
    dataset = data.input_fn(pattern, tf_transform_output, 4, training=True, data_service_address=dispatcher.target)
    batches = list(dataset.take(3))
    assert len(batches) == 3
    for inputs, labels in batches:
        assert inputs[canvas.CANVAS].shape == (4, 299, 299, 3) and labels.shape == (4, NUM_LABELS)
        assert float(tf.reduce_sum(labels[:, NUM_LABELS - 1])) == 4
    del worker, dispatcher


def test_evaluation_through_the_service_is_refused(transform_output):
    _, tf_transform_output, pattern = transform_output
    with pytest.raises(ValueError, match="training input only"):
        data.input_fn(pattern, tf_transform_output, 4, training=False, data_service_address="grpc://localhost:1")
