"""Spans: the batches in which a catalogue's data arrives, and which of them a run reads.

``imat download --span N`` writes ``<data>/span-N/<split>/*.tfrecord.gz``. A run reads the
newest span (its validation folder is cut into calibration and eval, so the gate scores the
new data), trains on the newest ``train_spans`` spans, and compares the newest span's train
folder with the previous span's for drift. Span numbers need not be consecutive: "the newest
K" are the K highest numbers present, as a weekly job that skipped a week would leave them.

Plain names and arithmetic, shared by the download job and the pipeline: no TFX, no Beam.
"""

import re
from typing import Iterable, List, Optional

PREFIX = "span-"
# ImportExampleGen's placeholder: the driver replaces it with the newest span found on disk.
PLACEHOLDER = "{SPAN}"
_FOLDER = re.compile(r"^span-(\d+)$")


def folder(span: int) -> str:
    """The folder of span ``span`` under the data root, e.g. ``span-3`` (no zero padding)."""
    if span < 0:
        raise ValueError(f"a span is a number >= 0, got {span}")
    return f"{PREFIX}{span}"


def pattern(split_pattern: str, span: str = PLACEHOLDER) -> str:
    """A split's file pattern inside a span: ``pattern("train/*.gz")`` is ``span-{SPAN}/train/*.gz``."""
    return f"{PREFIX}{span}/{split_pattern}"


def numbers(names: Iterable[str]) -> List[int]:
    """The span numbers among folder names (``span-2``, ``span-10``), ascending; other names ignored."""
    found = {int(m.group(1)) for m in (_FOLDER.match(name.rstrip("/").rsplit("/", 1)[-1]) for name in names) if m}
    return sorted(found)


def window(present: Iterable[int], newest: int, count: int) -> List[int]:
    """The spans a run trains on: the ``count`` highest spans present up to ``newest``, ascending.

    Raises:
      ValueError: ``count`` below 1, or ``newest`` not among ``present``.
    """
    if count < 1:
        raise ValueError(f"train_spans must be at least 1, got {count}")
    present = sorted(set(present))
    if newest not in present:
        raise ValueError(f"span {newest} is not among the spans present {present}")
    return [span for span in present if span <= newest][-count:]


def previous(present: Iterable[int], newest: int) -> Optional[int]:
    """The span before ``newest`` that drift is measured against, or None for the first span."""
    earlier = [span for span in set(present) if span < newest]
    return max(earlier) if earlier else None
