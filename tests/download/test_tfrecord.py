"""The TensorFlow-free Example encoder and TFRecord framing, checked against TensorFlow itself."""

import gzip
import io

import pytest
import tensorflow as tf

from components.download.tfrecord import RecordError, bytes_feature, read_framed, serialize_example, write_records


def test_serialized_example_parses_with_tensorflow():
    data = serialize_example(
        {
            "image_id": b"42",
            "image/encoded": b"\xff\xd8\xff" + bytes(range(256)) * 3,
            "image/height": 299,
            "image/width": 7,
            "labels": [1, 66, 228, 300],
            "none": [],
            "negative": [-5],
            "floats": [0.5, -2.25],
            "names": [b"a", b"bc"],
        }
    )
    f = tf.train.Example.FromString(data).features.feature
    assert f["image_id"].bytes_list.value == [b"42"]
    assert f["image/encoded"].bytes_list.value[0].endswith(bytes(range(256)))
    assert f["image/height"].int64_list.value == [299] and f["image/width"].int64_list.value == [7]
    assert list(f["labels"].int64_list.value) == [1, 66, 228, 300]
    assert list(f["none"].int64_list.value) == [] and f["none"].WhichOneof("kind") == "int64_list"
    assert list(f["negative"].int64_list.value) == [-5]
    assert list(f["floats"].float_list.value) == [0.5, -2.25]
    assert list(f["names"].bytes_list.value) == [b"a", b"bc"]


def test_framed_gzip_records_read_back_with_tfrecorddataset(tmp_path):
    records = [serialize_example({"i": [i], "blob": b"x" * (i * 1000)}) for i in range(20)]
    path = tmp_path / "part.tfrecord.gz"
    with gzip.open(path, "wb") as f:
        assert write_records(f, records) == 20
    read = [r.numpy() for r in tf.data.TFRecordDataset(str(path), compression_type="GZIP")]
    assert read == records


def test_corrupted_record_fails_the_crc_check(tmp_path):
    path = tmp_path / "part.tfrecord"
    with open(path, "wb") as f:
        write_records(f, [serialize_example({"i": [1]})])
    raw = bytearray(path.read_bytes())
    raw[14] ^= 0xFF  # a data byte
    path.write_bytes(bytes(raw))
    try:
        list(tf.data.TFRecordDataset(str(path)))
    except tf.errors.DataLossError as e:
        assert "corrupted record" in str(e).lower() or "checksum" in str(e).lower()
    else:
        raise AssertionError("TensorFlow accepted a record with a wrong CRC: the framing is not being checked")


def test_records_written_by_tensorflow_read_back_framed_with_their_image_ids(tmp_path):
    path = str(tmp_path / "tf.tfrecord.gz")
    examples = []
    for i in range(5):
        example = tf.train.Example(
            features=tf.train.Features(
                feature={
                    "image/encoded": tf.train.Feature(bytes_list=tf.train.BytesList(value=[b"\xff" * (i * 300)])),
                    "image_id": tf.train.Feature(bytes_list=tf.train.BytesList(value=[f"id-{i}".encode()])),
                    "labels": tf.train.Feature(int64_list=tf.train.Int64List(value=[i, 2**40])),
                }
            )
        )
        examples.append(example.SerializeToString())
    with tf.io.TFRecordWriter(path, options="GZIP") as writer:
        for data in examples:
            writer.write(data)
    with gzip.open(path, "rb") as f:
        read = list(read_framed(f))
    assert [data for _, data in read] == examples
    assert [bytes_feature(data, "image_id") for _, data in read] == [f"id-{i}".encode() for i in range(5)]
    assert bytes_feature(examples[0], "missing") is None and bytes_feature(examples[0], "labels") is None
    # The framed bytes are whole records: written again, TensorFlow reads them unchanged.
    with gzip.open(tmp_path / "copy.tfrecord.gz", "wb") as f:
        for framed, _ in read:
            f.write(framed)
    assert [
        r.numpy() for r in tf.data.TFRecordDataset(str(tmp_path / "copy.tfrecord.gz"), compression_type="GZIP")
    ] == examples


def test_a_truncated_file_is_an_error_not_a_short_read(tmp_path):
    buf = io.BytesIO()
    write_records(buf, [serialize_example({"image_id": b"1"}), serialize_example({"image_id": b"2"})])
    with pytest.raises(RecordError, match="truncated or corrupt"):
        list(read_framed(io.BytesIO(buf.getvalue()[:-3])))
