"""Streaming reader for the competition's JSON files.

Accepts both spellings seen in the wild:
  real files:       {"images": [{"imageId": "1", "url": "http..."}],
                     "annotations": [{"imageId": "1", "labelId": ["95", "66"]}]}
  official README:  {"images": [{"image_id": 1, "url": ["http..."]}],
                     "annotations": [{"image_id": 1, "label_id": [95, 66]}]}
The test file has no annotations. The train file is ~375 MB, so it is read twice with
ijson (once for annotations, once for images) rather than loaded: only the id -> labels
map is held, never the parsed document.
"""
import dataclasses
from typing import Callable, Dict, Iterator, IO, Optional, Tuple, Union

import ijson

ALLOWED_SCHEMES = ("http://", "https://")


class ManifestError(ValueError):
    """A JSON file cannot be read at all: syntax error or wrong top-level shape."""


@dataclasses.dataclass(frozen=True)
class ImageRecord:
    """One image to fetch."""

    image_id: str
    urls: Tuple[str, ...]  # tried in order; the competition lists one per image
    labels: Tuple[int, ...]  # sorted, unique label ids; empty for the test split


@dataclasses.dataclass(frozen=True)
class BadRecord:
    """A record that cannot be fetched, with where it is and why."""

    image_id: str  # may be empty when the id itself is the problem
    reason: str
    status: str = "bad_record"


def _image_id(item: dict) -> Optional[str]:
    value = item.get("imageId", item.get("image_id"))
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    if isinstance(value, str) and value.strip():
        return value.strip()
    return None


def _label_ids(value) -> Tuple[int, ...]:
    if isinstance(value, (str, int)) and not isinstance(value, bool):
        value = [value]  # a lone label, seen in hand-made files
    if not isinstance(value, list):
        raise ValueError(f"labelId must be a list, got {type(value).__name__}")
    ids = set()
    for v in value:
        if isinstance(v, bool):
            raise ValueError(f"label id {v!r} is not an integer")
        try:
            ids.add(int(str(v).strip()))
        except ValueError:
            raise ValueError(f"label id {v!r} is not an integer") from None
    return tuple(sorted(ids))


def _urls(value) -> Tuple[str, ...]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(u, str) for u in value):
        raise ValueError("url must be a string or a list of strings")
    urls = tuple(u.strip() for u in value if u.strip())
    if not urls:
        raise ValueError("url is empty")
    return urls


def _items(open_fn: Callable[[], IO[bytes]], prefix: str, source: str) -> Iterator[Tuple[int, object]]:
    """Yields (index, item) of the array at ``prefix``, with clear syntax errors."""
    index = -1
    with open_fn() as f:
        try:
            for index, item in enumerate(ijson.items(f, prefix + ".item", use_float=True), start=0):
                yield index, item
        except ijson.JSONError as e:
            where = f"after record {index} of '{prefix}'" if index >= 0 else f"before the first record of '{prefix}'"
            raise ManifestError(f"{source}: malformed JSON {where}: {e}") from None


def read_annotations(open_fn: Callable[[], IO[bytes]], source: str,
                     on_bad: Callable[[BadRecord], None]) -> Dict[str, Tuple[int, ...]]:
    """Reads the ``annotations`` array into image id -> sorted label ids.

    Args:
      open_fn: opens the JSON file for binary reading (called once).
      source: file name, for messages.
      on_bad: called with each annotation that cannot be used.

    Returns:
      The map; empty when the file has no annotations (the test split).
    """
    labels: Dict[str, Tuple[int, ...]] = {}
    for index, item in _items(open_fn, "annotations", source):
        where = f"{source}, annotations[{index}]"
        if not isinstance(item, dict):
            on_bad(BadRecord("", f"{where}: expected an object, got {type(item).__name__}"))
            continue
        image_id = _image_id(item)
        if image_id is None:
            on_bad(BadRecord("", f"{where}: missing or invalid imageId"))
            continue
        try:
            ids = _label_ids(item.get("labelId", item.get("label_id", [])))
        except ValueError as e:
            on_bad(BadRecord(image_id, f"{where} (imageId {image_id}): {e}"))
            continue
        # Repeated annotations of one image are merged: no label is lost.
        labels[image_id] = tuple(sorted(set(labels.get(image_id, ())) | set(ids)))
    return labels


def iter_images(open_fn: Callable[[], IO[bytes]], source: str,
                labels: Dict[str, Tuple[int, ...]]) -> Iterator[Union[ImageRecord, BadRecord]]:
    """Yields one ImageRecord, or a BadRecord saying why not, per entry of ``images``.

    Duplicates are not removed here; the planner does that, so it can count them.
    """
    seen_any = False
    for index, item in _items(open_fn, "images", source):
        seen_any = True
        where = f"{source}, images[{index}]"
        if not isinstance(item, dict):
            yield BadRecord("", f"{where}: expected an object, got {type(item).__name__}")
            continue
        image_id = _image_id(item)
        if image_id is None:
            yield BadRecord("", f"{where}: missing or invalid imageId")
            continue
        try:
            urls = _urls(item.get("url"))
        except ValueError as e:
            yield BadRecord(image_id, f"{where} (imageId {image_id}): {e}")
            continue
        bad = [u for u in urls if not u.lower().startswith(ALLOWED_SCHEMES)]
        if bad:
            yield BadRecord(image_id, f"{where} (imageId {image_id}): only http and https URLs are fetched, got {bad[0]!r}",
                            status="bad_url")
            continue
        yield ImageRecord(image_id, urls, labels.get(image_id, ()))
    if not seen_any:
        raise ManifestError(f"{source}: no 'images' array, or it is empty")
