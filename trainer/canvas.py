"""Training images on the accelerator: the CPU only decodes; crop, mirror, resize and scaling run in the model.

The training input (``trainer/data.py``) decodes each stored JPEG to uint8 and pastes it into
the top-left corner of a square of zeros, the *canvas*, so that photos of any shape batch
together; its height and width travel beside it (``canvas_batches``). The training model's
first layer, ``CanvasToImage``, does the rest where the model runs: the random crop window and
mirror of augmentation, the resize to the model's side and the scaling to [-1, 1]. On a GPU
those cost microseconds; on the input's CPU cores they cost as much as decoding
(docs/benchmarks.md, "Training input: CPU per image").

The resize is a product with two interpolation matrices per image whose weights are those of
TensorFlow's antialiased bilinear resize (``tf.image.resize(..., antialias=True)``, triangle
kernel, half-pixel centres, widened when shrinking). So a whole-image window gives Transform's
image (``preprocessing.resize_and_scale``, which serving and evaluation use) within float
rounding: ``tests/trainer/test_input_fn.py`` holds them equal. Matrices, not a gather, because
they express the antialiased shrink and run as batched matrix products on GPUs and TPUs.

A photo larger than the canvas (stored with a larger ``max_size`` than the canvas allows) is
shrunk on the CPU to fit, keeping its aspect ratio, before it is pasted: correct, but it costs
the CPU a resize and the model sees a twice-resized image. ``canvas_side`` chooses a canvas
that holds the download job's default stored size.
"""

from typing import Optional

import tensorflow as tf
import tf_keras as keras

CANVAS = "image_canvas"  # uint8 [side, side, 3]: the decoded photo at the top left, zeros elsewhere
SHAPE = "image_shape"  # int32 [2]: the photo's height and width on the canvas
LAYER_NAME = "canvas_to_image"

# The download job's default stored size (components/download/images.py, ImageSettings.max_size).
STORED_MAX_SIZE = 299
MIN_CROP_FRACTION = 0.8  # augmentation's crop keeps 80-100 % of each side


def canvas_side(image_size: int, canvas_size: int = 0) -> int:
    """The canvas side: ``canvas_size``, or when 0 the larger of ``image_size`` and the stored 299 px."""
    if canvas_size < 0:
        raise ValueError(f"canvas_size must be 0 (automatic) or a side in pixels, got {canvas_size}")
    return canvas_size or max(int(image_size), STORED_MAX_SIZE)


def decode_to_fit(jpeg: tf.Tensor, side: int):
    """One JPEG string -> (uint8 [height, width, 3] no larger than ``side``, int32 [height, width]).

    A photo larger than ``side`` is shrunk to fit, its aspect ratio kept.
    """
    image = tf.io.decode_jpeg(jpeg, channels=3)
    height, width = tf.shape(image)[0], tf.shape(image)[1]
    longer = tf.maximum(height, width)

    def shrink():
        scale = side / tf.cast(longer, tf.float64)
        fit = [
            tf.maximum(1, tf.cast(tf.round(tf.cast(height, tf.float64) * scale), tf.int32)),
            tf.maximum(1, tf.cast(tf.round(tf.cast(width, tf.float64) * scale), tf.int32)),
        ]
        resized = tf.image.resize(image, fit, antialias=True)
        return tf.cast(tf.clip_by_value(tf.round(resized), 0, 255), tf.uint8)

    image = tf.cond(longer > side, shrink, lambda: image)
    return image, tf.shape(image)[:2]


def canvas_batches(dataset: tf.data.Dataset, side: int, batch_size: int, drop_remainder: bool) -> tf.data.Dataset:
    """Batches of (JPEG strings [batch], labels [batch, ...]) -> batches of ({CANVAS, SHAPE}, labels).

    Decoding runs photo by photo, and ``padded_batch`` copies each decoded photo into the
    top-left corner of its canvas in the batch, so the CPU writes each photo's pixels once
    (against a canvas per photo, then a stacked copy: measured in docs/benchmarks.md,
    "Training input: CPU per image").
    """

    def decode(jpeg, labels):
        image, shape = decode_to_fit(jpeg, side)
        return {CANVAS: image, SHAPE: shape}, labels

    dataset = dataset.unbatch().map(decode, num_parallel_calls=tf.data.AUTOTUNE)
    return dataset.padded_batch(
        batch_size,
        padded_shapes=({CANVAS: [side, side, 3], SHAPE: [2]}, dataset.element_spec[1].shape),
        drop_remainder=drop_remainder,
    )


def interpolation_matrix(
    start: tf.Tensor, length: tf.Tensor, out_size: int, in_size: int, flip: Optional[tf.Tensor] = None
) -> tf.Tensor:
    """Per example, the [out_size, in_size] weights that resize ``length`` pixels from ``start`` to ``out_size``.

    TensorFlow's antialiased bilinear weights (``scale_and_translate``, triangle kernel): output
    pixel i samples at ``start + (i + 0.5) * length / out_size`` in pixel-edge coordinates, with
    a kernel widened by ``length / out_size`` when shrinking; only pixels inside the window count,
    and each row's weights sum to 1 (the edge clamps as TensorFlow's does).

    Args:
      start, length: float32 [batch]: the window along this axis, in canvas pixels.
      flip: bool [batch] or None: mirror the output along this axis.
    """
    start, length = start[:, None, None], length[:, None, None]
    out_pixel = tf.range(out_size, dtype=tf.float32)[None, :, None]
    in_pixel = tf.range(in_size, dtype=tf.float32)[None, None, :]
    sample = start + (out_pixel + 0.5) * length / out_size
    kernel_scale = tf.maximum(length / out_size, 1.0)
    weights = tf.nn.relu(1.0 - tf.abs(in_pixel + 0.5 - sample) / kernel_scale)
    inside = tf.logical_and(in_pixel >= start, in_pixel < start + length)
    weights = tf.where(inside, weights, 0.0)
    weights = weights / tf.maximum(tf.reduce_sum(weights, axis=2, keepdims=True), 1e-30)
    if flip is not None:
        weights = tf.where(flip[:, None, None], tf.reverse(weights, axis=[1]), weights)
    return weights


def crop_and_resize(canvases: tf.Tensor, windows: tf.Tensor, flips: tf.Tensor, image_size: int) -> tf.Tensor:
    """Canvases (uint8 [batch, side, side, 3]) -> float32 [batch, size, size, 3] in [-1, 1].

    Args:
      windows: int32 [batch, 4]: y, x, height, width of each image's window on its canvas.
      flips: bool [batch]: mirror left to right.
    """
    side = canvases.shape[1]
    windows = tf.cast(windows, tf.float32)
    rows = interpolation_matrix(windows[:, 0], windows[:, 2], image_size, side)
    cols = interpolation_matrix(windows[:, 1], windows[:, 3], image_size, side, flips)
    pixels = tf.cast(canvases, tf.float32)
    # Rows first: the product then runs on the [size, side] intermediate, not the whole canvas twice.
    pixels = tf.einsum("bis,bsxc->bixc", rows, pixels)
    pixels = tf.einsum("bjx,bixc->bijc", cols, pixels)
    return pixels / 127.5 - 1.0


def random_windows(shapes: tf.Tensor, uniform) -> tf.Tensor:
    """Random [y, x, height, width] windows of 80-100 % of each side (one fraction per image).

    Args:
      shapes: int32 [batch, 2]: each image's height and width.
      uniform: ``shape -> float32 uniform in [0, 1)``: the layer's random generator.
    """
    sides = tf.cast(shapes, tf.float32)
    batch = tf.shape(shapes)[:1]
    fraction = MIN_CROP_FRACTION + (1.0 - MIN_CROP_FRACTION) * uniform(batch)
    crop = tf.maximum(1.0, tf.round(sides * fraction[:, None]))
    offset = tf.floor(uniform(tf.shape(sides)) * (sides - crop + 1.0))
    return tf.cast(tf.concat([offset, crop], axis=1), tf.int32)


class CanvasToImage(keras.__internal__.layers.BaseRandomLayer):
    """``{CANVAS, SHAPE}`` -> the model's float image; with ``augment``, a random crop and mirror in training.

    Outside training, or without ``augment``, the window is the whole photo: Transform's image.
    """

    def __init__(self, image_size: int, augment: bool = False, seed: Optional[int] = None, **kwargs):
        kwargs.setdefault("name", LAYER_NAME)
        kwargs.setdefault("dtype", "float32")  # the resize stays float32 under mixed precision
        super().__init__(seed=seed, force_generator=True, **kwargs)
        self.image_size = int(image_size)
        self.augment = bool(augment)
        self.seed = seed

    def call(self, inputs, training=None):
        canvases, shapes = inputs[CANVAS], tf.cast(inputs[SHAPE], tf.int32)
        whole = tf.concat([tf.zeros_like(shapes), shapes], axis=1)
        no_flip = tf.zeros(tf.shape(shapes)[:1], tf.bool)
        if self.augment and training:
            uniform = lambda shape: self._random_generator.random_uniform(shape)
            windows, flips = random_windows(shapes, uniform), uniform(tf.shape(shapes)[:1]) < 0.5
        else:
            windows, flips = whole, no_flip
        return crop_and_resize(canvases, windows, flips, self.image_size)

    def get_config(self):
        return {**super().get_config(), "image_size": self.image_size, "augment": self.augment, "seed": self.seed}


def training_model(model: keras.Model, image_size: int, side: int, augment: bool, seed: Optional[int]) -> keras.Model:
    """``model`` (float images in) behind a ``CanvasToImage`` layer: what ``fit`` trains on the training input.

    It shares every weight with ``model``; ``model`` alone is what is exported and scored.
    """
    inputs = {
        CANVAS: keras.Input(shape=(side, side, 3), dtype="uint8", name=CANVAS),
        SHAPE: keras.Input(shape=(2,), dtype="int32", name=SHAPE),
    }
    images = CanvasToImage(image_size, augment=augment, seed=seed)(inputs)
    return keras.Model(inputs, model(images), name=f"{model.name}_on_canvas")


def set_image_size(train_model: keras.Model, image_size: int) -> None:
    """Makes ``train_model``'s layer give ``image_size`` images (progressive resizing) from its next ``fit``."""
    layer = train_model.get_layer(LAYER_NAME)
    if layer.image_size != image_size:
        layer.image_size = int(image_size)
        train_model.train_function = None  # fit traces the step again at the new size


def network_of(train_model: keras.Model) -> keras.Model:
    """The network inside a ``training_model``: the model that is exported and scored."""
    return next(layer for layer in train_model.layers if isinstance(layer, keras.Model))
