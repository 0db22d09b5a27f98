"""Spans through the pipeline's front (ExampleGen to Transform): which span each split reads, the
training window, and the drift stop before Transform."""

import os

import pytest
import tensorflow as tf

from cli import demo_data, runs, span_stats
from components import validation
from imat_common import features
from imat_common.features import write_label_map
from imat_common.workdir import metadata_path
from pipeline import local_runner
from pipeline.config import demo_config
from tests.helpers import run_front, write_span


def _write_span(data: str, span: int, shift=None) -> dict:
    written = write_span(data, span, train=300, validation=30, shift=shift)
    return {split: sorted(r["image_id"].decode() for r in rows) for split, rows in written.items()}


def _records(examples_uri, split):
    files = tf.io.gfile.glob(os.path.join(examples_uri, f"Split-{split}", "*"))
    return list(tf.data.TFRecordDataset(files, compression_type="GZIP"))


def _ids(examples_uri, split):
    spec = {"image_id": tf.io.FixedLenFeature([], tf.string)}
    return sorted(
        tf.io.parse_single_example(r, spec)["image_id"].numpy().decode() for r in _records(examples_uri, split)
    )


def _run_front(config):
    states = run_front(config)
    return states, span_stats.last_run_row(metadata_path(config.locations.pipeline_root))


@pytest.mark.slow
def test_each_run_reads_its_span_trains_on_the_window_and_stops_on_drift(tmp_path):
    work, data = str(tmp_path), str(tmp_path / "data")
    write_label_map(demo_data.label_table(), os.path.join(work, "label_map.csv"))
    span1, span2 = _write_span(data, 1), _write_span(data, 2)
    span3 = _write_span(data, 3, demo_data.Shift())  # red about half the garments, darker photos
    config = local_runner.with_staged_schema(
        demo_config(work, 18, data_root=data, label_map=os.path.join(work, "label_map.csv"), train_spans=2)
    )
    metadata = metadata_path(config.locations.pipeline_root)

    states, read = _run_front(config.with_settings(span=1))
    assert states["ValidationGate"] == "COMPLETE" and states["Transform"] == "COMPLETE"
    # The first span: nothing to compare with.
    assert (read["span"], read["train_spans"], read["previous_span"], read["drift"]) == (1, [1], None, {})
    assert _records(runs.latest_artifact_uri(metadata, "Examples"), "drift_previous") == []

    states, read = _run_front(config.with_settings(span=2))
    assert states["Transform"] == "COMPLETE"
    assert (read["span"], read["train_spans"], read["previous_span"], read["gate"]) == (2, [1, 2], 1, "passed")
    # Measured, and below the schema's thresholds: a span drawn like the one before it.
    tasks = {features.task_labels_key(label.task) for label in demo_data.label_table()}
    assert set(read["drift"]) == {"labels", "image/height", "image/width", "image/num_bytes"} | tasks
    assert all(value <= read["thresholds"][feature] for feature, value in read["drift"].items())
    examples = runs.latest_artifact_uri(metadata, "Examples")
    assert _ids(examples, "train") == sorted(span1["train"] + span2["train"])
    # The gate scores the new data only: calibration and eval cut span 2's validation folder.
    assert sorted(_ids(examples, "calibration") + _ids(examples, "eval")) == span2["validation"]
    # The drift splits: span 2's and span 1's train folders, slim (no image bytes).
    for split, rows in (("drift_new", span2["train"]), ("drift_previous", span1["train"])):
        slim = [tf.train.Example.FromString(r.numpy()) for r in _records(examples, split)]
        assert len(slim) == len(rows)
        assert all(
            "image/encoded" not in e.features.feature and e.features.feature["image/num_bytes"].int64_list.value
            for e in slim
        )
        # Each task's labels in a feature of their own (ExampleGen read the label map).
        assert all(
            sorted(v for task in tasks for v in e.features.feature[task].int64_list.value)
            == sorted(e.features.feature["labels"].int64_list.value)
            for e in slim
        )

    # The newest span (3) without --span: its labels shifted, so the run stops before Transform.
    with pytest.raises(
        validation.DataValidationError,
        match=r"stopped the run before Transform: .*drift in 'labels' between the train folders of span 3 "
        r"against span 2: L-infinity distance 0\.\d+ above the schema's threshold 0\.03 "
        r"\(most changed value: 6\).*--warn_only",
    ):
        _run_front(config)
    states = {e.component: e.state for e in runs.last_run(metadata)}
    assert states["ValidationGate"] == "FAILED" and "Transform" not in states

    states, read = _run_front(config.with_settings(warn_only=True))
    assert states["Transform"] == "COMPLETE"
    assert (read["span"], read["train_spans"]) == (3, [2, 3]) and read["drift"]["labels"] > read["thresholds"]["labels"]
    # Red took about half the garments: within the colour task too.
    assert read["drift"]["labels/color"] > read["thresholds"]["labels/color"]
    examples = runs.latest_artifact_uri(metadata, "Examples")
    assert _ids(examples, "train") == sorted(span2["train"] + span3["train"])
    assert sorted(_ids(examples, "calibration") + _ids(examples, "eval")) == span3["validation"]

    # Span 2 again after span 3: the summary names the span this run read, not the newest span's.
    states, read = _run_front(config.with_settings(span=2))
    assert states["Transform"] in ("COMPLETE", "CACHED") and (read["span"], read["train_spans"]) == (2, [1, 2])
