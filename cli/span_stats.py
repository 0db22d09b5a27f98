"""The spans a workdir's runs read, for ``imat report``'s "Spans" section: plain dicts and lists.

With ``train_spans >= 1`` each run's ImportExampleGen reads the newest span (or ``--span N``)
and records on its Examples artifact ``span``, ``train_spans`` ("1,2,3") and ``previous_span``
(``components/calibration_split.py``); StatisticsGen describes the slim ``drift_new`` split (the
span's train folder: its example count, and with the curated schema the count of each label id);
the ValidationGate records each drift distance it measured on its Schema output (``drift:<feature>``)
and fails when it stops the run (``components/validation_gate.py``).

``span_rows`` reads all of that from ML Metadata, one row per span (a span read by several runs
counts once: its newest run), linked through the pipeline run each ExampleGen execution belongs to.
A gate that stopped its run published no output, so its distances are measured again from that
run's statistics and schema, as the gate measured them (``components/drift.py``).
``label_shares`` and ``most_changed`` make the per-span label distribution chart.
Nothing here draws or prints HTML (``cli/report_html.py`` does).
"""

import os
from typing import Dict, Iterable, List, Mapping, Optional, Tuple

from ml_metadata.proto import metadata_store_pb2
from tensorflow_metadata.proto.v0 import schema_pb2, statistics_pb2

from cli import runs
from imat_common.features import LABELS_KEY
from imat_common.splits import DRIFT_NEW, DRIFT_PREVIOUS, split_uri

# The node ids of the pipeline's front (pipeline/pipeline.py, data_components).
EXAMPLE_GEN, STATISTICS_GEN, VALIDATION_GATE = "ImportExampleGen", "StatisticsGen", "ValidationGate"
STATS_FILE = "FeatureStats.pb"  # StatisticsGen's file in each split's folder
TOP_LABELS = 30  # the chart's labels, by largest change between spans

# What the gate's execution state says about the run.
PASSED, STOPPED, NOT_RUN = "passed", "stopped", "did not run"
_GATE = {"COMPLETE": PASSED, "CACHED": PASSED, "FAILED": STOPPED, "CANCELED": "canceled"}


def _node(context_name: str) -> str:
    return context_name.split(".", 1)[-1]  # "<pipeline>.<node id>"


def _ints(text: str) -> List[int]:
    return [int(part) for part in text.split(",") if part.strip()]


def label_counts(
    statistics: statistics_pb2.DatasetFeatureStatisticsList, feature: str = LABELS_KEY
) -> Tuple[int, Dict[int, int]]:
    """A split's example count and the count of each label id, from StatisticsGen's statistics.

    The labels are categorical in the curated schema, so their statistics are string statistics:
    the rank histogram holds every value (up to 1,000, TFDV's default buckets), the top values
    only the 20 most frequent; the larger of the two is used. A label id appears at most once per
    example, so its count is the number of images carrying it. Values that are not whole numbers
    are left out.

    Returns:
      (examples, {label id: count}); (0, {}) for an empty split, counts {} without the feature.
    """
    examples, counts = 0, {}
    for dataset in statistics.datasets:
        examples += dataset.num_examples
        for stats in dataset.features:
            name = "/".join(stats.path.step) if stats.path.step else stats.name
            if name != feature or not stats.HasField("string_stats"):
                continue
            string_stats = stats.string_stats
            ranked = [(b.label, b.sample_count) for b in string_stats.rank_histogram.buckets]
            top = [(v.value, v.frequency) for v in string_stats.top_values]
            for value, count in ranked if len(ranked) >= len(top) else top:
                try:
                    label_id = int(value)
                except ValueError:
                    continue
                counts[label_id] = counts.get(label_id, 0) + int(round(count))
    return examples, counts


def label_shares(examples: int, counts: Mapping[int, int]) -> Dict[int, float]:
    """Each label's share of the images: count / examples ({} without images)."""
    return {label_id: count / examples for label_id, count in counts.items()} if examples else {}


def most_changed(shares_by_span: Mapping[int, Mapping[int, float]], top: int = TOP_LABELS) -> List[int]:
    """The ``top`` label ids whose share changed most between spans, largest change first.

    The change of a label is its largest share in any span minus its smallest (0 in a span
    without it): the largest difference between any two spans. Ties, and a single span where
    nothing changed, go by the largest share, then by label id.
    """
    spans = list(shares_by_span.values())
    ids = sorted({label_id for shares in spans for label_id in shares})
    if not ids or not spans:
        return []

    def key(label_id: int):
        values = [shares.get(label_id, 0.0) for shares in spans]
        return (-(max(values) - min(values)), -max(values), label_id)

    return sorted(ids, key=key)[:top]


def read_statistics(statistics_uri: str, split: str) -> Optional[statistics_pb2.DatasetFeatureStatisticsList]:
    """One split's statistics from a StatisticsGen output folder, or None when the split was not written."""
    import tensorflow as tf

    path = os.path.join(split_uri(statistics_uri, split), STATS_FILE)
    if not tf.io.gfile.exists(path):
        return None
    with tf.io.gfile.GFile(path, "rb") as f:
        return statistics_pb2.DatasetFeatureStatisticsList.FromString(f.read())


def read_schema(schema_uri: str) -> Optional[schema_pb2.Schema]:
    """The schema file in a Schema artifact's folder, or None."""
    import tensorflow as tf

    from pipeline.schema import read_schema as read_schema_file

    files = tf.io.gfile.glob(os.path.join(schema_uri, "*.pbtxt"))
    return read_schema_file(files[0]) if len(files) == 1 else None


class _Store:
    """The few ML Metadata look-ups span_rows needs."""

    def __init__(self, metadata_path: str):
        self.store = runs.open_store(metadata_path)
        self.type_names = {t.id: t.name for t in self.store.get_artifact_types()}

    def node_executions(self, node: str) -> List[metadata_store_pb2.Execution]:
        contexts = [c for c in self.store.get_contexts_by_type("node") if _node(c.name) == node]
        return [e for c in contexts for e in self.store.get_executions_by_context(c.id)]

    def run_of(self, execution_id: int) -> str:
        contexts = self.store.get_contexts_by_execution(execution_id)
        return next((c.name for c in contexts if c.type == "pipeline_run"), "")

    def artifacts(self, execution_id: int, event_type, type_name: str) -> List[metadata_store_pb2.Artifact]:
        ids = [e.artifact_id for e in self.store.get_events_by_execution_ids([execution_id]) if e.type == event_type]
        found = self.store.get_artifacts_by_id(ids) if ids else []
        return [a for a in found if self.type_names.get(a.type_id) == type_name]

    def newest_by_run(self, node: str) -> Dict[str, metadata_store_pb2.Execution]:
        """Run id -> the node's newest execution in that run."""
        result: Dict[str, metadata_store_pb2.Execution] = {}
        for execution in sorted(self.node_executions(node), key=lambda e: e.id):
            result[self.run_of(execution.id)] = execution
        return result


def _span_of(examples: metadata_store_pb2.Artifact) -> int:
    # TFX keeps the span as a custom property of the artifact (older versions: a property).
    if "span" in examples.custom_properties:
        return examples.custom_properties["span"].int_value
    return examples.properties["span"].int_value


def _measure_again(statistics_uri: str, schema: Optional[schema_pb2.Schema]) -> Dict[str, float]:
    """The gate's distances of a stopped run, measured from that run's drift splits and schema."""
    from components import drift

    new, previous = read_statistics(statistics_uri, DRIFT_NEW), read_statistics(statistics_uri, DRIFT_PREVIOUS)
    if schema is None or new is None or previous is None or not label_counts(previous)[0]:
        return {}
    return {d.feature: d.value for d in drift.measure(new, previous, schema)}


def span_rows(metadata_path: str, measure_stopped: bool = True) -> List[dict]:
    """One row per span the workdir's runs read, ascending; [] when they did not read spans.

    A span read by several runs counts once: its newest ExampleGen run. Each row is a dict:

    - ``span`` (int), ``run`` (the pipeline run id), ``execution`` (its ExampleGen execution's id),
      ``train_spans`` (the spans train read, a
      list of ints), ``previous_span`` (int, or None for the first span);
    - ``train_images``: the span's train images (``drift_new``'s example count), None without
      statistics; ``label_counts``: {label id: images of ``drift_new`` carrying it};
    - ``drift``: {feature: distance against the previous span}, {} when not measured;
      ``drift_source``: "gate" (recorded by the gate), "statistics" (measured again from the run's
      statistics, the gate having stopped the run) or None; ``thresholds``: {feature: the
      schema's threshold};
    - ``gate``: "passed", "stopped", "did not run" (or the execution's state in lower case while
      it runs); ``let_through``: problems the gate let through with warn_only.

    Args:
      metadata_path: the ML Metadata store (``Workdir(...).metadata``).
      measure_stopped: measure a stopped run's distances again (imports TFDV).
    """
    from components import drift

    store = _Store(metadata_path)
    newest: Dict[int, Tuple[metadata_store_pb2.Execution, metadata_store_pb2.Artifact]] = {}
    for execution in sorted(store.node_executions(EXAMPLE_GEN), key=lambda e: e.id):
        for examples in store.artifacts(execution.id, metadata_store_pb2.Event.OUTPUT, "Examples"):
            if "train_spans" in examples.custom_properties:
                newest[_span_of(examples)] = (execution, examples)
    if not newest:
        return []
    statistics_gens, gates = store.newest_by_run(STATISTICS_GEN), store.newest_by_run(VALIDATION_GATE)
    rows = []
    for span in sorted(newest):
        execution, examples = newest[span]
        run = store.run_of(execution.id)
        props = examples.custom_properties
        previous = props["previous_span"].string_value if "previous_span" in props else ""
        row = {
            "span": span,
            "run": run,
            "execution": execution.id,
            "train_spans": _ints(props["train_spans"].string_value),
            "previous_span": int(previous) if previous else None,
            "train_images": None,
            "label_counts": {},
            "drift": {},
            "drift_source": None,
            "thresholds": {},
            "gate": NOT_RUN,
            "let_through": 0,
        }
        statistics_uri = None
        if run in statistics_gens:
            outputs = store.artifacts(statistics_gens[run].id, metadata_store_pb2.Event.OUTPUT, "ExampleStatistics")
            statistics_uri = outputs[0].uri if outputs else None
        new = read_statistics(statistics_uri, DRIFT_NEW) if statistics_uri else None
        if new is not None:
            row["train_images"], row["label_counts"] = label_counts(new)
        gate = gates.get(run)
        if gate is not None:
            state = metadata_store_pb2.Execution.State.Name(gate.last_known_state)
            row["gate"] = _GATE.get(state, state.lower())
            inputs = store.artifacts(gate.id, metadata_store_pb2.Event.INPUT, "Schema")
            schema = read_schema(inputs[0].uri) if inputs else None
            row["thresholds"] = drift.thresholds(schema) if schema is not None else {}
            for output in store.artifacts(gate.id, metadata_store_pb2.Event.OUTPUT, "Schema"):
                for key, value in output.custom_properties.items():
                    if key.startswith(drift.PROPERTY_PREFIX):
                        row["drift"][key[len(drift.PROPERTY_PREFIX) :]] = value.double_value
                if "anomalies" in output.custom_properties:
                    row["let_through"] = output.custom_properties["anomalies"].int_value
            if row["drift"]:
                row["drift_source"] = "gate"
            elif row["gate"] == STOPPED and measure_stopped and statistics_uri and row["previous_span"] is not None:
                row["drift"] = _measure_again(statistics_uri, schema)
                row["drift_source"] = "statistics" if row["drift"] else None
        rows.append(row)
    return rows


def shares_by_span(rows: Iterable[dict]) -> Dict[int, Dict[int, float]]:
    """Span -> {label id: share of its train images}, for the spans with statistics."""
    return {r["span"]: label_shares(r["train_images"], r["label_counts"]) for r in rows if r["train_images"]}


def drift_features(rows: Iterable[dict]) -> List[str]:
    """The features with a measured drift in any row: labels first, then by name."""
    names = {feature for r in rows for feature in r["drift"]}
    return sorted(names, key=lambda name: (name != LABELS_KEY, name))


def gate_text(row: dict) -> str:
    """What the gate did, in a few words."""
    if row["gate"] == PASSED and row["let_through"]:
        return f"passed, {row['let_through']} problem(s) let through (warn_only)"
    return row["gate"]


def span_line(row: dict, features: Iterable[str] = ()) -> str:
    """One span's images, window, drift (each flagged when above its threshold) and the gate."""
    images = "-" if row["train_images"] is None else str(row["train_images"])
    drift = ", ".join(
        f"{feature} {row['drift'][feature]:.4f}"
        + (" (above)" if row["drift"][feature] > row["thresholds"].get(feature, float("inf")) else "")
        for feature in (list(features) or sorted(row["drift"]))
        if feature in row["drift"]
    )
    against = f"drift against span {row['previous_span']}: {drift or '-'}" if row["previous_span"] is not None else ""
    window = ",".join(str(s) for s in row["train_spans"])
    return (
        f"span {row['span']}: {images} train images, trained on spans {window}; "
        + (f"{against}; " if against else "")
        + f"gate {gate_text(row)}"
    )


def last_run_row(metadata_path: str) -> Optional[dict]:
    """The row of the span the newest run read (a cached rerun included), or None without spans."""
    rows = span_rows(metadata_path, measure_stopped=False)
    return max(rows, key=lambda r: r["execution"]) if rows else None


def format_spans(rows: List[dict]) -> List[str]:
    """The terminal's lines: one per span with its images, window, drift and the gate."""
    if not rows:
        return []
    features = drift_features(rows)
    return [f"spans read ({len(rows)}; a span read by several runs: its newest run):"] + [
        f"  {span_line(r, features)}" for r in rows
    ]
