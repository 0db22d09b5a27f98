"""tf.train.Example serialisation, TFRecord framing and gzip writing without importing TensorFlow.

The download job runs on many small workers; importing TensorFlow costs each of them
seconds and hundreds of MB for what is a few lines of protobuf wire format. The tests
parse this output with TensorFlow itself to prove the bytes are identical in meaning.
"""

import struct
import zlib
from typing import Dict, Iterable, Iterator, List, Optional, Tuple, Union

import google_crc32c

FeatureValue = Union[bytes, int, List[bytes], List[int], List[float]]


def _varint(value: int) -> bytes:
    if value < 0:
        value += 1 << 64  # int64 two's complement, as protobuf encodes negatives
    out = bytearray()
    while True:
        bits = value & 0x7F
        value >>= 7
        if value:
            out.append(bits | 0x80)
        else:
            out.append(bits)
            return bytes(out)


def _field(number: int, payload: bytes) -> bytes:
    """A length-delimited field (wire type 2)."""
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def _feature(value: FeatureValue) -> bytes:
    values = value if isinstance(value, list) else [value]
    if not values:
        return _field(3, b"")  # empty Int64List
    if all(isinstance(v, bytes) for v in values):  # BytesList = 1, repeated bytes value = 1
        return _field(1, b"".join(_field(1, v) for v in values))
    if all(isinstance(v, int) and not isinstance(v, bool) for v in values):  # Int64List = 3, packed
        return _field(3, _field(1, b"".join(_varint(v) for v in values)))
    if all(isinstance(v, float) for v in values):  # FloatList = 2, packed
        return _field(2, _field(1, struct.pack(f"<{len(values)}f", *values)))
    raise TypeError(f"feature values must be all bytes, all int or all float: {values!r}")


def serialize_example(features: Dict[str, FeatureValue]) -> bytes:
    """Serialises a tf.train.Example.

    Args:
      features: name -> bytes, int, or a list of bytes, ints or floats. An empty list
        is stored as an empty Int64List (use it for empty label lists).

    Returns:
      Bytes that ``tf.train.Example.FromString`` parses to the same features.
    """
    entries = []
    for name in sorted(features):  # map order does not matter; sorted makes output reproducible
        entry = _field(1, name.encode("utf-8")) + _field(2, _feature(features[name]))
        entries.append(_field(1, entry))  # Features.feature map entry
    return _field(1, b"".join(entries))  # Example.features


def _masked_crc(data: bytes) -> bytes:
    crc = google_crc32c.value(data)
    return struct.pack("<I", (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF)


def frame_record(data: bytes) -> bytes:
    """One TFRecord: length, masked CRC of the length, data, masked CRC of the data."""
    length = struct.pack("<Q", len(data))
    return length + _masked_crc(length) + data + _masked_crc(data)


def write_records(f, records: Iterable[bytes]) -> int:
    """Writes framed records to an open binary file; returns how many."""
    count = 0
    for record in records:
        f.write(frame_record(record))
        count += 1
    return count


# JPEGs do not compress: zlib's default level 6 shrank the benchmark's shards by a few percent
# (the JPEG headers each image repeats) for about 0.4 ms of CPU an image, a tenth of the download
# job's CPU and all of it on its main thread. Level 0 writes the same gzip files with stored blocks.
DEFAULT_GZIP_LEVEL = 0


class GzipWriter:
    """Writes a gzip stream at a chosen zlib level into an open binary file.

    Beam's gzip writer always compresses at zlib's default level. At level 0 the file is still
    gzip (stored blocks, checksummed), so TensorFlow, Beam and ``gzip`` read it unchanged.
    """

    def __init__(self, raw, level: int):
        self._raw = raw
        self._compressor = zlib.compressobj(level, zlib.DEFLATED, zlib.MAX_WBITS | 16)

    def write(self, data: bytes) -> None:
        self._raw.write(self._compressor.compress(data))

    def finish(self) -> None:
        """Writes the end of the stream (its last block, CRC and length); the file stays open."""
        self._raw.write(self._compressor.flush())

    def close(self) -> None:
        """Writes the end of the stream and closes the file under it."""
        self.finish()
        self._raw.close()


class RecordError(ValueError):
    """A TFRecord file is truncated or corrupt."""


def read_framed(f) -> Iterator[Tuple[bytes, bytes]]:
    """Yields (framed record, data) from an open binary TFRecord file, checking both CRCs.

    Raises:
      RecordError: the file ends inside a record or a checksum does not match.
    """
    while True:
        header = f.read(12)
        if not header:
            return
        if len(header) < 12 or _masked_crc(header[:8]) != header[8:]:
            raise RecordError("truncated or corrupt record header")
        (length,) = struct.unpack("<Q", header[:8])
        data, crc = f.read(length), f.read(4)
        if len(data) < length or _masked_crc(data) != crc:
            raise RecordError("truncated or corrupt record")
        yield header + data + crc, data


def _read_varint(buf: bytes, pos: int) -> Tuple[int, int]:
    value = shift = 0
    while True:
        byte = buf[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, pos
        shift += 7


def _fields(buf: bytes) -> Iterator[Tuple[int, bytes]]:
    """(field number, payload) of each length-delimited field of a protobuf message; skips the others."""
    pos = 0
    while pos < len(buf):
        key, pos = _read_varint(buf, pos)
        wire_type = key & 7
        if wire_type == 0:
            _, pos = _read_varint(buf, pos)
        elif wire_type == 1:
            pos += 8
        elif wire_type == 5:
            pos += 4
        elif wire_type == 2:
            length, pos = _read_varint(buf, pos)
            yield key >> 3, buf[pos : pos + length]
            pos += length
        else:
            raise RecordError(f"unsupported protobuf wire type {wire_type}")


def bytes_feature(example: bytes, name: str) -> Optional[bytes]:
    """The first value of a bytes feature of a serialized tf.train.Example, or None."""
    wanted = name.encode("utf-8")
    for number, features in _fields(example):
        if number != 1:
            continue
        for entry_number, entry in _fields(features):
            fields = dict(_fields(entry)) if entry_number == 1 else {}
            if fields.get(1) == wanted:
                for kind, values in _fields(fields.get(2, b"")):
                    if kind == 1:  # BytesList
                        return next((v for n, v in _fields(values) if n == 1), None)
                return None
    return None
