"""ExampleGen's splits as stored-block gzip: every reader downstream gets the same records."""

import glob
import gzip
import os

import apache_beam as beam
import pytest
import tensorflow as tf
from apache_beam.testing.util import assert_that, equal_to

from components import example_writer
from components.download.tfrecord import serialize_example


def _records():
    # Compressible bytes (unlike JPEGs), so that a deflating level shows in the file size;
    # one record over 64 KiB, the size of a stored deflate block.
    return [
        serialize_example({"image_id": str(i).encode(), "image/encoded": bytes([i % 7]) * (300 + 997 * i)})
        for i in range(80)
    ]


def _write(records, folder, level):
    with beam.Pipeline() as p:
        _ = p | beam.Create(records) | example_writer.WriteSplit(folder, level)
    return sorted(glob.glob(os.path.join(folder, "data_tfrecord-*.gz")))


@pytest.mark.parametrize("level", [0, 9])
def test_split_files_hold_every_record_once_at_any_level(tmp_path, level):
    records = _records()
    files = _write(records, str(tmp_path / "split"), level)
    assert files
    read = [r.numpy() for r in tf.data.TFRecordDataset(files, compression_type="GZIP")]
    assert sorted(read) == sorted(records)
    # Beam's reader (StatisticsGen's and Transform's) reads them too.
    with beam.Pipeline() as p:
        got = p | beam.io.ReadFromTFRecord(os.path.join(str(tmp_path / "split"), "data_tfrecord-*"))
        assert_that(got, equal_to(records))
    packed = sum(os.path.getsize(f) for f in files)
    unpacked = sum(len(gzip.decompress(open(f, "rb").read())) for f in files)
    if level == 0:
        assert packed > unpacked  # stored: gzip's framing on top of the records
    else:
        assert packed < unpacked / 10


@pytest.mark.parametrize("level", [-1, 10])
def test_a_level_outside_zlibs_is_refused(tmp_path, level):
    with pytest.raises(ValueError, match=r"gzip level must be in 0\.\.9, got " + str(level)):
        example_writer.GzipTFRecordSink(str(tmp_path / "x"), level)


def test_an_empty_split_is_one_empty_gzip_file(tmp_path):
    # The first span's drift_previous split is empty: its readers still find a valid file.
    files = _write([], str(tmp_path / "split"), example_writer.EXAMPLES_GZIP_LEVEL)
    assert len(files) == 1
    assert gzip.decompress(open(files[0], "rb").read()) == b""
    assert list(tf.data.TFRecordDataset(files, compression_type="GZIP")) == []
