"""The training input mixes shards written in catalogue order; evaluation reads each record once."""

import os

import numpy as np
import pytest
import tensorflow as tf

from trainer import data
from imat_common import features

NUM_LABELS, SHARDS, PER_SHARD = 4, 8, 200
SPEC = {features.IMAGE_ID_KEY: tf.io.FixedLenFeature([], tf.string), features.LABELS_KEY: tf.io.VarLenFeature(tf.int64)}
# Label frequencies of the first examples must be within this of the split's (0.25 each).
# 640 uniform draws give a standard error of 0.017 per frequency: 0.08 is 4.7 of them.
TOLERANCE, FIRST = 0.08, 640


@pytest.fixture(scope="module")
def label_sorted_shards(tmp_path_factory):
    """8 gzip shards holding 1,600 examples sorted by label: each shard holds one or two labels."""
    folder = tmp_path_factory.mktemp("sorted")
    examples = [(f"{i:05d}", 1 + i * NUM_LABELS // (SHARDS * PER_SHARD)) for i in range(SHARDS * PER_SHARD)]
    for shard in range(SHARDS):
        path = os.path.join(folder, f"part-{shard:05d}-of-{SHARDS:05d}.tfrecord.gz")
        with tf.io.TFRecordWriter(path, "GZIP") as writer:
            for image_id, label in examples[shard * PER_SHARD : (shard + 1) * PER_SHARD]:
                writer.write(
                    tf.train.Example(
                        features=tf.train.Features(
                            feature={
                                features.IMAGE_ID_KEY: tf.train.Feature(
                                    bytes_list=tf.train.BytesList(value=[image_id.encode()])
                                ),
                                features.LABELS_KEY: tf.train.Feature(int64_list=tf.train.Int64List(value=[label])),
                            }
                        )
                    ).SerializeToString()
                )
    return os.path.join(folder, "*.tfrecord.gz"), examples


def _first_label_frequencies(pattern, **reading) -> np.ndarray:
    dataset = data.raw_dataset(pattern, SPEC, batch_size=32, shuffle=True, seed=7, **reading)
    labels = [v for batch in dataset.take(FIRST // 32) for v in batch[features.LABELS_KEY].values.numpy()]
    assert len(labels) == FIRST
    return np.bincount(labels, minlength=NUM_LABELS + 1)[1:] / FIRST


def test_training_input_is_a_uniform_sample_of_label_sorted_shards(label_sorted_shards):
    pattern, examples = label_sorted_shards
    split = np.bincount([label for _, label in examples], minlength=NUM_LABELS + 1)[1:] / len(examples)
    frequencies = _first_label_frequencies(pattern)
    assert np.abs(frequencies - split).max() <= TOLERANCE, (frequencies, split)


def test_the_old_reading_settings_fail_the_same_check(label_sorted_shards):
    """Two shards at a time through 128 examples (the input before) sees two labels at most."""
    pattern, _ = label_sorted_shards
    frequencies = _first_label_frequencies(pattern, shuffle_buffer=128, cycle_length=2)
    assert np.abs(frequencies - 1 / NUM_LABELS).max() > TOLERANCE, frequencies


def test_evaluation_reads_every_record_once_in_file_order(label_sorted_shards):
    pattern, examples = label_sorted_shards
    batches = list(data.raw_dataset(pattern, SPEC, batch_size=60, shuffle=False))
    ids = [i.decode() for batch in batches for i in batch[features.IMAGE_ID_KEY].numpy()]
    assert ids == [image_id for image_id, _ in examples]
    assert len(batches[-1][features.IMAGE_ID_KEY]) == len(examples) % 60 == 40


def test_no_matching_file_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="no example files match"):
        data.list_files(str(tmp_path / "train" / "*.tfrecord.gz"))
