"""The validation stop before Transform, and ExampleGen's calibration / eval splits.

Unit: TFDV's anomalies on real statistics become one line naming split, feature and the
schema's domain. Slow: the pipeline's front (ExampleGen -> ... -> ValidationGate -> Transform)
stops on an out-of-domain label id, and lets it through with warn_only.
"""

import gzip
import io
import os
import random

import pytest
import tensorflow as tf
import tensorflow_data_validation as tfdv
from apache_beam.options.pipeline_options import PipelineOptions

from components import calibration_split, validation
from components.download.tfrecord import serialize_example, write_records
from pipeline import local_runner, schema as schema_lib
from cli import demo_data, runs
from pipeline.config import demo_config
from pipeline.pipeline import create_pipeline
from tests.helpers import run_front
from imat_common.features import LabelMap, write_label_map
from imat_common.workdir import metadata_path

SCHEMA = schema_lib.build_schema(LabelMap(tuple(demo_data.label_table())))  # labels 1..18


def _rows(n, first_id, seed=0):
    rng = random.Random(seed + first_id)
    rows = []
    for i in range(first_id, first_id + n):
        image, labels = demo_data.render(rng, 80)
        jpeg = io.BytesIO()
        image.save(jpeg, format="JPEG")
        rows.append(
            {
                "image_id": str(i).encode(),
                "image/encoded": jpeg.getvalue(),
                "image/height": 80,
                "image/width": 80,
                "image/sha256": b"0" * 64,
                "image/url": f"http://x/{i}.jpg".encode(),
                "labels": labels,
            }
        )
    return rows


def _write(path, rows):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with gzip.open(path, "wb") as f:
        write_records(f, [serialize_example(r) for r in rows])


def _anomalies(tmp_path, name, rows):
    path = str(tmp_path / f"{name}.tfrecord.gz")
    _write(path, rows)
    stats = tfdv.generate_statistics_from_tfrecord(path, pipeline_options=PipelineOptions(["--runner=FnApiRunner"]))
    return tfdv.validate_statistics(stats, SCHEMA)


def test_anomalies_become_one_line_naming_split_feature_and_domain(tmp_path):
    clean = _rows(6, 0)
    bad_label = _rows(6, 10)
    bad_label[2]["labels"] = [1, 99]
    no_image = _rows(6, 20)
    del no_image[4]["image/encoded"]
    found = {
        name: _anomalies(tmp_path, name, rows)
        for name, rows in (("train", clean), ("eval", bad_label), ("calibration", no_image))
    }
    assert validation.anomaly_lines("train", found["train"], SCHEMA) == []
    [line] = validation.anomaly_lines("eval", found["eval"], SCHEMA)
    assert line.startswith("split 'eval', feature 'labels': Out-of-range values") and "99" in line
    assert line.endswith("(the schema allows 1..18)")
    [line] = validation.anomaly_lines("calibration", found["calibration"], SCHEMA)
    assert line.startswith("split 'calibration', feature 'image/encoded':") and "fewer examples than expected" in line

    with pytest.raises(validation.DataValidationError) as error:
        validation.check_splits(found, {"train": 6, "eval": 6, "calibration": 6, "extra": 0}, SCHEMA, warn_only=False)
    message = str(error.value)
    assert "\n" not in message and "split 'calibration', feature 'image/encoded'" in message
    assert "(and 2 more: " in message and "split 'eval', feature 'labels'" in message
    assert "split 'extra': no examples" in message and "--warn_only" in message
    lines = validation.check_splits(found, {"train": 6, "eval": 6, "calibration": 6}, SCHEMA, warn_only=True)
    assert len(lines) == 2
    assert validation.check_splits({"train": found["train"]}, {"train": 6}, SCHEMA, warn_only=False) == []


def test_trainer_tunes_on_calibration_and_the_evaluator_scores_eval(tmp_path):
    config = demo_config(str(tmp_path), 18, schema_path="schema.pbtxt")
    nodes = {node.id: node for node in create_pipeline(config).components}
    trainer, evaluator = nodes["Trainer"], nodes["Evaluator"]
    assert '"calibration"' in trainer.exec_properties["eval_args"] and '"eval"' in trainer.exec_properties["eval_args"]
    assert '"train"' in trainer.exec_properties["train_args"]
    assert evaluator.exec_properties["example_splits"] == '["eval"]'
    # Transform and the Trainer read the schema the gate passed, so they wait for it.
    for name in ("Transform", "Trainer"):
        assert nodes[name].inputs["schema"].producer_component_id == "ValidationGate"
    with pytest.raises(ValueError, match="schema_path is empty"):
        create_pipeline(config.with_settings(schema_path=""))


def _split_ids(examples_uri, split):
    files = tf.io.gfile.glob(os.path.join(examples_uri, f"Split-{split}", "*"))
    spec = {"image_id": tf.io.FixedLenFeature([], tf.string)}
    return [
        tf.io.parse_single_example(r, spec)["image_id"].numpy().decode()
        for r in tf.data.TFRecordDataset(files, compression_type="GZIP")
    ]


def _run_front(config):
    return run_front(config)


@pytest.mark.slow
def test_an_out_of_domain_label_stops_the_run_before_transform_unless_warn_only(tmp_path):
    work = str(tmp_path)
    write_label_map(demo_data.label_table(), os.path.join(work, "label_map.csv"))
    validation_rows = _rows(16, 100)
    bad = next(r for r in validation_rows if calibration_split.in_calibration(r["image_id"], 50))
    bad["labels"] = sorted(bad["labels"] + [19])  # the label map's highest id is 18
    _write(os.path.join(work, "data", "train", "part-0.tfrecord.gz"), _rows(12, 0))
    _write(os.path.join(work, "data", "validation", "part-0.tfrecord.gz"), validation_rows)
    config = local_runner.with_staged_schema(
        demo_config(work, 18, image_size=75, label_map=os.path.join(work, "label_map.csv"))
    )

    with pytest.raises(
        validation.DataValidationError,
        match=r"split 'calibration', feature 'labels': Out-of-range values.*19.*allows 1\.\.18",
    ):
        _run_front(config)
    states = {e.component: e.state for e in runs.last_run(metadata_path(config.locations.pipeline_root))}
    assert states["ValidationGate"] == "FAILED" and "Transform" not in states

    # ExampleGen cut the validation folder into calibration and eval: disjoint, nothing lost.
    examples = runs.latest_artifact_uri(metadata_path(config.locations.pipeline_root), "Examples")
    calibration, evaluation = _split_ids(examples, "calibration"), _split_ids(examples, "eval")
    assert calibration and evaluation and not set(calibration) & set(evaluation)
    assert sorted(calibration + evaluation) == sorted(r["image_id"].decode() for r in validation_rows)
    assert sorted(_split_ids(examples, "train"), key=int) == [str(i) for i in range(12)]
    # Stored, not deflated (components/example_writer.py): gzip files no smaller than what they hold.
    for split in ("train", "calibration", "eval"):
        files = tf.io.gfile.glob(os.path.join(examples, f"Split-{split}", "data_tfrecord-*.gz"))
        assert files, split
        for path in files:
            with open(path, "rb") as f:
                packed = f.read()
            assert len(packed) > len(gzip.decompress(packed)), path

    states = _run_front(config.with_settings(warn_only=True))
    assert states["ValidationGate"] == "COMPLETE" and states["Transform"] == "COMPLETE"
    # Transform analyses (the label counts) without re-describing every decoded image.
    metadata = metadata_path(config.locations.pipeline_root)
    assert runs.latest_output_uri(metadata, "Transform", "TransformGraph")
    assert runs.latest_output_uri(metadata, "Transform", "ExampleStatistics") is None
