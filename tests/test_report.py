"""imat report: per-label rows from TFMA's slicing metrics, label counting and the HTML chart."""
import gzip
import itertools
import math

import numpy as np
import pytest

from components.download.tfrecord import serialize_example, write_records
from pipeline import report
from trainer.features import Label, LabelMap

LABEL_MAP = LabelMap((Label(1, 1, "dress", "category"), Label(2, 1, "shirt", "category"),
                      Label(3, 2, "red", "color")))


def _metrics(**values):
    return {k: {"doubleValue": v} for k, v in values.items()}


SLICING_METRICS = [
    ((), {"decisions": {"": _metrics(**{"micro_average: true\n_micro_f1": 0.75}),
                        "classId:0": _metrics(precision=0.5, recall=1.0, f1_score=2 / 3, label_slice_example_count=4),
                        "classId:1": _metrics(precision="NaN", recall=0.0, f1_score=0.0, label_slice_example_count=9),
                        "classId:2": _metrics(precision=1.0, recall=0.5, f1_score=2 / 3, label_slice_example_count=2)},
          "probabilities": {"classId:0": _metrics(auc=0.9), "classId:1": _metrics(auc=0.4),
                            "classId:2": _metrics(auc=0.8)}}),
]
# An evaluation from before LabelSliceMetrics: the supports in per-label slices.
SLICED_METRICS = [
    ((), {output: {sub_key: {k: v for k, v in metrics.items() if k != "label_slice_example_count"}
                   for sub_key, metrics in by_sub_key.items()}
          for output, by_sub_key in SLICING_METRICS[0][1].items()}),
    ((("labels", 1),), {"decisions": {"": _metrics(example_count=4)}}),
    ((("labels", 2),), {"decisions": {"": _metrics(example_count=9)}}),
    ((("labels", 3),), {"decisions": {"": _metrics(example_count=2)}}),
]


def test_rows_carry_each_labels_metrics_and_support():
    rows = {r.label_id: r for r in report.label_rows(SLICING_METRICS, LABEL_MAP, 3)}
    assert rows[1].support == 4 and rows[1].precision == 0.5 and rows[1].auc == 0.9 and rows[1].task == "category"
    assert math.isnan(rows[2].precision) and rows[2].support == 9
    assert rows[3].name == "red" and rows[3].f1 == pytest.approx(2 / 3)
    assert report.micro_f1(SLICING_METRICS) == 0.75
    assert [r.support for r in report.label_rows(SLICED_METRICS, LABEL_MAP, 3)] == [4, 9, 2]


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
        write_records(f, [serialize_example({"image_id": str(i).encode(), "labels": ids}) for i, ids in enumerate(lists)])
    read = list(report.read_label_lists(str(tmp_path / "*.gz"), max_examples=100))
    assert read == lists
    assert list(report.read_label_lists(str(tmp_path / "*.gz"), max_examples=2)) == lists[:2]
    stats = report.count_labels(read, 3)
    assert stats.counts.tolist() == [2, 2, 2] and stats.top_pairs(5)[0] == (1, 3, 2)
    out = tmp_path / "report.html"
    report.write_html(str(out), report.label_rows(SLICING_METRICS, LABEL_MAP, 3), 0.75, stats, LABEL_MAP,
                      rule_lines=["per-label thresholds 0.700 <- served"], baseline=0.41)
    page = out.read_text()
    assert "<pre>per-label thresholds 0.700 &lt;- served</pre>" in page and "trivial baseline 0.410" in page
    assert page.count("<svg") == 4  # two tasks, the distribution, the co-occurrence map
    assert "shirt (n=9)" in page and "red" in page
    with pytest.raises(FileNotFoundError, match="no examples"):
        list(report.read_label_lists(str(tmp_path / "missing-*.gz"), 10))
