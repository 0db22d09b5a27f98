"""Spans through the pipeline's front (ExampleGen to Transform): which span each split reads, the
training window, and the drift stop before Transform."""

import gzip
import io
import os
import random

import pytest
import tensorflow as tf
from tfx import v1 as tfx

from cli import demo_data, runs
from components import validation
from components.download.tfrecord import serialize_example, write_records
from imat_common.features import write_label_map
from imat_common.workdir import metadata_path
from pipeline import local_runner
from pipeline.config import demo_config
from pipeline.pipeline import data_components


def _rows(span: int, n: int, shift=None):
    rng = random.Random(1000 * span)
    rows = []
    for i in range(n):
        image, labels = demo_data.render(rng, 48, shift)
        jpeg = io.BytesIO()
        image.save(jpeg, format="JPEG", quality=90)
        rows.append(
            {
                "image_id": f"{span}-{i}".encode(),
                "image/encoded": jpeg.getvalue(),
                "image/height": 48,
                "image/width": 48,
                "image/sha256": b"0" * 64,
                "image/url": f"http://x/{span}/{i}.jpg".encode(),
                "labels": labels,
            }
        )
    return rows


def _write_span(data: str, span: int, shift=None) -> dict:
    ids = {}
    for split, n in (("train", 300), ("validation", 30)):
        rows = _rows(span, n, shift) if split == "train" else _rows(span + 500, n, shift)
        path = os.path.join(data, f"span-{span}", split, "part-0.tfrecord.gz")
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with gzip.open(path, "wb") as f:
            write_records(f, [serialize_example(r) for r in rows])
        ids[split] = sorted(r["image_id"].decode() for r in rows)
    return ids


def _records(examples_uri, split):
    files = tf.io.gfile.glob(os.path.join(examples_uri, f"Split-{split}", "*"))
    return list(tf.data.TFRecordDataset(files, compression_type="GZIP"))


def _ids(examples_uri, split):
    spec = {"image_id": tf.io.FixedLenFeature([], tf.string)}
    return sorted(
        tf.io.parse_single_example(r, spec)["image_id"].numpy().decode() for r in _records(examples_uri, split)
    )


def _run_front(config):
    pipeline = tfx.dsl.Pipeline(
        pipeline_name="front",
        pipeline_root=config.locations.pipeline_root,
        components=list(data_components(config).values()),
        metadata_connection_config=local_runner.metadata_config(config),
        beam_pipeline_args=list(config.run.beam_pipeline_args),
    )
    tfx.orchestration.LocalDagRunner().run(pipeline)
    metadata = metadata_path(config.locations.pipeline_root)
    return {e.component: e.state for e in runs.last_run(metadata)}, runs.spans_read(metadata)


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
    assert read == {"span": "1", "train_spans": "1"}  # the first span: nothing to compare with
    assert _records(runs.latest_artifact_uri(metadata, "Examples"), "drift_previous") == []

    states, read = _run_front(config.with_settings(span=2))
    assert states["Transform"] == "COMPLETE"
    assert read["span"] == "2" and read["train_spans"] == "1,2" and read["previous_span"] == "1"
    # Measured, and below the schema's thresholds: a span drawn like the one before it.
    assert {k for k in read if k.startswith("drift:")} == {
        "drift:labels",
        "drift:image/height",
        "drift:image/width",
        "drift:image/num_bytes",
    }
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
    assert read["span"] == "3" and read["train_spans"] == "2,3" and float(read["drift:labels"]) > 0.03
    examples = runs.latest_artifact_uri(metadata, "Examples")
    assert sorted(_ids(examples, "calibration") + _ids(examples, "eval")) == span3["validation"]
