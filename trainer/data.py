"""tf.data input: raw JPEG examples -> Transform graph -> (augmented) batches.

Augmentation belongs here, not in Transform: Transform's graph is also the serving graph,
and serving must see the image as it is.

Mixing matters more than anything else in this file. Catalogues are usually listed in
product-id order, which clusters categories and colours; reading two shard files at a time
through a shuffle buffer of 128 examples gave batches so far from a uniform sample that the
model lost 0.17 micro-F1 at 300 steps on a real catalogue (benchmarks/input_ablation.py).
So training reads many shards at once, one record from each in turn, and shuffles the
serialized records (a few KB each) in a buffer of thousands before parsing them.
"""
from typing import Dict, List, Optional, Union

import tensorflow as tf
import tensorflow_transform as tft

from trainer import features
from trainer.preprocessing import IMAGE_FEATURE, LABELS_FEATURE

AUTOTUNE = tf.data.AUTOTUNE
# Serialized examples held for shuffling. At 299 px a stored JPEG is about 20-40 KB, so
# 10,000 hold 200-400 MB; on the real photos a 128-example buffer cost 0.1 micro-F1.
DEFAULT_SHUFFLE_BUFFER = 10_000
# Shard files read at once in training (all of them, up to this). Each open gzip reader
# holds about 0.5 MB of buffers.
MAX_OPEN_FILES = 64


def augment(image: tf.Tensor, seed: Optional[int] = None) -> tf.Tensor:
    """Random horizontal flip and a random crop/zoom of 80-100 % of the side, resized back."""
    size = tf.shape(image)[0]
    image = tf.image.random_flip_left_right(image, seed=seed)
    scale = tf.random.uniform([], 0.8, 1.0, seed=seed)
    crop = tf.cast(tf.cast(size, tf.float32) * scale, tf.int32)
    image = tf.image.random_crop(image, [crop, crop, 3], seed=seed)
    return tf.image.resize(image, [size, size])


def list_files(file_pattern: Union[str, List[str]]) -> List[str]:
    """The files matching one pattern or a list of patterns, sorted.

    Raises:
      FileNotFoundError: when nothing matches.
    """
    patterns = [file_pattern] if isinstance(file_pattern, str) else list(file_pattern)
    files = sorted(f for pattern in patterns for f in tf.io.gfile.glob(pattern))
    if not files:
        raise FileNotFoundError(f"no example files match {file_pattern}")
    return files


def raw_dataset(file_pattern: Union[str, List[str]], feature_spec: Dict[str, tf.io.FixedLenFeature],
                batch_size: int, shuffle: bool, shuffle_buffer: int = DEFAULT_SHUFFLE_BUFFER,
                cycle_length: int = 0, seed: Optional[int] = None) -> tf.data.Dataset:
    """Batches of parsed raw features from gzip TFRecords of tf.Examples.

    Args:
      file_pattern: a glob pattern or a list of them (TFX passes a list).
      feature_spec: the raw feature spec to parse with.
      batch_size: examples per batch.
      shuffle: training input: files and records shuffled, repeated forever, whole batches
        only, reading order not deterministic (faster: whichever file is ready goes first).
        Otherwise one pass in file order, the last batch possibly short.
      shuffle_buffer: serialized examples held for shuffling (training only).
      cycle_length: shard files read at once in training; 0 reads all of them, up to
        ``MAX_OPEN_FILES``.
      seed: seeds the file and record shuffles.
    """
    files = list_files(file_pattern)
    dataset = tf.data.Dataset.from_tensor_slices(files)
    if shuffle:
        dataset = dataset.shuffle(len(files), seed=seed).repeat()
        cycle = cycle_length or min(len(files), MAX_OPEN_FILES)
        # block_length 1: one record from each open file in turn, so one batch spans many shards.
        dataset = dataset.interleave(lambda f: tf.data.TFRecordDataset(f, compression_type="GZIP"),
                                     cycle_length=cycle, block_length=1, num_parallel_calls=AUTOTUNE,
                                     deterministic=False)
        dataset = dataset.shuffle(max(1, shuffle_buffer), seed=seed)
    else:
        dataset = tf.data.TFRecordDataset(dataset, compression_type="GZIP")
    dataset = dataset.batch(batch_size, drop_remainder=shuffle)
    return dataset.map(lambda x: tf.io.parse_example(x, feature_spec), num_parallel_calls=AUTOTUNE)


def input_fn(file_pattern, tf_transform_output: tft.TFTransformOutput, batch_size: int, training: bool,
             augment_images: bool = False, shuffle_buffer: int = DEFAULT_SHUFFLE_BUFFER, cycle_length: int = 0,
             seed: Optional[int] = None) -> tf.data.Dataset:
    """(image, multi-hot labels) batches; repeated, mixed and optionally augmented for training.

    Transform's graph decodes and resizes the JPEGs here (it was not materialised), inside
    tf.data's parallel map, so decoding overlaps training. See ``raw_dataset`` for the
    reading arguments.
    """
    tft_layer = tf_transform_output.transform_features_layer()
    keys = [features.IMAGE_KEY, features.LABELS_KEY]

    def transform(raw):
        transformed = tft_layer({k: raw[k] for k in keys})
        return transformed[IMAGE_FEATURE], transformed[LABELS_FEATURE]

    dataset = raw_dataset(file_pattern, tf_transform_output.raw_feature_spec(), batch_size, shuffle=training,
                          shuffle_buffer=shuffle_buffer, cycle_length=cycle_length, seed=seed)
    dataset = dataset.map(transform, num_parallel_calls=AUTOTUNE)
    if training and augment_images:
        dataset = dataset.map(lambda images, labels: (tf.map_fn(augment, images), labels), num_parallel_calls=AUTOTUNE)
    return dataset.prefetch(AUTOTUNE)
