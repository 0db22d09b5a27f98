"""imat report: per-label rows from TFMA's slicing metrics, label counting and the HTML chart."""

import gzip
import itertools
import math
import re

import numpy as np
import pytest

from components.download.tfrecord import serialize_example, write_records
from cli import report
from tests.browser import open_page
from imat_common.features import Label, LabelMap

LABEL_MAP = LabelMap((Label(1, 1, "dress", "category"), Label(2, 1, "shirt", "category"), Label(3, 2, "red", "color")))


def _metrics(**values):
    return {k: {"doubleValue": v} for k, v in values.items()}


SLICING_METRICS = [
    (
        (),
        {
            "decisions": {
                "": _metrics(**{"micro_average: true\n_micro_f1": 0.75}),
                "classId:0": _metrics(
                    precision=0.5,
                    recall=1.0,
                    f1_score=2 / 3,
                    label_slice_example_count=4,
                    label_slice_micro_f1=0.6,
                    label_slice_micro_recall=0.7,
                ),
                "classId:1": _metrics(
                    precision="NaN",
                    recall=0.0,
                    f1_score=0.0,
                    label_slice_example_count=9,
                    label_slice_micro_f1=0.4,
                    label_slice_micro_recall=0.3,
                ),
                "classId:2": _metrics(
                    precision=1.0,
                    recall=0.5,
                    f1_score=2 / 3,
                    label_slice_example_count=2,
                    label_slice_micro_f1="NaN",
                    label_slice_micro_recall="NaN",
                ),
            },
            "probabilities": {
                "classId:0": _metrics(auc=0.9),
                "classId:1": _metrics(auc=0.4),
                "classId:2": _metrics(auc=0.8),
            },
        },
    )
]
# An evaluation from before LabelSliceMetrics: the supports in per-label slices.
SLICED_METRICS = [
    (
        (),
        {
            output: {
                sub_key: {k: v for k, v in metrics.items() if not k.startswith("label_slice_")}
                for sub_key, metrics in by_sub_key.items()
            }
            for output, by_sub_key in SLICING_METRICS[0][1].items()
        },
    ),
    ((("labels", 1),), {"decisions": {"": _metrics(**{"example_count": 4, "micro_average: true\n_micro_f1": 0.6})}}),
    ((("labels", 2),), {"decisions": {"": _metrics(example_count=9)}}),
    ((("labels", 3),), {"decisions": {"": _metrics(example_count=2)}}),
]


def test_rows_carry_each_labels_metrics_and_support():
    rows = {r.label_id: r for r in report.label_rows(SLICING_METRICS, LABEL_MAP, 3)}
    assert rows[1].support == 4 and rows[1].precision == 0.5 and rows[1].auc == 0.9 and rows[1].task == "category"
    assert math.isnan(rows[2].precision) and rows[2].support == 9
    assert rows[3].name == "red" and rows[3].f1 == pytest.approx(2 / 3)
    assert report.micro_f1(SLICING_METRICS) == 0.75 and report.num_labels(SLICING_METRICS) == 3
    assert rows[1].slice_f1 == 0.6 and rows[1].slice_recall == 0.7 and math.isnan(rows[3].slice_f1)
    old = report.label_rows(SLICED_METRICS, LABEL_MAP, 3)
    assert [r.support for r in old] == [4, 9, 2] and old[0].slice_f1 == 0.6 and math.isnan(old[1].slice_f1)


def test_terminal_shows_the_worst_label_slices():
    lines = report.format_slices(report.label_rows(SLICING_METRICS, LABEL_MAP, 3), worst=1)
    assert "the 1 worst of 2" in lines[0]  # "red" has no defined slice micro-F1
    assert len(lines) == 3 and lines[2].split()[:5] == ["shirt", "category", "9", "0.400", "0.300"]
    assert report.format_slices([], worst=5) == []


def test_grouped_by_task_and_sorted_by_support():
    groups = report.by_task(report.label_rows(SLICING_METRICS, LABEL_MAP, 3))
    assert list(groups) == ["category", "color"]
    assert [r.name for r in groups["category"]] == ["shirt", "dress"]
    text = "\n".join(report.format_metrics(report.label_rows(SLICING_METRICS, LABEL_MAP, 3), 0.75, 0.41))
    assert text.index("shirt") < text.index("dress") < text.index("[color]") < text.index("red")
    assert text.splitlines()[0].endswith("(TFMA, the gated number): 0.750 (trivial baseline 0.410)")


def test_counts_and_pairs_match_brute_force():
    rng = np.random.default_rng(0)
    lists = [sorted(set(rng.integers(1, 7, size=rng.integers(0, 4)).tolist())) for _ in range(1000)]
    stats = report.count_labels(lists, 6, batch=64)
    assert stats.examples == 1000
    for k in range(1, 7):
        assert stats.counts[k - 1] == sum(k in ids for ids in lists)
    for a, b in itertools.combinations(range(1, 7), 2):
        assert stats.cooccurrence[a - 1, b - 1] == sum(a in ids and b in ids for ids in lists)
    best = stats.top_pairs(1)[0]
    assert best[2] == max(stats.cooccurrence[a - 1, b - 1] for a, b in itertools.combinations(range(1, 7), 2))


def test_reads_label_lists_from_gzip_tfrecords_and_writes_the_chart(tmp_path):
    lists = [[1, 3], [2], [], [1, 2, 3]]
    with gzip.open(tmp_path / "data.tfrecord.gz", "wb") as f:
        write_records(
            f, [serialize_example({"image_id": str(i).encode(), "labels": ids}) for i, ids in enumerate(lists)]
        )
    read = list(report.read_label_lists(str(tmp_path / "*.gz"), max_examples=100))
    assert read == lists
    assert list(report.read_label_lists(str(tmp_path / "*.gz"), max_examples=2)) == lists[:2]
    stats = report.count_labels(read, 3)
    assert stats.counts.tolist() == [2, 2, 2] and stats.top_pairs(5)[0] == (1, 3, 2)
    out = tmp_path / "report.html"
    report.write_html(
        str(out),
        report.label_rows(SLICING_METRICS, LABEL_MAP, 3),
        0.75,
        stats,
        LABEL_MAP,
        rule_lines=["per-label thresholds 0.700 <- served"],
        baseline=0.41,
    )
    page = out.read_text()
    assert "<pre>per-label thresholds 0.700 &lt;- served</pre>" in page and "trivial baseline 0.410" in page
    assert page.count("Plotly.newPlot(") == 4  # two tasks, the distribution, the co-occurrence map
    assert len(re.findall(r"<script[^>]*\ssrc=", page)) == 0  # plotly.js inline: opens offline
    assert "shirt (n=9)" in page and page.count("<tr>") == 4  # the slice table's header and 3 labels
    with pytest.raises(FileNotFoundError, match="no examples"):
        list(report.read_label_lists(str(tmp_path / "missing-*.gz"), 10))


# The competition's 228 labels in 8 tasks, with the task sizes of iMaterialist 2018.
TASK_SIZES = {
    "category": 105,
    "style": 38,
    "material": 34,
    "color": 19,
    "pattern": 14,
    "neckline": 11,
    "sleeve": 4,
    "gender": 3,
}


def competition_sized_report(tmp_path):
    """Writes report.html for 228 labels in 8 tasks and returns its path and the rows."""
    rng = np.random.default_rng(0)
    labels = []
    for task_id, (task, size) in enumerate(TASK_SIZES.items(), start=1):
        labels += [Label(len(labels) + i + 1, task_id, f"{task} label {i:03d}", task) for i in range(size)]
    label_map = LabelMap(tuple(labels))
    decisions, probabilities = {"": _metrics(**{"micro_average: true\n_micro_f1": 0.55})}, {}
    for k in range(len(labels)):
        value = (lambda: "NaN") if k % 17 == 0 else (lambda: float(rng.uniform()))
        decisions[f"classId:{k}"] = _metrics(
            precision=value(),
            recall=float(rng.uniform()),
            f1_score=value(),
            label_slice_example_count=int(rng.integers(0, 300)),
            label_slice_micro_f1=value(),
            label_slice_micro_recall=value(),
        )
        probabilities[f"classId:{k}"] = _metrics(auc=float(rng.uniform()))
    rows = report.label_rows([((), {"decisions": decisions, "probabilities": probabilities})], label_map, len(labels))
    lists = [sorted(set(rng.integers(1, len(labels) + 1, size=4).tolist())) for _ in range(500)]
    out = str(tmp_path / "report.html")
    report.write_html(
        out,
        rows,
        0.55,
        report.count_labels(lists, len(labels)),
        label_map,
        rule_lines=["per-label thresholds 0.550 <- served"],
        baseline=0.3,
    )
    return out, rows


def test_report_opens_in_chromium_without_script_errors_and_sorts(tmp_path):
    path, rows = competition_sized_report(tmp_path)
    seen = {}

    def check(page):
        seen["plots"] = page.locator(".js-plotly-plot").count()
        seen["drawn"] = page.locator(".js-plotly-plot .main-svg").count()
        seen["rows"] = page.locator("#label-slices tbody tr").count()
        column = page.locator("#label-slices th", has_text="micro-F1 on them")
        cells = "#label-slices tbody tr td:nth-child(5)"
        column.click()
        seen["ascending"] = page.locator(cells).all_inner_texts()
        column.click()
        seen["descending"] = page.locator(cells).all_inner_texts()

    assert open_page(path, check) == []
    assert seen["plots"] == 10 and seen["drawn"] >= 10 and seen["rows"] == 228  # 8 tasks, 2 label-data charts
    defined = sorted(r.slice_f1 for r in rows if not math.isnan(r.slice_f1))
    undefined = ["-"] * (228 - len(defined))
    assert seen["ascending"] == [f"{v:.3f}" for v in defined] + undefined  # undefined last both ways
    assert seen["descending"] == [f"{v:.3f}" for v in reversed(defined)] + undefined


def _bounded(**values):
    """Metrics as ``load_eval_result`` gives them with confidence intervals on."""
    return {k: {"boundedValue": {"value": v, "lowerBound": v - 0.1, "upperBound": v + 0.1}} for k, v in values.items()}


def test_metrics_with_confidence_intervals_read_their_point_values():
    overall = {
        "decisions": {
            "": {**_bounded(**{"micro_average: true\n_micro_f1": 0.6}), **_bounded(micro_f1_diff=-0.2)},
            "classId:0": _bounded(precision=0.5, recall=0.25, f1_score=1 / 3, label_slice_example_count=4.0),
        },
        "probabilities": {"classId:0": _bounded(auc=0.9)},
    }
    assert report.micro_f1([((), overall)]) == pytest.approx(0.6)
    [row] = report.label_rows([((), overall)], None, 1)
    assert (row.support, row.precision, row.auc) == (4, pytest.approx(0.5), pytest.approx(0.9))


def _blessings(path, *property_sets):
    """An ML Metadata store holding one ModelBlessing per property set, in order."""
    from ml_metadata.metadata_store import metadata_store
    from ml_metadata.proto import metadata_store_pb2 as mlmd

    config = mlmd.ConnectionConfig()
    config.sqlite.filename_uri = path
    config.sqlite.connection_mode = mlmd.SqliteMetadataSourceConfig.READWRITE_OPENCREATE
    store = metadata_store.MetadataStore(config)
    blessing = store.put_artifact_type(mlmd.ArtifactType(name="ModelBlessing"))
    for properties in property_sets:
        artifact = mlmd.Artifact(type_id=blessing, uri="/nowhere")
        for key, value in properties.items():
            setattr(artifact.custom_properties[key], "int_value" if isinstance(value, int) else "double_value", value)
        store.put_artifacts([artifact])
    return path


def test_the_newest_evaluation_is_shown_beside_the_last_blessed_model_with_the_difference_interval(tmp_path):
    from components import quality_gate as gate

    first = {gate.BLESSED: 1, gate.GATE_MICRO_F1: 0.70}  # nothing blessed before it: no comparison
    assert report.comparison_lines(_blessings(str(tmp_path / "a.sqlite"), first)) == []
    worse = {
        gate.BLESSED: 0,
        gate.GATE_MICRO_F1: 0.65,
        gate.GATE_LAST_BLESSED: 0.70,
        gate.GATE_DIFFERENCE_LOWER: -0.09,
        gate.GATE_DIFFERENCE_UPPER: -0.01,
    }
    header, line = report.comparison_lines(_blessings(str(tmp_path / "b.sqlite"), first, worse))
    assert header.startswith("against the last blessed model")
    assert re.fullmatch(
        r" +candidate 0\.650 +last blessed 0\.700 +difference -0\.050 "
        r"\(95 % interval -0\.090 to -0\.010\) +-> NOT blessed",
        line,
    ), line
    no_interval = {gate.BLESSED: 1, gate.GATE_MICRO_F1: 0.72, gate.GATE_LAST_BLESSED: 0.70}
    [_, line] = report.comparison_lines(_blessings(str(tmp_path / "c.sqlite"), no_interval))
    assert line.endswith("difference +0.020   -> blessed") and "interval" not in line
