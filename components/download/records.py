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
_BUF_SIZE = 64 * 1024


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


class _CountingReader:
    """Counts the bytes a parser has read; past ``fine_from`` it hands them out one at a time.

    ijson's fast backend reports no position. Reading the last stretch byte by byte makes
    the count at the moment of the error the offset where parsing broke.
    """

    def __init__(self, f: IO[bytes], fine_from: Optional[int] = None):
        self._f, self._fine_from, self.offset = f, fine_from, 0

    def read(self, size: int = -1) -> bytes:
        if size == 0:
            return b""  # ijson probes the type with read(0); consuming a byte there would lose it
        if self._fine_from is not None:
            size = (
                1
                if self.offset >= self._fine_from
                else (self._fine_from - self.offset if size < 0 else min(size, self._fine_from - self.offset))
            )
        data = self._f.read(size)
        self.offset += len(data)
        return data


def _where(arrays: Dict[str, int], current: str, inside: bool) -> str:
    if not current:
        return "outside the 'images' and 'annotations' arrays"
    count = arrays.get(current, 0)
    if inside:
        return f"inside {current}[{count - 1}]"
    return f"after {current}[{count - 1}]" if count else f"at the start of '{current}'"


def _locate_error(open_fn: Callable[[], IO[bytes]], near: int) -> Tuple[int, str, str]:
    """Parses again to find the byte offset, the array and the record where the JSON breaks."""
    arrays: Dict[str, int] = {}
    current, depth, item_depth = "", 0, None
    with open_fn() as f:
        reader = _CountingReader(f, fine_from=max(0, near - _BUF_SIZE - 1))
        try:
            for prefix, event, _ in ijson.parse(reader, buf_size=_BUF_SIZE):
                if depth == 1 and event == "start_array":
                    current = prefix
                elif depth == 2 and prefix == current + ".item":
                    arrays[current] = arrays.get(current, 0) + 1
                    item_depth = 2 if event in ("start_map", "start_array") else None
                if event in ("start_map", "start_array"):
                    depth += 1
                elif event in ("end_map", "end_array"):
                    depth -= 1
                    if depth == 2 and item_depth == 2:
                        item_depth = None
                    if depth == 1:
                        current = ""
        except ijson.JSONError as e:
            raw = e.args[0] if e.args else ""
            if isinstance(raw, UnicodeDecodeError) or "UTF8" in str(raw):
                return (
                    max(0, reader.offset - 1),
                    _where(arrays, current, item_depth is not None),
                    "not UTF-8 text (the competition files are UTF-8 JSON)",
                )
            text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)
            # The first line is the parser's verdict; later lines quote the file.
            first_line = text.splitlines()[0] if text.strip() else type(e).__name__
            return max(0, reader.offset - 1), _where(arrays, current, item_depth is not None), first_line
    return near, "somewhere", "malformed JSON"


def _items(open_fn: Callable[[], IO[bytes]], prefix: str, source: str) -> Iterator[Tuple[int, object]]:
    """Yields (index, item) of the array at ``prefix``, with errors that say where the file breaks."""
    with open_fn() as f:
        reader = _CountingReader(f)
        try:
            yield from enumerate(ijson.items(reader, prefix + ".item", use_float=True, buf_size=_BUF_SIZE))
        except ijson.JSONError:
            failed_at = reader.offset
        else:
            return
    # Outside the ``with``: the file is closed before it is read again.
    offset, where, why = _locate_error(open_fn, failed_at)
    raise ManifestError(f"{source}: malformed JSON at byte {offset}, {where}: {why}")


def read_annotations(
    open_fn: Callable[[], IO[bytes]], source: str, on_bad: Callable[[BadRecord], None]
) -> Dict[str, Optional[Tuple[int, ...]]]:
    """Reads the ``annotations`` array into image id -> sorted label ids.

    Args:
      open_fn: opens the JSON file for binary reading (called once, again on a syntax error).
      source: file name, for messages.
      on_bad: called with each annotation that cannot be used (status ``bad_annotation``).

    Returns:
      The map; empty when the file has no annotations (the test split). An image whose
      annotation was refused maps to None: its labels are unknown, so it must not be
      downloaded, where it would train as an example of no label.

    Raises:
      ManifestError: the JSON is malformed, with the byte offset, array and record.
    """
    labels: Dict[str, Optional[Tuple[int, ...]]] = {}
    for index, item in _items(open_fn, "annotations", source):
        where = f"{source}, annotations[{index}]"
        if not isinstance(item, dict):
            on_bad(BadRecord("", f"{where}: expected an object, got {type(item).__name__}", "bad_annotation"))
            continue
        image_id = _image_id(item)
        if image_id is None:
            on_bad(BadRecord("", f"{where}: missing or invalid imageId", "bad_annotation"))
            continue
        try:
            ids = _label_ids(item.get("labelId", item.get("label_id", [])))
        except ValueError as e:
            on_bad(
                BadRecord(image_id, f"{where} (imageId {image_id}): {e}; the image is not downloaded", "bad_annotation")
            )
            labels[image_id] = None
            continue
        if image_id in labels and labels[image_id] is None:
            continue  # refused already: one bad annotation makes the image's labels unknown
        # Repeated annotations of one image are merged: no label is lost.
        labels[image_id] = tuple(sorted(set(labels.get(image_id) or ()) | set(ids)))
    return labels


def iter_images(
    open_fn: Callable[[], IO[bytes]], source: str, labels: Dict[str, Optional[Tuple[int, ...]]]
) -> Iterator[Union[ImageRecord, BadRecord]]:
    """Yields one ImageRecord, or a BadRecord saying why not, per entry of ``images``.

    Images whose annotation was refused (None in ``labels``) yield nothing: the refusal
    was already reported, once. Duplicates are not removed here; the planner does that,
    so it can count them.

    Raises:
      ManifestError: the JSON is malformed or has no ``images`` array.
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
            yield BadRecord(
                image_id,
                f"{where} (imageId {image_id}): only http and https URLs are fetched, got {bad[0]!r}",
                status="bad_url",
            )
            continue
        if image_id in labels and labels[image_id] is None:
            continue
        yield ImageRecord(image_id, urls, labels.get(image_id) or ())
    if not seen_any:
        raise ManifestError(f"{source}: no 'images' array, or it is empty")
