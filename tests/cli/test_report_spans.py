"""imat report's "Spans" section: the rows gathered from ML Metadata and statistics, and the HTML."""

import collections
import os
import re

import pytest
from ml_metadata.metadata_store import metadata_store
from ml_metadata.proto import metadata_store_pb2 as mlmd
from tensorflow_metadata.proto.v0 import statistics_pb2

from cli import report, report_html, span_stats
from imat_common.features import Label, LabelMap

# --- label counts and shares from a DatasetFeatureStatisticsList built by hand ---


def _statistics(num_examples, ranked=(), top=(), feature="labels"):
    statistics = statistics_pb2.DatasetFeatureStatisticsList()
    dataset = statistics.datasets.add(name="drift_new", num_examples=num_examples)
    other = dataset.features.add()
    other.path.step.append("image/height")
    other.num_stats.mean = 48
    if ranked or top:
        labels = dataset.features.add(type=statistics_pb2.FeatureNameStatistics.INT)
        labels.path.step.append(feature)
        for value, count in ranked:
            labels.string_stats.rank_histogram.buckets.add(label=value, sample_count=count)
        for value, count in top:
            labels.string_stats.top_values.add(value=value, frequency=count)
    return statistics


def test_label_counts_read_the_rank_histogram_which_holds_every_label():
    # TFDV keeps only the 20 most frequent values in top_values, every value (up to 1,000) in the histogram.
    ranked = [(str(k), float(100 - k)) for k in range(1, 41)]
    statistics = _statistics(200, ranked=ranked, top=ranked[:20])
    examples, counts = span_stats.label_counts(statistics)
    assert examples == 200 and len(counts) == 40 and counts[1] == 99 and counts[40] == 60
    shares = span_stats.label_shares(examples, counts)
    assert shares[1] == pytest.approx(0.495) and shares[40] == pytest.approx(0.3)


def test_label_counts_fall_back_to_top_values_and_skip_what_is_not_a_label_id():
    statistics = _statistics(10, top=[("3", 7.0), ("__BYTES_VALUE__", 2.0), ("1", 4.0)])
    assert span_stats.label_counts(statistics) == (10, {3: 7, 1: 4})
    assert span_stats.label_counts(_statistics(10, top=[("3", 7.0)], feature="other")) == (10, {})
    # The first span's empty drift_previous split: no examples, no shares.
    assert span_stats.label_counts(_statistics(0)) == (0, {})
    assert span_stats.label_shares(0, {}) == {}


# --- the chart's labels: the top 30 by change between spans ---


def test_most_changed_ranks_by_the_largest_difference_between_any_two_spans():
    shares = {
        1: {1: 0.50, 2: 0.10, 3: 0.30, 4: 0.05},
        2: {1: 0.52, 2: 0.40, 3: 0.30},  # label 4 is absent: share 0
        3: {1: 0.45, 2: 0.20, 3: 0.10},
    }
    # changes: 1: 0.07, 2: 0.30, 3: 0.20, 4: 0.05
    assert span_stats.most_changed(shares) == [2, 3, 1, 4]
    assert span_stats.most_changed(shares, top=2) == [2, 3]
    # One span: nothing changed, the largest shares first, ties by id.
    assert span_stats.most_changed({7: {5: 0.1, 6: 0.3, 2: 0.1}}) == [6, 2, 5]
    assert span_stats.most_changed({}) == []


def test_most_changed_keeps_30_of_228_labels():
    first = {k: 0.01 for k in range(1, 229)}
    second = {k: 0.01 + (0.001 * k if k % 7 == 0 else 0.0) for k in range(1, 229)}
    chosen = span_stats.most_changed({1: first, 2: second})
    assert len(chosen) == span_stats.TOP_LABELS == 30
    # The multiples of 7 changed, by 0.001 * k: the 30 largest multiples, largest first.
    assert chosen == [7 * m for m in range(32, 2, -1)]


# --- the rows from a hand-made ML Metadata store (no statistics): linking, reruns, no spans ---


class _FakeStore:
    """Writes executions of the pipeline's nodes, each in a pipeline run, as TFX's local runner does."""

    def __init__(self, path):
        config = mlmd.ConnectionConfig()
        config.sqlite.filename_uri = path
        config.sqlite.connection_mode = mlmd.SqliteMetadataSourceConfig.READWRITE_OPENCREATE
        self.store = metadata_store.MetadataStore(config)
        self.node = self.store.put_context_type(mlmd.ContextType(name="node"))
        self.run = self.store.put_context_type(mlmd.ContextType(name="pipeline_run"))
        self.types = {}
        self.nodes = {}

    def _type(self, name):
        if name not in self.types:
            self.types[name] = self.store.put_artifact_type(mlmd.ArtifactType(name=name))
        return self.types[name]

    def execution(self, run, node, state, outputs=()):
        """``outputs``: (type name, custom properties) of each output artifact."""
        execution_type = self.store.put_execution_type(mlmd.ExecutionType(name=f"type.{node}"))
        [execution] = self.store.put_executions([mlmd.Execution(type_id=execution_type, last_known_state=state)])
        if node not in self.nodes:
            [self.nodes[node]] = self.store.put_contexts([mlmd.Context(type_id=self.node, name=f"front.{node}")])
        runs = self.store.get_contexts_by_type("pipeline_run")
        run_id = next((c.id for c in runs if c.name == run), None)
        if run_id is None:
            [run_id] = self.store.put_contexts([mlmd.Context(type_id=self.run, name=run)])
        self.store.put_attributions_and_associations(
            [], [mlmd.Association(context_id=c, execution_id=execution) for c in (self.nodes[node], run_id)]
        )
        for type_name, properties in outputs:
            artifact = mlmd.Artifact(type_id=self._type(type_name), uri=f"/nowhere/{node}/{execution}")
            for key, value in properties.items():
                field = "int_value" if isinstance(value, int) else "string_value"
                setattr(artifact.custom_properties[key], field, value)
            [artifact_id] = self.store.put_artifacts([artifact])
            self.store.put_events([mlmd.Event(artifact_id=artifact_id, execution_id=execution, type=mlmd.Event.OUTPUT)])


def test_a_workdir_without_spans_has_no_rows_and_no_section(tmp_path):
    path = str(tmp_path / "metadata.sqlite")
    fake = _FakeStore(path)
    fake.execution("run-1", "ImportExampleGen", mlmd.Execution.COMPLETE, [("Examples", {"span": 0})])
    fake.execution("run-1", "ValidationGate", mlmd.Execution.COMPLETE, [("Schema", {"anomalies": 0})])
    assert span_stats.span_rows(path) == []
    assert span_stats.format_spans([]) == [] and report_html.spans_section([], None, True) == ""
    out = tmp_path / "report.html"
    report.write_html(str(out), [], 0.5, None, None, spans=span_stats.span_rows(path))
    assert "Spans" not in out.read_text() and "Plotly.newPlot(" not in out.read_text()


def test_a_span_read_twice_is_one_row_from_its_newest_run(tmp_path):
    path = str(tmp_path / "metadata.sqlite")
    fake = _FakeStore(path)

    def read(span, window, previous=""):
        properties = {"span": span, "train_spans": window}
        return [("Examples", {**properties, "previous_span": previous} if previous else properties)]

    fake.execution("run-1", "ImportExampleGen", mlmd.Execution.COMPLETE, read(3, "3"))
    fake.execution("run-1", "ValidationGate", mlmd.Execution.COMPLETE, [("Schema", {"anomalies": 0})])
    fake.execution("run-2", "ImportExampleGen", mlmd.Execution.COMPLETE, read(4, "3,4", "3"))
    fake.execution("run-2", "ValidationGate", mlmd.Execution.COMPLETE, [("Schema", {"anomalies": 2})])
    fake.execution("run-3", "ImportExampleGen", mlmd.Execution.COMPLETE, read(4, "3,4", "3"))
    fake.execution("run-3", "ValidationGate", mlmd.Execution.FAILED)  # stopped: no output published
    fake.execution("run-4", "ImportExampleGen", mlmd.Execution.COMPLETE, read(5, "4,5", "4"))  # stopped earlier
    rows = span_stats.span_rows(path, measure_stopped=False)
    assert [(r["span"], r["run"], r["train_spans"], r["previous_span"]) for r in rows] == [
        (3, "run-1", [3], None),
        (4, "run-3", [3, 4], 3),
        (5, "run-4", [4, 5], 4),
    ]
    assert [r["gate"] for r in rows] == ["passed", "stopped", "did not run"]
    assert all(r["train_images"] is None and r["drift"] == {} for r in rows)  # no StatisticsGen recorded
    lines = span_stats.format_spans(rows)
    assert lines[2] == "  span 4: - train images, trained on spans 3,4; drift against span 3: -; gate stopped"


def test_the_section_shows_each_span_and_30_labels_named_from_the_label_map(tmp_path):
    label_map = LabelMap(tuple(Label(k, 1, f"label {k:03d}", "category") for k in range(1, 229)))
    counts = {k: 10 for k in range(1, 229)}
    rows = [
        {
            "span": span,
            "run": f"run-{span}",
            "train_spans": {1: [1], 2: [1, 2]}[span],
            "previous_span": span - 1 if span > 1 else None,
            "train_images": 1000,
            # label k gains k images in span 2: its share changes by k / 1000
            "label_counts": {k: n + (k if span == 2 else 0) for k, n in counts.items()},
            "drift": {"labels": 0.05, "image/height": 0.01} if span > 1 else {},
            "drift_source": "gate" if span > 1 else None,
            "thresholds": {"labels": 0.03, "image/height": 0.07},
            "gate": "passed",
            "let_through": 1 if span > 1 else 0,
        }
        for span in (1, 2)
    ]
    out = tmp_path / "report.html"
    report.write_html(str(out), [], 0.5, None, label_map, spans=rows)
    page = out.read_text()
    assert "<h2>Spans</h2>" in page and page.count("Plotly.newPlot(") == 1
    assert len(re.findall(r"<script[^>]*\ssrc=", page)) == 0  # plotly.js inline: the chart is the page's first
    table = page[page.index('id="spans"') : page.index("</table>", page.index('id="spans"'))]
    assert table.count("<tr>") == 3  # the header and two spans
    assert '<td class="n above" data-v="0.05" title="threshold 0.03">0.0500</td>' in table
    assert "passed, 1 problem(s) let through (warn_only)" in table
    # The labels that changed most: ids 228 down to 199, by name; not the label that changed least.
    assert '"label 228"' in page and '"label 199"' in page and '"label 198"' not in page
    assert "the 30 labels whose share changed most between spans" in page


# --- the front of the pipeline over three tiny spans ---


def _write_span(data, span, shift=None):
    """The span's folders; returns its train images' labels."""
    from tests.helpers import write_span

    return [r["labels"] for r in write_span(data, span, train=30, validation=10, shift=shift)["train"]]


def _run_front(config):
    from tests.helpers import run_front

    run_front(config, transform=False)


@pytest.mark.slow
def test_spans_from_the_pipelines_front(tmp_path):
    from cli import demo_data
    from components import validation
    from imat_common.features import load_label_map, task_labels_key, write_label_map
    from imat_common.workdir import metadata_path
    from pipeline import schema as schema_lib
    from pipeline.config import demo_config

    work, data = str(tmp_path), str(tmp_path / "data")
    label_map_path = os.path.join(work, "label_map.csv")
    write_label_map(demo_data.label_table(), label_map_path)
    label_map = load_label_map(label_map_path)
    labels = {1: _write_span(data, 1), 2: _write_span(data, 2), 3: _write_span(data, 3, demo_data.Shift())}
    config = demo_config(work, 18, data_root=data, label_map=label_map_path, train_spans=2)

    def schema(drift):
        built = schema_lib.build_schema(label_map, label_drift=drift, image_drift=drift, task_drift=drift)
        return config.with_settings(schema_path=schema_lib.stage_schema(built, os.path.join(work, "schema")))

    loose, tight = schema(0.9), schema(0.001)
    metadata = metadata_path(config.locations.pipeline_root)
    _run_front(loose.with_settings(span=1))
    _run_front(loose.with_settings(span=2))
    _run_front(loose)  # the newest span, 3
    recorded = span_stats.last_run_row(metadata)["drift"]
    # Span 3 once more, with thresholds its drift is above: the gate stops the run, and this newest
    # run of span 3 is its row.
    with pytest.raises(validation.DataValidationError, match="drift in"):
        _run_front(tight)

    rows = span_stats.span_rows(metadata)
    assert [r["span"] for r in rows] == [1, 2, 3]
    assert [r["train_images"] for r in rows] == [30, 30, 30]
    assert [r["train_spans"] for r in rows] == [[1], [1, 2], [2, 3]]
    assert [r["previous_span"] for r in rows] == [None, 1, 2]
    assert [r["gate"] for r in rows] == ["passed", "passed", "stopped"]
    for row in rows:  # StatisticsGen's count of each label id is the count in the span's train folder
        assert row["label_counts"] == dict(collections.Counter(k for ids in labels[row["span"]] for k in ids))
    tasks = {task_labels_key(label.task) for label in label_map.labels}  # 30 images: per-task drift is loose too
    features = {"labels", "image/height", "image/width", "image/num_bytes"} | tasks
    assert rows[0]["drift"] == {} and rows[0]["drift_source"] is None  # the first span: nothing to compare
    assert set(rows[1]["drift"]) == features and rows[1]["drift_source"] == "gate"
    assert rows[1]["thresholds"] == {feature: pytest.approx(0.9) for feature in features}
    # The stopped run published nothing: its distances are measured again, as the passing run recorded them.
    assert rows[2]["drift_source"] == "statistics" and rows[2]["thresholds"]["labels"] == pytest.approx(0.001)
    assert rows[2]["drift"] == {k: pytest.approx(v, abs=1e-4) for k, v in recorded.items()}
    lines = span_stats.format_spans(rows)
    assert lines[3].startswith("  span 3: 30 train images, trained on spans 2,3; drift against span 2: labels ")
    assert lines[3].endswith("; gate stopped") and "(above)" in lines[3]

    out = tmp_path / "report.html"
    report.write_html(str(out), [], 0.5, None, label_map, spans=rows)
    page = out.read_text()
    assert "<h2>Spans</h2>" in page and page.count("Plotly.newPlot(") == 1
    table = page[page.index('id="spans"') : page.index("</table>", page.index('id="spans"'))]
    assert table.count("<tr>") == 4 and table.count(">stopped</td>") == 1 and "drift: image/num_bytes" in table
    assert "span 3 (30 images)" in page and '"red"' in page  # the chart: a trace per span, labels by name
