"""Feature names and the label map: defined once, used by every stage.

The download job writes these keys into its tf.Examples, Transform reads them, the
trainer and evaluator read Transform's outputs, and serving clients send the raw ones.
This module imports neither TensorFlow nor Beam so light tools can use it.
"""

import csv
import dataclasses
import io
from typing import Dict, Iterable, List, Sequence

# Raw features, as written by the download job (components/download).
IMAGE_ID_KEY = "image_id"  # bytes: the competition's imageId, unique within a split
IMAGE_KEY = "image/encoded"  # bytes: RGB JPEG
HEIGHT_KEY = "image/height"  # int64: pixels of the stored JPEG
WIDTH_KEY = "image/width"  # int64
SHA256_KEY = "image/sha256"  # bytes: hex SHA-256 of the stored JPEG bytes
URL_KEY = "image/url"  # bytes: the URL the image was fetched from
LABELS_KEY = "labels"  # int64 list: the competition's labelIds (1-based), sorted, unique

RAW_FEATURE_KEYS = (IMAGE_ID_KEY, IMAGE_KEY, HEIGHT_KEY, WIDTH_KEY, SHA256_KEY, URL_KEY, LABELS_KEY)


class LabelMapError(ValueError):
    """The label map file is malformed."""


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


def parse_label_map(text: str, source: str = "<label map>") -> LabelMap:
    """Parses label map CSV text.

    Args:
      text: CSV with the header ``labelId,taskId,labelName,taskName``.
      source: name of the file, for error messages.

    Returns:
      The LabelMap, in file order.

    Raises:
      LabelMapError: naming the file and line of a missing column, a non-integer id,
        an id below 1 or a repeated id.
    """
    reader = csv.DictReader(io.StringIO(text))
    missing = [c for c in REQUIRED_COLUMNS if c not in (reader.fieldnames or [])]
    if missing:
        raise LabelMapError(f"{source}: header lacks column(s) {missing}; expected {list(REQUIRED_COLUMNS)}")
    labels: List[Label] = []
    seen = set()
    for line_no, row in enumerate(reader, start=2):
        try:
            label_id, task_id = int(row["labelId"]), int(row["taskId"])
        except (TypeError, ValueError):
            raise LabelMapError(
                f"{source}, line {line_no}: labelId and taskId must be integers, got "
                f"{row.get('labelId')!r}, {row.get('taskId')!r}"
            ) from None
        if label_id < 1:
            raise LabelMapError(f"{source}, line {line_no}: labelId must be >= 1, got {label_id}")
        if label_id in seen:
            raise LabelMapError(f"{source}, line {line_no}: labelId {label_id} appears twice")
        seen.add(label_id)
        labels.append(Label(label_id, task_id, row["labelName"] or "", row["taskName"] or ""))
    if not labels:
        raise LabelMapError(f"{source}: no labels")
    return LabelMap(tuple(labels))


def load_label_map(path: str) -> LabelMap:
    """Reads a label map from a local or remote (``gs://``) path."""
    from apache_beam.io.filesystems import FileSystems  # lazy: keeps this module light

    with FileSystems.open(path) as f:
        return parse_label_map(f.read().decode("utf-8"), source=path)


def write_label_map(labels: Iterable[Label], path: str) -> None:
    """Writes a label map CSV (local path)."""
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(REQUIRED_COLUMNS)
        for label in labels:
            writer.writerow([label.label_id, label.task_id, label.name, label.task])
