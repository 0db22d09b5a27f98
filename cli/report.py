"""``imat report``: per-label precision, recall and F1 of the last evaluation, and the label data.

  imat report                          # the demo's workdir; writes imat-demo/report.html
  imat report --workdir W --label_map W/source/label_map.csv --html out.html

First the decision rules of the newest model (its ``thresholds.json``): micro-F1 of per-label
thresholds, one global threshold and 0.5 on the eval split, which one serves, and the trivial
baseline beside them. Then metrics from the newest TFMA evaluation in the pipeline's metadata
(the same numbers ``tfma.load_eval_result`` shows in a notebook): the gated micro-F1 of the
served decisions (beside the last blessed model's, with the difference's interval, when the
Evaluator had one), each label's precision, recall and F1 at its served threshold, its AUC, and
its support (the eval examples carrying it, from ``pipeline.label_metrics``). Rows are grouped by
task and sorted by support. Then the label slices with the lowest micro-F1 (``--worst``): for
label k, the eval images carrying it and the micro-F1 and recall of all the served decisions on
them. Then where SchemaGen's guess from the data differs from the curated schema. The label
distribution and co-occurrence are counted from ExampleGen's examples, reading only the label
feature. With spans (``train_spans >= 1``), each span read: its train images, the spans its run
trained on, the drift measured against the previous span and whether the ValidationGate stopped
the run (``cli/span_stats.py``). ``report.html`` holds all of it with plotly charts, every label
slice in a table, and with spans each span's label distribution.
"""

import argparse
import collections
import dataclasses
import math
import os
from typing import Dict, List, Optional, Sequence, Tuple


from cli import runs, span_stats

# The label data (counts, pairs) lives in its own module; imported here for `imat report`'s callers.
from cli.label_stats import LabelStats, count_labels, format_distribution, read_label_lists
from imat_common.features import LABELS_KEY, LabelMap
from imat_common.workdir import DEFAULT_WORKDIR, Workdir
from imat_common import serving, splits
from imat_common.serving import read_thresholds


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
    # Of all the served decisions on the eval images carrying the label (its slice): micro recall and F1.
    slice_recall: float = math.nan
    slice_f1: float = math.nan


def _number(entry: dict) -> float:
    """A metric's value as ``load_eval_result`` gives it: ``doubleValue``, or with confidence
    intervals ``boundedValue`` (whose ``value`` is the point estimate, as gated)."""
    if "boundedValue" in entry:
        entry = entry["boundedValue"]
        return float(entry.get("value", math.nan))
    return float(entry.get("doubleValue", math.nan))  # TFMA writes NaN as the string "NaN"


def _value(metrics: dict, name: str) -> float:
    return _number(metrics.get(name, {}))


def _micro_f1(metrics: dict) -> float:
    for name, value in metrics.get(serving.DECISIONS, {}).get("", {}).items():
        if name.endswith("micro_f1") and not name.endswith("_diff"):
            return _number(value)
    return math.nan


def micro_f1(slicing_metrics: Sequence[Tuple[tuple, dict]]) -> float:
    """The gated micro-F1 of the overall slice."""
    return _micro_f1(dict(slicing_metrics).get((), {}))


def num_labels(slicing_metrics: Sequence[Tuple[tuple, dict]]) -> int:
    """The width of the multi-hot vector: the per-class sub keys of the overall slice's decisions."""
    overall = dict(slicing_metrics).get((), {})
    return len([k for k in overall.get(serving.DECISIONS, {}) if k.startswith("classId:")])


def label_rows(
    slicing_metrics: Sequence[Tuple[tuple, dict]], label_map: Optional[LabelMap], num_labels: int
) -> List[LabelRow]:
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
        decisions = overall.get(serving.DECISIONS, {}).get(f"classId:{index}", {})
        probabilities = overall.get(serving.PROBABILITIES, {}).get(f"classId:{index}", {})
        support = _value(decisions, serving.LABEL_SLICE_EXAMPLE_COUNT)
        slice_recall, slice_f1 = (
            _value(decisions, serving.LABEL_SLICE_MICRO_RECALL),
            _value(decisions, serving.LABEL_SLICE_MICRO_F1),
        )
        if math.isnan(support):  # an evaluation from before LabelSliceMetrics: per-label slices
            label_slice = by_slice.get(((LABELS_KEY, label_id),), {})
            support = _value(label_slice.get(serving.DECISIONS, {}).get("", {}), "example_count")
            slice_f1 = _micro_f1(label_slice)
        label = names.get(label_id)
        rows.append(
            LabelRow(
                label_id,
                label.name if label else str(label_id),
                label.task if label else "",
                0 if math.isnan(support) else int(support),
                _value(decisions, "precision"),
                _value(decisions, "recall"),
                _value(decisions, "f1_score"),
                _value(probabilities, "auc"),
                slice_recall,
                slice_f1,
            )
        )
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
    return (
        f"micro-F1 of the served decisions on the eval split (TFMA, the gated number): "
        f"{_fmt(overall_micro_f1).strip()}" + ("" if math.isnan(baseline) else f" (trivial baseline {baseline:.3f})")
    )


def format_metrics(rows: Sequence[LabelRow], overall_micro_f1: float, baseline: float = math.nan) -> List[str]:
    lines = [
        _headline(overall_micro_f1, baseline),
        f"{'label':28s} {'support':>7s} {'prec':>5s} {'rec':>5s} {'F1':>5s} {'AUC':>5s}",
    ]
    for task, group in by_task(rows).items():
        lines.append(f"[{task or 'labels'}]")
        lines += [
            f"  {r.name[:26]:26s} {r.support:7d} {_fmt(r.precision)} {_fmt(r.recall)} {_fmt(r.f1)} {_fmt(r.auc)}"
            for r in group
        ]
    lines.append("'-': undefined (no positive decisions or no positive examples)")
    return lines


def format_slices(rows: Sequence[LabelRow], worst: int = 10) -> List[str]:
    """The label slices with the lowest micro-F1: per label, its eval images and the decisions on them.

    Labels without eval images, or whose slice has no defined micro-F1, are left out.
    """
    scored = sorted(
        (r for r in rows if r.support > 0 and not math.isnan(r.slice_f1)),
        key=lambda r: (r.slice_f1, -r.support, r.label_id),
    )
    if not scored:
        return []
    lines = [
        f"label slices (the eval images carrying each label; micro-F1 and recall of all the served decisions "
        f"on them), the {min(worst, len(scored))} worst of {len(scored)}; all in the HTML table:",
        f"  {'label':26s} {'task':12s} {'images':>6s} {'mF1':>5s} {'mRec':>5s}   label's own F1",
    ]
    lines += [
        f"  {r.name[:26]:26s} {r.task[:12]:12s} {r.support:6d} {_fmt(r.slice_f1)} {_fmt(r.slice_recall)}   {_fmt(r.f1)}"
        for r in scored[:worst]
    ]
    return lines


def write_html(
    path: str,
    rows: Sequence[LabelRow],
    overall_micro_f1: float,
    stats: Optional[LabelStats],
    label_map: Optional[LabelMap],
    max_heatmap_labels: int = 40,
    rule_lines: Sequence[str] = (),
    baseline: float = math.nan,
    spans: Sequence[dict] = (),
) -> None:
    """A self-contained HTML page (``cli.report_html``): rules, charts by task, the slice table, label data,
    and the spans read (``cli.span_stats.span_rows``; none: no "Spans" section)."""
    from cli import report_html

    groups = by_task(rows)
    report_html.write_html(
        path,
        [r for group in groups.values() for r in group],
        _headline(overall_micro_f1, baseline),
        stats,
        label_map,
        groups,
        max_heatmap_labels=max_heatmap_labels,
        rule_lines=rule_lines,
        spans=spans,
    )


def main(argv: Optional[List[str]] = None) -> None:
    import tensorflow_model_analysis as tfma
    from imat_common.features import load_label_map

    parser = argparse.ArgumentParser(
        allow_abbrev=False,
        prog="imat report",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--workdir", default=DEFAULT_WORKDIR, help="what `imat run --workdir` used")
    parser.add_argument("--label_map", help="default: WORKDIR/source/label_map.csv")
    parser.add_argument("--html", help="chart to write; default: WORKDIR/report.html")
    parser.add_argument("--split", default="train", help="ExampleGen split to count labels on (train or eval)")
    parser.add_argument(
        "--max_examples", type=int, default=200_000, help="count labels on at most this many examples of --split"
    )
    parser.add_argument(
        "--worst",
        type=int,
        default=10,
        help="print this many label slices, lowest micro-F1 first (the HTML has them all)",
    )
    args = parser.parse_args(argv)
    metadata = Workdir(args.workdir).metadata
    try:
        evaluation = runs.latest_artifact_uri(metadata, "ModelEvaluation")
        examples = runs.latest_artifact_uri(metadata, "Examples")
    except FileNotFoundError as e:
        parser.error(str(e))
    if not evaluation:
        parser.error(f"no evaluation in {metadata}: the pipeline has not reached the Evaluator yet")
    label_map_path = args.label_map or Workdir(args.workdir).label_map
    label_map = load_label_map(label_map_path) if os.path.exists(label_map_path) else None
    result = tfma.load_eval_result(evaluation)
    width = num_labels(result.slicing_metrics)
    rows = label_rows(result.slicing_metrics, label_map, width)
    rule_lines, baseline = model_rules(metadata)
    rule_lines += comparison_lines(metadata)
    print("\n".join(rule_lines))
    print(f"evaluation: {evaluation}")
    print("\n".join(format_metrics(rows, micro_f1(result.slicing_metrics), baseline)))
    slice_lines = format_slices(rows, args.worst)
    if slice_lines:  # none where no label slice has a defined micro-F1
        print("\n".join(slice_lines))
    print("\n".join(schema_lines(metadata)))
    stats = None
    if examples:
        pattern = splits.split_pattern(examples, args.split)
        stats = count_labels(read_label_lists(pattern, args.max_examples), width)
        print("\n".join(format_distribution(stats, label_map, args.split)))
    spans = span_stats.span_rows(metadata)  # [] when the runs did not read spans
    if spans:
        print("\n".join(span_stats.format_spans(spans)))
    out = args.html or os.path.join(args.workdir, "report.html")
    write_html(
        out,
        rows,
        micro_f1(result.slicing_metrics),
        stats,
        label_map,
        rule_lines=rule_lines,
        baseline=baseline,
        spans=spans,
    )
    print(f"chart: {out}")


def model_rules(metadata: str) -> Tuple[List[str], float]:
    """The newest model's decision rules (``thresholds.json``) as lines, and its baseline's eval micro-F1."""
    from trainer.rules import BASELINE, format_report

    model = runs.latest_artifact_uri(metadata, "Model")
    if not model:
        return [], math.nan
    report = read_thresholds(os.path.join(model, "Format-Serving"))
    baseline = report.get("micro_f1", {}).get(BASELINE, {}).get("eval", math.nan)
    lines = [f"decision rules of {model}:"] + format_report(report)
    tuned = (report.get("training") or {}).get("hyperparameters")
    if tuned:  # imat run --tune: the settings the Tuner chose, which the run's flags do not show
        from cli.tuning import format_values

        lines.append(f"trained with the Tuner's best settings: {format_values(tuned)}")
    return lines, baseline


def comparison_lines(metadata: str) -> List[str]:
    """The newest evaluation's candidate against the last blessed model, side by side, from its blessing.

    Empty before any evaluation and for a first model (nothing blessed before it).
    """
    from components import quality_gate as gate

    blessings = runs.open_store(metadata).get_artifacts_by_type("ModelBlessing")
    if not blessings:
        return []
    properties = max(blessings, key=lambda a: a.id).custom_properties
    if gate.GATE_LAST_BLESSED not in properties or gate.GATE_MICRO_F1 not in properties:
        return []
    candidate = properties[gate.GATE_MICRO_F1].double_value
    last = properties[gate.GATE_LAST_BLESSED].double_value
    interval = None
    if gate.GATE_DIFFERENCE_LOWER in properties and gate.GATE_DIFFERENCE_UPPER in properties:
        interval = (
            properties[gate.GATE_DIFFERENCE_LOWER].double_value,
            properties[gate.GATE_DIFFERENCE_UPPER].double_value,
        )
    blessed = properties[gate.BLESSED].int_value if gate.BLESSED in properties else 0
    return [
        "against the last blessed model, on this run's eval split (micro-F1 of the served decisions):",
        f"  candidate {candidate:.3f}   last blessed {last:.3f}   {gate.difference_text(candidate, last, interval)}"
        f"   -> {'blessed' if blessed else 'NOT blessed'}",
    ]


def schema_lines(metadata: str) -> List[str]:
    """Where SchemaGen's schema, inferred from this run's statistics, differs from the curated one."""
    from pipeline import schema as schema_lib

    inferred = runs.latest_output_uri(metadata, "SchemaGen", "Schema")
    curated = runs.latest_output_uri(metadata, "ImportSchemaGen", "Schema")
    if not inferred or not curated:
        return []
    differences = schema_lib.differences(
        schema_lib.read_schema(os.path.join(curated, "schema.pbtxt")),
        schema_lib.read_schema(os.path.join(inferred, "schema.pbtxt")),
    )
    if not differences:
        return ["schema: SchemaGen's guess from the data agrees with the curated schema"]
    return ["schema: SchemaGen's guess from the data differs from the curated schema (the contract):"] + [
        f"  {line}" for line in differences
    ]
