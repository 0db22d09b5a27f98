"""Transform's ``preprocessing_fn``: JPEG bytes -> InceptionV3 input, label ids -> multi-hot.

Transform runs with ``materialize=False``: it analyses the data and exports the transform
graph, and the Trainer applies that graph to the raw JPEG examples as it reads them.
Materialised float images would cost ~1 MB each at 299 px (1 TB for the competition's 1M
images, against ~25 GB of JPEG); decoding on the fly costs CPU per image (measured:
docs/benchmarks.md, "Training input: CPU per image"), spread over tf.data's parallel map. The
same graph is embedded in the serving model, so training and serving cannot drift apart.
"""

import tensorflow as tf
import tensorflow_transform as tft

from imat_common import features
from trainer.trivial_baseline import LABEL_FREQUENCIES

IMAGE_FEATURE = "image"  # float32 [size, size, 3] in [-1, 1]; each backbone rescales it (trainer/backbones.py)
LABELS_FEATURE = "labels_multi_hot"  # float32 [num_labels]; label id k at index k - 1

# The vocabulary that counts the analysed (train) examples: one token, stored with its frequency.
EXAMPLE_COUNT = "train_example_count"
_EXAMPLE_TOKEN = "example"

MIN_IMAGE_SIZE = 32  # the smallest input of any backbone; the model checks its own (trainer/backbones.py)


def resize_and_scale(image: tf.Tensor, image_size: int) -> tf.Tensor:
    """One decoded image (uint8 [height, width, 3]) -> float32 [image_size, image_size, 3] in [-1, 1].

    The last step of both the Transform graph and the training input's fused
    decode-and-crop augmentation (``trainer/data.py``): sharing it is what keeps them equal.
    """
    size = [image_size, image_size]
    # Downloads keep the aspect ratio; the network takes squares. Squashing keeps the
    # whole garment in view, where cropping could cut sleeves or hems.
    shrinks = tf.logical_or(tf.shape(image)[0] > image_size, tf.shape(image)[1] > image_size)
    # Antialiasing only changes a shrink. On an enlargement it equals plain bilinear (within
    # 2e-5 after scaling) at about twice the CPU, and the download job stores images at
    # most 299 px on the longer side, so at 299 px no side ever shrinks.
    image = tf.cond(
        shrinks,
        lambda: tf.image.resize(image, size, method="bilinear", antialias=True),
        lambda: tf.image.resize(image, size, method="bilinear"),
    )
    return image / 127.5 - 1.0


def decode_and_resize(jpegs: tf.Tensor, image_size: int) -> tf.Tensor:
    """Decodes a batch of JPEG strings to float images in [-1, 1], resized to a square."""

    def one(jpeg):
        return resize_and_scale(tf.io.decode_jpeg(jpeg, channels=3), image_size)

    return tf.map_fn(one, jpegs, fn_output_signature=tf.TensorSpec([image_size, image_size, 3], tf.float32))


def jpeg_strings(jpegs) -> tf.Tensor:
    """The ``image/encoded`` feature of a batch as one JPEG string per example, [batch].

    A schema without the feature's shape parses it sparse; a fixed-length one as [batch, 1].
    """
    if isinstance(jpegs, tf.SparseTensor):
        jpegs = tf.sparse.to_dense(jpegs, default_value="")
    return tf.reshape(jpegs, [-1])


def label_ids_as_sparse(label_ids) -> tf.SparseTensor:
    """Label id lists [batch, ...] as a SparseTensor, however the feature was parsed.

    The curated schema makes ``labels`` variable-length (sparse); a schema that calls it
    fixed-length (every example with the same count) gives a dense tensor, a ragged one a
    RaggedTensor. Id 0 is padding in a dense tensor and is dropped.
    """
    if isinstance(label_ids, tf.SparseTensor):
        return label_ids
    if isinstance(label_ids, tf.RaggedTensor):
        return label_ids.to_sparse()
    dense = tf.convert_to_tensor(label_ids)
    if dense.shape.rank == 1:  # one id per example
        dense = tf.reshape(dense, [-1, 1])
    return tf.sparse.from_dense(dense)


def multi_hot(label_ids, num_labels: int) -> tf.Tensor:
    """Label id lists (1-based; sparse, ragged or dense) -> dense float multi-hot [batch, num_labels].

    Ids outside 1..num_labels are dropped here; the validation gate stops them earlier
    unless the run is warn-only.
    """
    ids = tf.sparse.to_dense(label_ids_as_sparse(label_ids), default_value=0)
    one_hot = tf.one_hot(ids - 1, depth=num_labels, dtype=tf.float32)  # id 0 (padding) -> all zeros
    # A sum, not a max: a max over a batch where no example has labels (an empty axis) is -inf.
    return tf.minimum(tf.reduce_sum(one_hot, axis=1), 1.0)


def preprocessing_fn(inputs, custom_config):
    """TFT preprocessing_fn.

    Args:
      inputs: raw features: ``image/encoded`` (string) and ``labels`` (int64: sparse, ragged
        or dense), as written by the download job; ``labels`` is absent at serving time.
      custom_config: ``num_labels`` (width of the multi-hot vector) and ``image_size``.

    Returns:
      ``image`` and, when labels are given, ``labels_multi_hot``. Analysing the train split
      also writes the vocabularies ``train_label_frequencies`` (label id and its count) for the
      trivial baseline (``trainer/trivial_baseline.py``) and ``train_example_count`` (the
      train split's size, from which ``train_epochs`` gives the training steps).
    """
    image_size = int(custom_config["image_size"])
    if image_size < MIN_IMAGE_SIZE:
        raise ValueError(f"image_size {image_size} is below the smallest backbone input, {MIN_IMAGE_SIZE}")
    jpegs = jpeg_strings(inputs[features.IMAGE_KEY])
    outputs = {IMAGE_FEATURE: decode_and_resize(jpegs, image_size)}
    if features.LABELS_KEY in inputs:
        label_ids = label_ids_as_sparse(inputs[features.LABELS_KEY])
        outputs[LABELS_FEATURE] = multi_hot(label_ids, int(custom_config["num_labels"]))
        tft.vocabulary(label_ids, vocab_filename=LABEL_FREQUENCIES, store_frequency=True)
        tokens = tf.fill(tf.shape(jpegs)[:1], _EXAMPLE_TOKEN)
        tft.vocabulary(tokens, vocab_filename=EXAMPLE_COUNT, store_frequency=True)
    return outputs


def read_example_count(tf_transform_output) -> int:
    """The number of examples Transform analysed (ExampleGen's train split), from its vocabulary.

    Raises:
      ValueError: the transform graph predates the count (Transform must run again), or the
        file is not one "count example" line.
    """
    path = tf_transform_output.vocabulary_file_by_name(EXAMPLE_COUNT)
    if path is None:
        raise ValueError(
            f"the transform graph has no {EXAMPLE_COUNT!r} vocabulary: it was written before Transform "
            "counted the train split; run Transform again, or train by train_steps (train_epochs 0)"
        )
    with tf.io.gfile.GFile(path) as f:
        lines = [line.split() for line in f if line.strip()]
    if len(lines) != 1 or len(lines[0]) != 2 or lines[0][1] != _EXAMPLE_TOKEN or not lines[0][0].isdigit():
        raise ValueError(f"{path}: expected one line 'count {_EXAMPLE_TOKEN}', got {lines[:3]}")
    return int(lines[0][0])
