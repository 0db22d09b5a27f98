"""tf.data input: raw JPEG examples -> training batches of uint8 canvases, or Transform's float images.

Training batches carry each photo decoded to uint8 on a fixed canvas (``trainer/canvas.py``):
the CPU only reads, parses and decodes, and the training model's first layer crops, mirrors
(augmentation: not in Transform, whose graph is also the serving graph and must see the image
as it is), resizes and scales on the accelerator. Evaluation batches are Transform's images,
as serving sees them. CPU per image at 299 px: docs/benchmarks.md, "Training input: CPU per image".

Mixing matters more than anything else in this file. Catalogues are usually listed in
product-id order, which clusters categories and colours; reading a few shard files at a time
through a small shuffle buffer gives batches far from a uniform sample, and the model learns
much less (measured: docs/benchmarks.md, "Training input: mixing and augmentation").
So training reads many shards at once, one record from each in turn, and shuffles the
serialized records (a few KB each) in a buffer of thousands before parsing them.
"""

from typing import Dict, List, Optional, Union

import tensorflow as tf
import tensorflow_transform as tft

from imat_common import features
from trainer import canvas
from trainer.preprocessing import IMAGE_FEATURE, LABELS_FEATURE, jpeg_strings
from trainer.settings import DEFAULT_SHUFFLE_BUFFER

AUTOTUNE = tf.data.AUTOTUNE
# Shard files read at once in training (all of them, up to this). Each open gzip reader
# holds about 0.5 MB of buffers.
MAX_OPEN_FILES = 64
# The raw features the batches are made of. Parsing the id, URL, hash and sizes each example also
# carries would cost CPU for nothing (docs/benchmarks.md, "Training input: CPU per image").
PARSED_KEYS = (features.IMAGE_KEY, features.LABELS_KEY)


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


def raw_dataset(
    file_pattern: Union[str, List[str]],
    feature_spec: Optional[Dict[str, tf.io.FixedLenFeature]],
    batch_size: int,
    shuffle: bool,
    shuffle_buffer: int = DEFAULT_SHUFFLE_BUFFER,
    cycle_length: int = 0,
    seed: Optional[int] = None,
    num_shards: int = 1,
    shard_index: int = 0,
) -> tf.data.Dataset:
    """Batches of parsed raw features from gzip TFRecords of tf.Examples.

    Args:
      file_pattern: a glob pattern or a list of them (TFX passes a list).
      feature_spec: the raw feature spec to parse with; None leaves the records serialized.
      batch_size: examples per batch.
      shuffle: training input: files and records shuffled, repeated forever, whole batches
        only, reading order not deterministic (faster: whichever file is ready goes first).
        Otherwise one pass in file order, the last batch possibly short.
      shuffle_buffer: serialized examples held for shuffling (training only).
      cycle_length: shard files read at once in training; 0 reads all of them, up to
        ``MAX_OPEN_FILES``.
      seed: seeds the file and record shuffles.
      num_shards: input pipelines reading disjoint parts of the data (multi-worker training: one
        per worker); ``shard_index`` is this one's, in ``[0, num_shards)``.

    Raises:
      ValueError: ``shard_index`` outside ``[0, num_shards)``.
    """
    if not 0 <= shard_index < num_shards:
        raise ValueError(f"shard_index {shard_index} is not in [0, {num_shards})")
    files = list_files(file_pattern)
    # Whole files per shard when there are enough of them: each worker reads only its own.
    # Otherwise every shard reads every file and keeps every num_shards-th record, before parsing
    # and decoding, so no worker decodes an image another one trains on.
    by_record = num_shards > 1 and len(files) < num_shards
    if num_shards > 1 and not by_record:
        files = files[shard_index::num_shards]

    def read(f):
        records = tf.data.TFRecordDataset(f, compression_type="GZIP")
        return records.shard(num_shards, shard_index) if by_record else records

    dataset = tf.data.Dataset.from_tensor_slices(files)
    if shuffle:
        dataset = dataset.shuffle(len(files), seed=seed).repeat()
        cycle = cycle_length or min(len(files), MAX_OPEN_FILES)
        # block_length 1: one record from each open file in turn, so one batch spans many shards.
        dataset = dataset.interleave(
            read, cycle_length=cycle, block_length=1, num_parallel_calls=AUTOTUNE, deterministic=False
        )
        dataset = dataset.shuffle(max(1, shuffle_buffer), seed=seed)
    else:
        dataset = dataset.flat_map(read)
    dataset = dataset.batch(batch_size, drop_remainder=shuffle)
    if feature_spec is None:  # serialized records (benchmarks/input_benchmark.py times the reading alone)
        return dataset
    return dataset.map(lambda x: tf.io.parse_example(x, feature_spec), num_parallel_calls=AUTOTUNE)


def image_size_of(tf_transform_output: tft.TFTransformOutput) -> int:
    """The side of the square images the Transform graph produces."""
    return int(tf_transform_output.transformed_feature_spec()[IMAGE_FEATURE].shape[0])


def input_fn(
    file_pattern,
    tf_transform_output: tft.TFTransformOutput,
    batch_size: int,
    training: bool,
    shuffle_buffer: int = DEFAULT_SHUFFLE_BUFFER,
    cycle_length: int = 0,
    seed: Optional[int] = None,
    data_service_address: Optional[str] = None,
    num_shards: int = 1,
    shard_index: int = 0,
    canvas_size: int = 0,
) -> tf.data.Dataset:
    """Training: (``{canvas.CANVAS, canvas.SHAPE}``, multi-hot labels) batches, repeated and mixed;
    otherwise (Transform's float images, multi-hot labels), one pass in file order.

    Training batches are for ``canvas.training_model``: the photos decoded to uint8 on a canvas
    of ``canvas.canvas_side`` pixels, the labels from Transform's graph (its image decode pruned
    away). Evaluation batches go through Transform's graph whole, inside tf.data's parallel
    map, so decoding overlaps scoring. See ``raw_dataset`` for the reading arguments.

    Args:
      data_service_address: training only: a tf.data service dispatcher
        (``grpc://host:port``). Reading and decoding then run on the service's workers, and
        this process only receives batches. Each worker reads the whole split in its own
        random order (the shuffles are not seeded there), which for an endless training
        stream is still a uniform sample.
      canvas_size: training only: the canvas side (0: ``canvas.canvas_side`` of Transform's
        image size).

    Raises:
      ValueError: for ``data_service_address`` without ``training``.
    """
    if data_service_address and not training:
        raise ValueError("data_service_address is for the training input only; evaluation reads each record once")
    tft_layer = tf_transform_output.transform_features_layer()
    raw_spec = tf_transform_output.raw_feature_spec()
    spec = {k: raw_spec[k] for k in PARSED_KEYS}
    if training:
        side = canvas.canvas_side(image_size_of(tf_transform_output), canvas_size)

        def transform(raw):
            labels = tft_layer({features.LABELS_KEY: raw[features.LABELS_KEY]})[LABELS_FEATURE]
            return jpeg_strings(raw[features.IMAGE_KEY]), labels
    else:

        def transform(raw):
            transformed = tft_layer(raw)
            return transformed[IMAGE_FEATURE], transformed[LABELS_FEATURE]

    # Identical workers would send identical batches: unseeded, each shuffles its own way.
    reading_seed = None if data_service_address else seed
    dataset = raw_dataset(
        file_pattern,
        spec,
        batch_size,
        shuffle=training,
        shuffle_buffer=shuffle_buffer,
        cycle_length=cycle_length,
        seed=reading_seed,
        num_shards=num_shards,
        shard_index=shard_index,
    )
    dataset = dataset.map(transform, num_parallel_calls=AUTOTUNE)
    if training:
        dataset = canvas.canvas_batches(dataset, side, batch_size, drop_remainder=True)
        options = tf.data.Options()
        # Training batches are shuffled anyway: let whichever parallel call ends first go first.
        options.deterministic = False
        dataset = dataset.with_options(options)
    if data_service_address:
        dataset = dataset.apply(
            tf.data.experimental.service.distribute(
                processing_mode=tf.data.experimental.service.ShardingPolicy.OFF, service=data_service_address
            )
        )
    return dataset.prefetch(AUTOTUNE)
