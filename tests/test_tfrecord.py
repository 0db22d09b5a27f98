"""The TensorFlow-free Example encoder and TFRecord framing, checked against TensorFlow itself."""
import gzip

import tensorflow as tf

from components.download.tfrecord import serialize_example, write_records


def test_serialized_example_parses_with_tensorflow():
    data = serialize_example({
        "image_id": b"42", "image/encoded": b"\xff\xd8\xff" + bytes(range(256)) * 3,
        "image/height": 299, "image/width": 7, "labels": [1, 66, 228, 300],
        "none": [], "negative": [-5], "floats": [0.5, -2.25], "names": [b"a", b"bc"],
    })
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
