"""``imat report``: per-label precision, recall and F1 of the last evaluation, and the label data.

  imat report                          # the demo's workdir; writes imat-demo/report.html
  imat report --workdir W --label_map W/source/label_map.csv --html out.html

Metrics come from the newest TFMA evaluation in the pipeline's metadata (the same numbers
``tfma.load_eval_result`` shows in a notebook): each label's precision, recall and F1 at its
tuned threshold, its AUC, and its support (the eval examples carrying it, from TFMA's
per-label slice). Rows are grouped by task and sorted by support. The label distribution and
co-occurrence are counted from ExampleGen's examples, reading only the label feature.
"""
import argparse
import collections
import dataclasses
import html
import math
import os
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from pipeline import runs
from trainer.features import LABELS_KEY, LabelMap

DEFAULT_WORKDIR = "imat-demo"
_DECISIONS, _PROBABILITIES = "decisions", "probabilities"


@dataclasses.dataclass(frozen=True)
class LabelRow:
    label_id: int
    name: str
    task: str
    support: int
    precision: float
    recall: float
    f1: float
    auc: float


def _value(metrics: dict, name: str) -> float:
    value = metrics.get(name, {}).get("doubleValue", math.nan)
    return float(value)  # TFMA writes NaN as the string "NaN"


def micro_f1(slicing_metrics: Sequence[Tuple[tuple, dict]]) -> float:
    """The gated micro-F1 of the overall slice."""
    overall = dict(slicing_metrics).get((), {})
    for name, value in overall.get(_DECISIONS, {}).get("", {}).items():
        if name.endswith("micro_f1"):
            return float(value["doubleValue"])
    return math.nan


def label_rows(slicing_metrics: Sequence[Tuple[tuple, dict]], label_map: Optional[LabelMap],
               num_labels: int) -> List[LabelRow]:
    """One row per label from TFMA's slicing metrics (``EvalResult.slicing_metrics``).

    Args:
      slicing_metrics: ``[(slice_key, {output: {sub_key: {metric: {"doubleValue": v}}}})]``;
        the overall slice holds per-class metrics under ``classId:k`` (label id k+1), and the
        slice ``(("labels", k),)`` holds the example count of label k.
      label_map: names and tasks, or None.
      num_labels: width of the multi-hot vector.
    """
    by_slice = dict(slicing_metrics)
    overall = by_slice.get((), {})
    names = label_map.by_id() if label_map else {}
    rows = []
    for index in range(num_labels):
        label_id = index + 1
        if label_map and label_id not in names:
            continue  # a gap in the label ids
        decisions = overall.get(_DECISIONS, {}).get(f"classId:{index}", {})
        probabilities = overall.get(_PROBABILITIES, {}).get(f"classId:{index}", {})
        label_slice = by_slice.get(((LABELS_KEY, label_id),), {})
        support = _value(label_slice.get(_DECISIONS, {}).get("", {}), "example_count")
        label = names.get(label_id)
        rows.append(LabelRow(label_id, label.name if label else str(label_id), label.task if label else "",
                             0 if math.isnan(support) else int(support), _value(decisions, "precision"),
                             _value(decisions, "recall"), _value(decisions, "f1_score"),
                             _value(probabilities, "auc")))
    return rows


def by_task(rows: Sequence[LabelRow]) -> Dict[str, List[LabelRow]]:
    """Rows grouped by task (tasks in order of total support), each sorted by support."""
    groups: Dict[str, List[LabelRow]] = collections.defaultdict(list)
    for row in rows:
        groups[row.task].append(row)
    ordered = sorted(groups.items(), key=lambda kv: (-sum(r.support for r in kv[1]), kv[0]))
    return {task: sorted(group, key=lambda r: (-r.support, r.label_id)) for task, group in ordered}


def _fmt(value: float) -> str:
    return "    -" if math.isnan(value) else f"{value:5.3f}"


def format_metrics(rows: Sequence[LabelRow], overall_micro_f1: float) -> List[str]:
    lines = [f"micro-F1 (tuned thresholds, eval split): {_fmt(overall_micro_f1).strip()}",
             f"{'label':28s} {'support':>7s} {'prec':>5s} {'rec':>5s} {'F1':>5s} {'AUC':>5s}"]
    for task, group in by_task(rows).items():
        lines.append(f"[{task or 'labels'}]")
        lines += [f"  {r.name[:26]:26s} {r.support:7d} {_fmt(r.precision)} {_fmt(r.recall)} {_fmt(r.f1)} "
                  f"{_fmt(r.auc)}" for r in group]
    lines.append("'-': undefined (no positive decisions or no positive examples)")
    return lines


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


def format_distribution(stats: LabelStats, label_map: Optional[LabelMap], split: str,
                        top_pairs: int = 10) -> List[str]:
    names = label_map.by_id() if label_map else {}

    def name(label_id):
        return names[label_id].name if label_id in names else str(label_id)

    per_example = stats.counts.sum() / max(stats.examples, 1)
    lines = [f"label distribution ({split} split, {stats.examples} examples, {per_example:.2f} labels each):"]
    order = np.argsort(-stats.counts, kind="stable")
    lines += [f"  {name(k + 1)[:26]:26s} {stats.counts[k]:7d} {100 * stats.counts[k] / max(stats.examples, 1):5.1f}%"
              for k in order if stats.counts[k] > 0]
    unused = int((stats.counts == 0).sum())
    if unused:
        lines.append(f"  ({unused} label ids never occur)")
    lines.append(f"most frequent label pairs ({split}):")
    lines += [f"  {name(a)} + {name(b)}: {n}" for a, b, n in stats.top_pairs(top_pairs)]
    return lines


def _bars_svg(values: Sequence[Tuple[str, Sequence[float]]], colors: Sequence[str], width: int = 360) -> str:
    """Horizontal grouped bars in [0, 1], one row per (label, values)."""
    row = 8 * len(colors) + 6
    parts = [f'<svg width="{width + 200}" height="{row * len(values) + 4}">']
    for i, (label, vals) in enumerate(values):
        y = i * row + 2
        parts.append(f'<text x="195" y="{y + row / 2 + 3}" text-anchor="end" font-size="11">{html.escape(label)}</text>')
        for j, (v, color) in enumerate(zip(vals, colors)):
            w = 0 if math.isnan(v) else max(0.0, min(1.0, v)) * width
            parts.append(f'<rect x="200" y="{y + 8 * j}" width="{w:.1f}" height="7" fill="{color}"/>')
    parts.append("</svg>")
    return "".join(parts)


def _heatmap_svg(stats: LabelStats, label_ids: Sequence[int], names: Dict[int, str], cell: int = 14) -> str:
    n = len(label_ids)
    parts = [f'<svg width="{200 + n * cell}" height="{200 + n * cell}">']
    for a, la in enumerate(label_ids):
        parts.append(f'<text x="195" y="{200 + a * cell + cell - 3}" text-anchor="end" font-size="10">'
                     f'{html.escape(names.get(la, str(la)))}</text>')
        parts.append(f'<text transform="translate({200 + a * cell + cell - 3},195) rotate(-60)" font-size="10">'
                     f'{html.escape(names.get(la, str(la)))}</text>')
        for b, lb in enumerate(label_ids):
            # P(b | a): how often label b comes with label a.
            p = stats.cooccurrence[la - 1, lb - 1] / max(stats.counts[la - 1], 1)
            parts.append(f'<rect x="{200 + b * cell}" y="{200 + a * cell}" width="{cell - 1}" height="{cell - 1}" '
                         f'fill="rgb({int(255 - 200 * p)},{int(255 - 120 * p)},255)"><title>'
                         f'{html.escape(names.get(la, str(la)))} -> {html.escape(names.get(lb, str(lb)))}: '
                         f'{p:.2f}</title></rect>')
    parts.append("</svg>")
    return "".join(parts)


def write_html(path: str, rows: Sequence[LabelRow], overall_micro_f1: float, stats: Optional[LabelStats],
               label_map: Optional[LabelMap], max_heatmap_labels: int = 40) -> None:
    """A self-contained HTML page: per-label P/R/F1 bars by task, label counts, co-occurrence."""
    names = {label.label_id: label.name for label in label_map.labels} if label_map else {}
    body = [f"<h1>imat report</h1><p>micro-F1 (tuned thresholds): {_fmt(overall_micro_f1)}</p>",
            '<p><span style="color:#4c72b0">&#9632; precision</span> <span style="color:#dd8452">&#9632; recall'
            '</span> <span style="color:#55a868">&#9632; F1</span> at each label\'s tuned threshold; sorted by support '
            "(n)</p>"]
    for task, group in by_task(rows).items():
        body.append(f"<h2>{html.escape(task or 'labels')}</h2>")
        body.append(_bars_svg([(f"{r.name} (n={r.support})", (r.precision, r.recall, r.f1)) for r in group],
                              ("#4c72b0", "#dd8452", "#55a868")))
    if stats is not None and stats.examples:
        top = [int(k) + 1 for k in np.argsort(-stats.counts, kind="stable") if stats.counts[k] > 0]
        biggest = max(int(stats.counts.max()), 1)
        body.append(f"<h2>Label distribution ({stats.examples} examples)</h2>")
        body.append(_bars_svg([(f"{names.get(k, k)} ({stats.counts[k - 1]})", (stats.counts[k - 1] / biggest,))
                               for k in top], ("#8172b2",)))
        body.append(f"<h2>Co-occurrence: P(column | row), the {min(len(top), max_heatmap_labels)} most frequent"
                    " labels</h2>")
        body.append(_heatmap_svg(stats, top[:max_heatmap_labels], names))
    with open(path, "w") as f:
        f.write("<!doctype html><meta charset='utf-8'><title>imat report</title>"
                "<body style='font-family:sans-serif'>" + "".join(body) + "</body>")


def main(argv: Optional[List[str]] = None) -> None:
    import tensorflow_model_analysis as tfma
    from trainer.features import load_label_map

    parser = argparse.ArgumentParser(prog="imat report", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workdir", default=DEFAULT_WORKDIR, help="what `imat run --workdir` used")
    parser.add_argument("--label_map", help="default: WORKDIR/source/label_map.csv")
    parser.add_argument("--html", help="chart to write; default: WORKDIR/report.html")
    parser.add_argument("--split", default="train", help="ExampleGen split to count labels on (train or eval)")
    parser.add_argument("--max_examples", type=int, default=200_000,
                        help="count labels on at most this many examples of --split")
    args = parser.parse_args(argv)
    metadata = os.path.join(args.workdir, "pipeline", "metadata.sqlite")
    try:
        evaluation = runs.latest_artifact_uri(metadata, "ModelEvaluation")
        examples = runs.latest_artifact_uri(metadata, "Examples")
    except FileNotFoundError as e:
        parser.error(str(e))
    if not evaluation:
        parser.error(f"no evaluation in {metadata}: the pipeline has not reached the Evaluator yet")
    label_map_path = args.label_map or os.path.join(args.workdir, "source", "label_map.csv")
    label_map = load_label_map(label_map_path) if os.path.exists(label_map_path) else None
    result = tfma.load_eval_result(evaluation)
    overall = dict(result.slicing_metrics).get((), {})
    num_labels = len([k for k in overall.get(_DECISIONS, {}) if k.startswith("classId:")])
    rows = label_rows(result.slicing_metrics, label_map, num_labels)
    print(f"evaluation: {evaluation}")
    print("\n".join(format_metrics(rows, micro_f1(result.slicing_metrics))))
    stats = None
    if examples:
        pattern = os.path.join(examples, f"Split-{args.split}", "*")
        stats = count_labels(read_label_lists(pattern, args.max_examples), num_labels)
        print("\n".join(format_distribution(stats, label_map, args.split)))
    out = args.html or os.path.join(args.workdir, "report.html")
    write_html(out, rows, micro_f1(result.slicing_metrics), stats, label_map)
    print(f"chart: {out}")
