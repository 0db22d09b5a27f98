"""The curated schema: generated from the label map, parsed as the pipeline parses it, checked in for the demo."""

import os

import pytest
import tensorflow as tf
from tensorflow_metadata.proto.v0 import schema_pb2
from tensorflow_transform.tf_metadata import schema_utils

from pipeline import schema as schema_lib
from cli import demo_data, schema as schema_command
from imat_common import features
from imat_common.features import Label, LabelMap, write_label_map
from tests.helpers import REPO

LABEL_MAP = LabelMap(tuple(Label(i, 1 + i // 100, f"l{i}", f"t{1 + i // 100}") for i in range(1, 229)))


def test_labels_are_variable_length_with_the_label_maps_domain_and_the_rest_required():
    schema = schema_lib.build_schema(LABEL_MAP)
    by_name = {f.name: f for f in schema.feature}
    task_features = {features.task_labels_key(t) for t in ("t1", "t2", "t3")}
    assert set(by_name) == set(features.RAW_FEATURE_KEYS) | {features.NUM_BYTES_KEY} | task_features
    labels = by_name[features.LABELS_KEY]
    assert (labels.int_domain.min, labels.int_domain.max) == (1, 228) and not labels.HasField("shape")
    assert by_name[features.IMAGE_KEY].presence.min_fraction == 1.0
    assert schema.dataset_constraints.min_examples_count == 1
    # How Transform and the Trainer parse it: labels sparse whatever the counts, the image one value.
    spec = schema_utils.schema_as_feature_spec(schema).feature_spec
    assert spec[features.LABELS_KEY] == tf.io.VarLenFeature(tf.int64)
    assert spec[features.IMAGE_KEY] == tf.io.FixedLenFeature([1], tf.string)
    assert spec[features.IMAGE_ID_KEY] == tf.io.FixedLenFeature([1], tf.string)
    # The drift splits' JPEG size and task labels are optional: the image splits parse without them.
    assert spec[features.NUM_BYTES_KEY] == tf.io.VarLenFeature(tf.int64)
    assert all(spec[name] == tf.io.VarLenFeature(tf.int64) for name in task_features)


def test_the_checked_in_demo_schema_is_the_generated_one():
    checked_in = schema_lib.read_schema(os.path.join(REPO, "schema", "demo.pbtxt"))
    assert checked_in == schema_lib.build_schema(LabelMap(tuple(demo_data.label_table())))


def test_staging_gives_each_content_its_own_path(tmp_path):
    first = schema_lib.stage_schema(schema_lib.build_schema(LABEL_MAP), str(tmp_path))
    again = schema_lib.stage_schema(schema_lib.build_schema(LABEL_MAP), str(tmp_path))
    fewer = LabelMap(tuple(LABEL_MAP.labels[:195]))
    other = schema_lib.stage_schema(schema_lib.build_schema(fewer), str(tmp_path))
    assert first == again != other
    [labels] = [f for f in schema_lib.read_schema(other).feature if f.name == features.LABELS_KEY]
    assert labels.int_domain.max == 195


def test_differences_name_what_schemagen_guessed_otherwise():
    curated = schema_lib.build_schema(LABEL_MAP)
    inferred = schema_pb2.Schema()
    inferred.CopyFrom(curated)
    labels = next(f for f in inferred.feature if f.name == features.LABELS_KEY)
    labels.shape.dim.add(size=7)  # every example had seven labels
    inferred.feature.add(name="extra", type=schema_pb2.FLOAT)
    assert schema_lib.differences(curated, inferred) == [
        "extra: not in the contract",
        "labels: shape [7], contract variable",
    ]
    assert schema_lib.differences(curated, curated) == []
    # SchemaGen never sees the drift splits' optional JPEG size in the image splits: no difference.
    without = schema_pb2.Schema()
    without.CopyFrom(curated)
    del without.feature[[f.name for f in without.feature].index(features.NUM_BYTES_KEY)]
    assert schema_lib.differences(curated, without) == []
    # A required feature missing is still named.
    del without.feature[[f.name for f in without.feature].index(features.URL_KEY)]
    assert schema_lib.differences(curated, without) == ["image/url: in the contract, absent from the other schema"]


def test_schema_command_writes_and_checks(tmp_path, capsys):
    label_map = str(tmp_path / "label_map.csv")
    write_label_map(LABEL_MAP.labels, label_map)
    out = str(tmp_path / "schema.pbtxt")
    schema_command.main(["--label_map", label_map, "--output", out])
    schema_command.main(["--label_map", label_map, "--check", out])
    assert "matches" in capsys.readouterr().out
    write_label_map(LABEL_MAP.labels[:195], label_map)
    with pytest.raises(SystemExit) as exit_info:
        schema_command.main(["--label_map", label_map, "--check", out])
    assert exit_info.value.code == 1 and "differs from the schema of" in capsys.readouterr().err
    (tmp_path / "bad.pbtxt").write_text("feature { nme: 1 }")
    with pytest.raises(ValueError, match="bad.pbtxt: not a text-format"):
        schema_lib.read_schema(str(tmp_path / "bad.pbtxt"))


def test_schema_command_sets_the_drift_thresholds_and_refuses_nonsense(tmp_path, capsys):
    label_map = str(tmp_path / "label_map.csv")
    write_label_map(LABEL_MAP.labels, label_map)
    out = str(tmp_path / "schema.pbtxt")
    schema_command.main(["--label_map", label_map, "--output", out, "--label_drift", "0.05", "--image_drift", "0.2"])
    by_name = {f.name: f for f in schema_lib.read_schema(out).feature}
    assert by_name[features.LABELS_KEY].drift_comparator.infinity_norm.threshold == 0.05
    assert by_name[features.NUM_BYTES_KEY].drift_comparator.jensen_shannon_divergence.threshold == 0.2
    # A file written with other thresholds no longer matches the defaults.
    with pytest.raises(SystemExit) as exit_info:
        schema_command.main(["--label_map", label_map, "--check", out])
    assert exit_info.value.code == 1
    with pytest.raises(SystemExit) as exit_info:
        schema_command.main(["--label_map", label_map, "--output", out, "--label_drift", "0"])
    assert exit_info.value.code == 2 and "--label_drift must be in (0, 1]" in capsys.readouterr().err
