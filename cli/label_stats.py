"""Label data for ``imat report``: how often each label and each pair of labels occurs in a split."""

import dataclasses
from typing import List, Optional, Tuple

import numpy as np

from imat_common.features import LABELS_KEY, LabelMap


@dataclasses.dataclass
class LabelStats:
    """Counts of each label and of each pair of labels on the same example."""

    examples: int
    counts: np.ndarray  # [num_labels]: examples carrying label id k at index k-1
    cooccurrence: np.ndarray  # [num_labels, num_labels]: examples carrying both

    def top_pairs(self, n: int) -> List[Tuple[int, int, int]]:
        """The n most frequent pairs of different labels, as (label id, label id, count)."""
        upper = np.triu(self.cooccurrence, k=1)
        flat = np.argsort(upper, axis=None)[::-1][:n]
        pairs = [(int(i) + 1, int(j) + 1, int(upper[i, j])) for i, j in zip(*np.unravel_index(flat, upper.shape))]
        return [p for p in pairs if p[2] > 0]


def count_labels(label_lists, num_labels: int, batch: int = 4096) -> LabelStats:
    """Counts labels and pairs from an iterable of label-id lists, in bounded memory."""
    counts = np.zeros(num_labels, np.int64)
    cooccurrence = np.zeros((num_labels, num_labels), np.int64)
    block = np.zeros((batch, num_labels), np.float32)
    examples, filled = 0, 0

    def flush(n):
        counts[:] += block[:n].sum(axis=0).astype(np.int64)
        cooccurrence[:] += np.rint(block[:n].T @ block[:n]).astype(np.int64)
        block[:n] = 0

    for label_ids in label_lists:
        ids = [int(k) - 1 for k in label_ids if 1 <= int(k) <= num_labels]
        block[filled, ids] = 1
        filled += 1
        examples += 1
        if filled == batch:
            flush(filled)
            filled = 0
    flush(filled)
    return LabelStats(examples, counts, cooccurrence)


def read_label_lists(file_pattern: str, max_examples: int):
    """Yields each example's label ids from gzip TFRecords, parsing only the label feature."""
    import tensorflow as tf

    files = tf.io.gfile.glob(file_pattern)
    if not files:
        raise FileNotFoundError(f"no examples match {file_pattern}")
    dataset = tf.data.TFRecordDataset(files, compression_type="GZIP").take(max_examples).batch(1024)
    spec = {LABELS_KEY: tf.io.VarLenFeature(tf.int64)}
    for serialized in dataset:
        parsed = tf.io.parse_example(serialized, spec)[LABELS_KEY]
        ragged = tf.RaggedTensor.from_sparse(parsed)
        yield from ragged.to_list()


def format_distribution(stats: LabelStats, label_map: Optional[LabelMap], split: str, top_pairs: int = 10) -> List[str]:
    names = label_map.by_id() if label_map else {}

    def name(label_id):
        return names[label_id].name if label_id in names else str(label_id)

    per_example = stats.counts.sum() / max(stats.examples, 1)
    lines = [f"label distribution ({split} split, {stats.examples} examples, {per_example:.2f} labels each):"]
    order = np.argsort(-stats.counts, kind="stable")
    lines += [
        f"  {name(k + 1)[:26]:26s} {stats.counts[k]:7d} {100 * stats.counts[k] / max(stats.examples, 1):5.1f}%"
        for k in order
        if stats.counts[k] > 0
    ]
    unused = int((stats.counts == 0).sum())
    if unused:
        lines.append(f"  ({unused} label ids never occur)")
    lines.append(f"most frequent label pairs ({split}):")
    lines += [f"  {name(a)} + {name(b)}: {n}" for a, b, n in stats.top_pairs(top_pairs)]
    return lines
