"""tf.data input: raw JPEG examples -> Transform graph -> (augmented) batches.

Augmentation belongs here, not in Transform: Transform's graph is also the serving graph,
and serving must see the image as it is.
"""
from typing import List, Optional

import tensorflow as tf
import tensorflow_transform as tft

from trainer import features
from trainer.preprocessing import IMAGE_FEATURE, LABELS_FEATURE

AUTOTUNE = tf.data.AUTOTUNE


def augment(image: tf.Tensor, seed: Optional[int] = None) -> tf.Tensor:
    """Random horizontal flip and a random crop/zoom of 80-100 % of the side, resized back."""
    size = tf.shape(image)[0]
    image = tf.image.random_flip_left_right(image, seed=seed)
    scale = tf.random.uniform([], 0.8, 1.0, seed=seed)
    crop = tf.cast(tf.cast(size, tf.float32) * scale, tf.int32)
    image = tf.image.random_crop(image, [crop, crop, 3], seed=seed)
    return tf.image.resize(image, [size, size])


def raw_dataset(file_pattern: List[str], tf_transform_output: tft.TFTransformOutput, batch_size: int,
                shuffle: bool) -> tf.data.Dataset:
    """Batches of parsed raw features from gzip TFRecords of tf.Examples."""
    files = tf.io.gfile.glob(file_pattern) if isinstance(file_pattern, str) else \
        [f for pattern in file_pattern for f in tf.io.gfile.glob(pattern)]
    if not files:
        raise FileNotFoundError(f"no example files match {file_pattern}")
    spec = tf_transform_output.raw_feature_spec()
    dataset = tf.data.Dataset.from_tensor_slices(files)
    if shuffle:
        dataset = dataset.shuffle(len(files))
    dataset = dataset.interleave(lambda f: tf.data.TFRecordDataset(f, compression_type="GZIP"),
                                 num_parallel_calls=AUTOTUNE, deterministic=not shuffle)
    if shuffle:
        dataset = dataset.shuffle(4 * batch_size).repeat()
    dataset = dataset.batch(batch_size, drop_remainder=shuffle)
    return dataset.map(lambda x: tf.io.parse_example(x, spec), num_parallel_calls=AUTOTUNE)


def input_fn(file_pattern, tf_transform_output: tft.TFTransformOutput, batch_size: int, training: bool,
             augment_images: bool = True) -> tf.data.Dataset:
    """(image, multi-hot labels) batches; repeated and augmented for training.

    Transform's graph decodes and resizes the JPEGs here (it was not materialised), inside
    tf.data's parallel map, so decoding overlaps training.
    """
    tft_layer = tf_transform_output.transform_features_layer()
    keys = [features.IMAGE_KEY, features.LABELS_KEY]

    def transform(raw):
        transformed = tft_layer({k: raw[k] for k in keys})
        return transformed[IMAGE_FEATURE], transformed[LABELS_FEATURE]

    dataset = raw_dataset(file_pattern, tf_transform_output, batch_size, shuffle=training)
    dataset = dataset.map(transform, num_parallel_calls=AUTOTUNE)
    if training and augment_images:
        dataset = dataset.map(lambda images, labels: (tf.map_fn(augment, images), labels), num_parallel_calls=AUTOTUNE)
    return dataset.prefetch(AUTOTUNE)
