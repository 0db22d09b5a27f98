"""``imat report``: per-label precision, recall and F1 of the last evaluation, and the label data.

  imat report                          # the demo's workdir; writes imat-demo/report.html
  imat report --workdir W --label_map W/source/label_map.csv --html out.html

First the decision rules of the newest model (its ``thresholds.json``): micro-F1 of per-label
thresholds, one global threshold and 0.5 on the eval split, which one serves, and the trivial
baseline beside them. Then metrics from the newest TFMA evaluation in the pipeline's metadata
(the same numbers ``tfma.load_eval_result`` shows in a notebook): the gated micro-F1 of the
served decisions, each label's precision, recall and F1 at its served threshold, its AUC, and
its support (the eval examples carrying it, from ``pipeline.label_metrics``). Rows are grouped by
task and sorted by support. Then where SchemaGen's guess from the data differs from the curated
schema. The label distribution and co-occurrence are counted from ExampleGen's examples,
reading only the label feature.
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
# The label data (counts, pairs) lives in its own module; imported here for `imat report`'s callers.
from pipeline.label_stats import LabelStats, count_labels, format_distribution, read_label_lists
from trainer.features import LABELS_KEY, LabelMap

DEFAULT_WORKDIR = "imat-demo"
_DECISIONS, _PROBABILITIES = "decisions", "probabilities"
# pipeline.label_metrics.EXAMPLE_COUNT, spelled out: importing that module imports Beam and TFMA.
LABEL_SLICE_EXAMPLE_COUNT = "label_slice_example_count"


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
        the overall slice holds per-class metrics under ``classId:k`` (label id k+1), the
        support among them (``label_slice_example_count``); evaluations from before that metric
        hold it in the slice ``(("labels", k+1),)`` as ``example_count``.
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
        support = _value(decisions, LABEL_SLICE_EXAMPLE_COUNT)
        if math.isnan(support):  # an evaluation from before LabelSliceMetrics: per-label slices
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


def _headline(overall_micro_f1: float, baseline: float) -> str:
    return (f"micro-F1 of the served decisions on the eval split (TFMA, the gated number): "
            f"{_fmt(overall_micro_f1).strip()}" + ("" if math.isnan(baseline) else f" (trivial baseline {baseline:.3f})"))


def format_metrics(rows: Sequence[LabelRow], overall_micro_f1: float, baseline: float = math.nan) -> List[str]:
    lines = [_headline(overall_micro_f1, baseline),
             f"{'label':28s} {'support':>7s} {'prec':>5s} {'rec':>5s} {'F1':>5s} {'AUC':>5s}"]
    for task, group in by_task(rows).items():
        lines.append(f"[{task or 'labels'}]")
        lines += [f"  {r.name[:26]:26s} {r.support:7d} {_fmt(r.precision)} {_fmt(r.recall)} {_fmt(r.f1)} "
                  f"{_fmt(r.auc)}" for r in group]
    lines.append("'-': undefined (no positive decisions or no positive examples)")
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
               label_map: Optional[LabelMap], max_heatmap_labels: int = 40, rule_lines: Sequence[str] = (),
               baseline: float = math.nan) -> None:
    """A self-contained HTML page: the decision rules, per-label P/R/F1 bars by task, label counts, co-occurrence."""
    names = {label.label_id: label.name for label in label_map.labels} if label_map else {}
    body = [f"<h1>imat report</h1><p>{html.escape(_headline(overall_micro_f1, baseline))}</p>",
            f"<pre>{html.escape(chr(10).join(rule_lines))}</pre>" if rule_lines else "",
            '<p><span style="color:#4c72b0">&#9632; precision</span> <span style="color:#dd8452">&#9632; recall'
            '</span> <span style="color:#55a868">&#9632; F1</span> at each label\'s served threshold; sorted by support '
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
    rule_lines, baseline = model_rules(metadata)
    print("\n".join(rule_lines))
    print(f"evaluation: {evaluation}")
    print("\n".join(format_metrics(rows, micro_f1(result.slicing_metrics), baseline)))
    print("\n".join(schema_lines(metadata)))
    stats = None
    if examples:
        pattern = os.path.join(examples, f"Split-{args.split}", "*")
        stats = count_labels(read_label_lists(pattern, args.max_examples), num_labels)
        print("\n".join(format_distribution(stats, label_map, args.split)))
    out = args.html or os.path.join(args.workdir, "report.html")
    write_html(out, rows, micro_f1(result.slicing_metrics), stats, label_map, rule_lines=rule_lines, baseline=baseline)
    print(f"chart: {out}")


def model_rules(metadata: str) -> Tuple[List[str], float]:
    """The newest model's decision rules (``thresholds.json``) as lines, and its baseline's eval micro-F1."""
    from trainer.rules import BASELINE, format_report

    model = runs.latest_artifact_uri(metadata, "Model")
    if not model:
        return [], math.nan
    report = runs.training_report(os.path.join(model, "Format-Serving"))
    baseline = report.get("micro_f1", {}).get(BASELINE, {}).get("eval", math.nan)
    return [f"decision rules of {model}:"] + format_report(report), baseline


def schema_lines(metadata: str) -> List[str]:
    """Where SchemaGen's schema, inferred from this run's statistics, differs from the curated one."""
    from pipeline import schema as schema_lib

    inferred = runs.latest_output_uri(metadata, "SchemaGen", "Schema")
    curated = runs.latest_output_uri(metadata, "ImportSchemaGen", "Schema")
    if not inferred or not curated:
        return []
    differences = schema_lib.differences(schema_lib.read_schema(os.path.join(curated, "schema.pbtxt")),
                                         schema_lib.read_schema(os.path.join(inferred, "schema.pbtxt")))
    if not differences:
        return ["schema: SchemaGen's guess from the data agrees with the curated schema"]
    return ["schema: SchemaGen's guess from the data differs from the curated schema (the contract):"] + \
        [f"  {line}" for line in differences]
