"""Feature names and the label map: defined once, used by every stage.

The download job writes these keys into its tf.Examples, Transform reads them, the
trainer and evaluator read Transform's outputs, and serving clients send the raw ones.
This module imports neither TensorFlow nor Beam so light tools can use it.
"""

import codecs
import csv
import dataclasses
import io
import re
import logging
from typing import Dict, Iterable, List, Sequence

log = logging.getLogger(__name__)

# Raw features, as written by the download job (components/download).
IMAGE_ID_KEY = "image_id"  # bytes: the competition's imageId, unique within a split
IMAGE_KEY = "image/encoded"  # bytes: RGB JPEG
HEIGHT_KEY = "image/height"  # int64: pixels of the stored JPEG
WIDTH_KEY = "image/width"  # int64
SHA256_KEY = "image/sha256"  # bytes: hex SHA-256 of the stored JPEG bytes
URL_KEY = "image/url"  # bytes: the URL the image was fetched from
LABELS_KEY = "labels"  # int64 list: the competition's labelIds (1-based), sorted, unique

# int64: bytes of the stored JPEG; only in the drift splits (imat_common/splits.py), where it
# stands for the image's content (a darker studio, a new camera) at the cost of no decoding.
NUM_BYTES_KEY = "image/num_bytes"


def task_labels_key(task: str) -> str:
    """The drift splits' feature holding the label ids of one task: ``labels/<task>``.

    Characters other than letters, digits, ``_``, ``.`` and ``-`` become ``_``: the name is also a
    tensor name in Transform's input signature.
    """
    return f"{LABELS_KEY}/" + re.sub(r"[^A-Za-z0-9_.\-]", "_", task)


RAW_FEATURE_KEYS = (IMAGE_ID_KEY, IMAGE_KEY, HEIGHT_KEY, WIDTH_KEY, SHA256_KEY, URL_KEY, LABELS_KEY)


class LabelMapError(ValueError):
    """The label map cannot be read: missing, in an unknown encoding, or malformed; the message names
    the file and, where there is one, the line."""


@dataclasses.dataclass(frozen=True)
class Label:
    label_id: int
    task_id: int
    name: str
    task: str


@dataclasses.dataclass(frozen=True)
class LabelMap:
    """Label ids with names and tasks (``label_map.csv``: labelId,taskId,labelName,taskName)."""

    labels: Sequence[Label]

    @property
    def ids(self) -> List[int]:
        return [label.label_id for label in self.labels]

    @property
    def num_labels(self) -> int:
        """Width of the multi-hot vector: label id k sits at index k - 1."""
        return max(self.ids) if self.labels else 0

    def by_id(self) -> Dict[int, Label]:
        return {label.label_id: label for label in self.labels}

    def __contains__(self, label_id: int) -> bool:
        return label_id in set(self.ids)


REQUIRED_COLUMNS = ("labelId", "taskId", "labelName", "taskName")


def _line_of(data: bytes, offset: int) -> int:
    return data.count(b"\n", 0, offset) + 1


def decode_label_map(data: bytes, source: str = "<label map>") -> str:
    """Decodes the bytes of a label map file into text.

    UTF-8 is tried first, with or without a byte-order mark (spreadsheets' "CSV UTF-8" writes
    one). Only a file that is not UTF-8 is read as Windows-1252, the Latin-1 superset that
    spreadsheets on Windows save as plain "CSV"; that guess is logged as a warning. Pure ASCII
    is the same text in all of them, so no guess is needed there.

    Args:
      data: the file's bytes.
      source: name of the file, for error and log messages.

    Returns:
      The text, without a byte-order mark.

    Raises:
      LabelMapError: naming the file, and the line and byte where the text cannot be decoded.
    """
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        # Read as Windows-1252 it would decode, but to NULs between letters: a baffling header error.
        raise LabelMapError(f"{source}: UTF-16 text (it starts with a UTF-16 byte-order mark); save it as CSV UTF-8")
    has_bom = data.startswith(codecs.BOM_UTF8)
    start = len(codecs.BOM_UTF8) if has_bom else 0
    try:
        return data[start:].decode("utf-8")
    except UnicodeDecodeError as e:
        bad = start + e.start  # an offset into the file, mark included, as a hex editor shows it
    where = f"line {_line_of(data, bad)}, byte 0x{data[bad]:02x} at offset {bad}"
    if has_bom:
        # A UTF-8 mark says what the writer meant: a stray byte later is damage, not another encoding.
        raise LabelMapError(f"{source}: starts with a UTF-8 byte-order mark but is not UTF-8 ({where})")
    try:
        text = data.decode("cp1252")
    except UnicodeDecodeError as e:
        # The five bytes Windows-1252 leaves undefined are control codes in ISO Latin-1: a label
        # name holding one is a file in some other encoding, better refused than misread.
        raise LabelMapError(
            f"{source}: neither UTF-8 nor Latin-1 (Windows-1252) text (line {_line_of(data, e.start)}, "
            f"byte 0x{data[e.start]:02x} at offset {e.start}); save it as CSV UTF-8"
        ) from None
    log.warning("%s: not UTF-8 (%s); read as Latin-1 (Windows-1252)", source, where)
    return text


def parse_label_map(text: str, source: str = "<label map>") -> LabelMap:
    """Parses label map CSV text.

    Args:
      text: CSV with the header ``labelId,taskId,labelName,taskName`` (other columns are ignored).
      source: name of the file, for error messages.

    Returns:
      The LabelMap, in file order.

    Raises:
      LabelMapError: naming the file, and the line where there is one: an empty file, a
        missing column, a record with more or fewer fields than the header, a non-integer
        id, an id below 1, a repeated id, no labels, or text that is not CSV.
    """
    if not text.strip():
        raise LabelMapError(f"{source}: empty file; expected the header {','.join(REQUIRED_COLUMNS)}")
    rows = csv.reader(io.StringIO(text, newline=""))
    labels: List[Label] = []
    first_line: Dict[int, int] = {}
    try:
        header = next(rows)
        missing = [c for c in REQUIRED_COLUMNS if c not in header]
        if missing:
            # A spreadsheet set to a European locale saves "CSV" separated by semicolons.
            hint = "; it is separated by ';', save it separated by ','" if len(header) == 1 and ";" in header[0] else ""
            raise LabelMapError(
                f"{source}, line {rows.line_num}: header lacks column(s) {missing}; "
                f"expected {list(REQUIRED_COLUMNS)}, found {header}{hint}"
            )
        column = {name: header.index(name) for name in REQUIRED_COLUMNS}
        needed = max(column.values()) + 1
        for fields in rows:
            line_no = rows.line_num  # the record's last line: a quoted name may span lines
            if not any(field.strip() for field in fields):
                continue  # blank lines, and the ",,," rows spreadsheets save for cells once formatted
            if len(fields) > len(header):
                # The usual cause shifts the columns after the name, so the record cannot be read.
                raise LabelMapError(
                    f"{source}, line {line_no}: {len(fields)} fields, the header has {len(header)} "
                    f"(a comma inside a name needs the name in double quotes)"
                )
            if len(fields) < needed:
                raise LabelMapError(f"{source}, line {line_no}: {len(fields)} fields, the header has {len(header)}")
            label_id_text, task_id_text = fields[column["labelId"]], fields[column["taskId"]]
            try:
                label_id, task_id = int(label_id_text), int(task_id_text)
            except ValueError:
                raise LabelMapError(
                    f"{source}, line {line_no}: labelId and taskId must be integers, got "
                    f"{label_id_text!r}, {task_id_text!r}"
                ) from None
            if label_id < 1:
                raise LabelMapError(f"{source}, line {line_no}: labelId must be >= 1, got {label_id}")
            if label_id in first_line:
                raise LabelMapError(
                    f"{source}, line {line_no}: labelId {label_id} appears twice (first on line {first_line[label_id]})"
                )
            first_line[label_id] = line_no
            labels.append(Label(label_id, task_id, fields[column["labelName"]], fields[column["taskName"]]))
    except csv.Error as e:
        raise LabelMapError(f"{source}, line {rows.line_num}: not CSV ({e})") from None
    if not labels:
        raise LabelMapError(f"{source}: no labels, only the header")
    return LabelMap(tuple(labels))


def load_label_map(path: str) -> LabelMap:
    """Reads a label map from a local or remote (``gs://``) path: the one reader every command uses.

    Args:
      path: the CSV file; its encoding is found as ``decode_label_map`` says.

    Returns:
      The LabelMap, in file order.

    Raises:
      LabelMapError: the file is missing, is a folder, cannot be decoded or is malformed; the
        message names the file and, where there is one, the line.
    """
    if "://" in path:
        from apache_beam.io.filesystems import FileSystems  # lazy: only remote paths need Beam

        if not FileSystems.exists(path):
            raise LabelMapError(f"{path}: no such file")
        with FileSystems.open(path) as f:
            data = f.read()
    else:
        try:
            with open(path, "rb") as f:
                data = f.read()
        except (FileNotFoundError, IsADirectoryError, PermissionError) as e:
            raise LabelMapError(f"{path}: {e.strerror.lower()}") from None
    return parse_label_map(decode_label_map(data, source=path), source=path)


def write_label_map(labels: Iterable[Label], path: str) -> None:
    """Writes a label map CSV (local path)."""
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(REQUIRED_COLUMNS)
        for label in labels:
            writer.writerow([label.label_id, label.task_id, label.name, label.task])
