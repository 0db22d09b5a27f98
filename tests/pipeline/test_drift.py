"""Drift between spans (components/drift.py): what is measured, and the one line that stops a run."""

import io
import os
import random

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_data_validation as tfdv
from PIL import Image
from tensorflow_data_validation.statistics import stats_impl
from tfx_bsl.coders import example_coder

from cli import demo_data
from components import drift, validation
from imat_common import features
from imat_common.features import Label, LabelMap
from pipeline import schema as schema_lib

SCHEMA = schema_lib.build_schema(LabelMap(tuple(demo_data.label_table())))
RED = next(label.label_id for label in demo_data.label_table() if label.name == "red")
TASKS = {label.label_id: label.task for label in demo_data.label_table()}
TASK_FEATURES = {features.task_labels_key(task) for task in set(TASKS.values())}


def _example(image: Image.Image, labels, darken: float = 1.0) -> tf.train.Example:
    if darken != 1.0:
        image = Image.fromarray((np.asarray(image, dtype=np.float32) * darken).astype(np.uint8))
    buf = io.BytesIO()
    image.save(buf, format="JPEG", quality=90)
    feature = {
        features.IMAGE_ID_KEY: tf.train.Feature(bytes_list=tf.train.BytesList(value=[b"id"])),
        features.IMAGE_KEY: tf.train.Feature(bytes_list=tf.train.BytesList(value=[buf.getvalue()])),
        features.HEIGHT_KEY: tf.train.Feature(int64_list=tf.train.Int64List(value=[image.height])),
        features.WIDTH_KEY: tf.train.Feature(int64_list=tf.train.Int64List(value=[image.width])),
        features.LABELS_KEY: tf.train.Feature(int64_list=tf.train.Int64List(value=labels)),
    }
    return tf.train.Example(features=tf.train.Features(feature=feature))


def _span(seed: int, n: int, only_label: int = 0, darken: float = 1.0):
    rng = random.Random(seed)
    examples = []
    while len(examples) < n:
        image, labels = demo_data.render(rng, 48)
        if not only_label or only_label in labels:
            examples.append(_example(image, labels, darken))
    return examples


def _statistics(examples):
    batch = example_coder.ExamplesToRecordBatchDecoder().DecodeBatch(
        [drift.slim_example(e, TASKS).SerializeToString() for e in examples]
    )
    return stats_impl.generate_statistics_in_memory(batch, tfdv.StatsOptions(schema=SCHEMA))


def test_a_slim_example_keeps_labels_and_image_size_and_counts_the_jpeg_bytes():
    full = _span(0, 1)[0]
    slim = drift.slim_example(full)
    f = slim.features.feature
    assert sorted(f) == sorted([features.LABELS_KEY, features.HEIGHT_KEY, features.WIDTH_KEY, features.NUM_BYTES_KEY])
    assert f[features.LABELS_KEY] == full.features.feature[features.LABELS_KEY]
    assert f[features.HEIGHT_KEY].int64_list.value == [48]
    jpeg = full.features.feature[features.IMAGE_KEY].bytes_list.value[0]
    assert f[features.NUM_BYTES_KEY].int64_list.value == [len(jpeg)] and len(jpeg) > 100


def test_with_the_label_map_each_tasks_labels_get_a_feature_of_their_own():
    full = _span(0, 1)[0]
    labels = list(full.features.feature[features.LABELS_KEY].int64_list.value)
    tasks = dict(TASKS)
    del tasks[labels[-1]]  # an id the label map lacks: left out of the task features
    f = drift.slim_example(full, tasks).features.feature
    expected = {}
    for label_id in labels[:-1]:
        expected.setdefault(features.task_labels_key(TASKS[label_id]), []).append(label_id)
    assert {k: list(v.int64_list.value) for k, v in f.items() if k in TASK_FEATURES} == expected
    assert list(f[features.LABELS_KEY].int64_list.value) == labels  # every label still counted overall
    assert features.task_labels_key("neck line/collar") == "labels/neck_line_collar"


def test_the_schema_carries_the_drift_thresholds_and_still_bounds_the_label_ids():
    by_name = {f.name: f for f in SCHEMA.feature}
    labels = by_name[features.LABELS_KEY]
    assert labels.drift_comparator.infinity_norm.threshold == schema_lib.LABEL_DRIFT
    assert labels.int_domain.is_categorical and labels.int_domain.max == 18
    for name in (features.HEIGHT_KEY, features.WIDTH_KEY, features.NUM_BYTES_KEY):
        assert by_name[name].drift_comparator.jensen_shannon_divergence.threshold == schema_lib.IMAGE_DRIFT
    # Only the drift splits carry the JPEG size and the task features: the image splits must not be required to.
    assert not by_name[features.NUM_BYTES_KEY].HasField("presence")
    for task in set(TASKS.values()):
        feature = by_name[features.task_labels_key(task)]
        assert not feature.HasField("presence") and feature.int_domain.is_categorical
        assert feature.drift_comparator.infinity_norm.threshold == schema_lib.TASK_DRIFT
        ids = [label_id for label_id, name in TASKS.items() if name == task]
        assert (feature.int_domain.min, feature.int_domain.max) == (min(ids), max(ids))
    # Categorical statistics still enforce the domain: an id above the label map's is an anomaly.
    bad = _span(1, 20)
    bad[0].features.feature[features.LABELS_KEY].int64_list.value.append(19)
    anomalies = tfdv.validate_statistics(_statistics(bad), SCHEMA)
    assert features.LABELS_KEY in anomalies.anomaly_info


@pytest.fixture(scope="module")
def previous():
    return _statistics(_span(10, 400))


def test_a_span_from_the_same_distribution_does_not_drift(previous):
    drifts = drift.measure(_statistics(_span(11, 400)), previous, SCHEMA)
    assert {d.feature for d in drifts} == {
        features.LABELS_KEY,
        features.HEIGHT_KEY,
        features.WIDTH_KEY,
        features.NUM_BYTES_KEY,
    } | TASK_FEATURES
    assert [d for d in drifts if d.exceeded] == []
    assert drift.drift_lines(drifts, 2, 1) == []


def test_a_label_shift_and_a_darker_studio_stop_the_run_in_one_line_each(previous):
    drifts = {
        d.feature: d for d in drift.measure(_statistics(_span(12, 400, only_label=RED, darken=0.5)), previous, SCHEMA)
    }
    assert drifts[features.LABELS_KEY].exceeded and drifts[features.NUM_BYTES_KEY].exceeded
    assert drifts[features.task_labels_key("color")].exceeded  # red: within its task too
    assert not drifts[features.HEIGHT_KEY].exceeded  # same size: no drift there
    lines = drift.drift_lines(
        [d for d in drifts.values() if d.feature in (features.LABELS_KEY, features.NUM_BYTES_KEY)], 3, 2
    )
    assert len(lines) == 2
    label_line = next(line for line in lines if "'labels'" in line)
    assert "span 3 against span 2" in label_line and "L-infinity distance" in label_line
    assert f"threshold {schema_lib.LABEL_DRIFT:g}" in label_line and f"most changed value: {RED}" in label_line
    with pytest.raises(
        validation.DataValidationError, match=r"before Transform: drift in 'image/num_bytes'.*--warn_only"
    ):
        validation.check_splits({}, {"train": 400}, SCHEMA, warn_only=False, extra=sorted(lines))
    assert validation.check_splits({}, {"train": 400}, SCHEMA, warn_only=True, extra=lines) == lines


def test_spans_with_a_schema_without_drift_thresholds_stop_rather_than_go_unchecked():
    from tfx.types import artifact_utils, standard_artifacts

    from components import validation_gate
    from imat_common.splits import DRIFT_SPLITS, MODEL_SPLITS

    statistics = standard_artifacts.ExampleStatistics()
    statistics.split_names = artifact_utils.encode_split_names(list(MODEL_SPLITS + DRIFT_SPLITS))
    old = schema_lib.build_schema(LabelMap(tuple(demo_data.label_table())))
    for feature in old.feature:
        feature.ClearField("drift_comparator")
    lines = validation_gate.drift_problems(statistics, old, 3, 2, standard_artifacts.Schema())
    assert lines == [
        "the data comes in spans but the schema has no drift thresholds: regenerate it with "
        "`imat schema --label_map CSV --output schema.pbtxt`"
    ]
    # Without spans (no drift splits) the same schema is fine.
    statistics.split_names = artifact_utils.encode_split_names(list(MODEL_SPLITS))
    assert validation_gate.drift_problems(statistics, old, None, None, standard_artifacts.Schema()) == []


def _labels_only(rows):
    return [
        tf.train.Example(
            features=tf.train.Features(
                feature={features.LABELS_KEY: tf.train.Feature(int64_list=tf.train.Int64List(value=labels))}
            )
        )
        for labels in rows
    ]


def test_a_shift_inside_a_task_on_few_images_is_caught_though_all_labels_together_barely_move():
    # Task "main" (ids 1-10) on every image; task "rare" (ids 11-12) on one image in ten.
    label_map = LabelMap(
        tuple(Label(i, 1, f"m{i}", "main") for i in range(1, 11))
        + (Label(11, 2, "left", "rare"), Label(12, 2, "right", "rare"))
    )
    schema = schema_lib.build_schema(label_map)
    tasks = {label.label_id: label.task for label in label_map.labels}

    def span(right_share):
        rows = []
        for i in range(2000):
            row = [1 + i % 10]
            if i % 10 == 0:  # 200 images carry "rare"
                row.append(12 if (i // 10) % 100 < right_share * 100 else 11)
            rows.append(row)
        batch = example_coder.ExamplesToRecordBatchDecoder().DecodeBatch(
            [drift.slim_example(e, tasks).SerializeToString() for e in _labels_only(rows)]
        )
        return stats_impl.generate_statistics_in_memory(batch, tfdv.StatsOptions(schema=schema))

    drifts = {d.feature: d for d in drift.measure(span(0.8), span(0.5), schema)}
    overall, rare = drifts[features.LABELS_KEY], drifts[features.task_labels_key("rare")]
    assert not overall.exceeded and overall.value < schema_lib.LABEL_DRIFT  # 0.3 of 200 in 2,200: 0.027
    assert rare.exceeded and rare.value == pytest.approx(0.3, abs=0.01)
    assert not drifts[features.task_labels_key("main")].exceeded
    [line] = drift.drift_lines(list(drifts.values()), 3, 2)
    assert "drift in 'labels/rare'" in line and "most changed value: 1" in line


# --- skew: the run's train split (its window of spans) against its eval split (the newest span) ---


def test_an_eval_split_drawn_like_train_shows_no_skew_and_a_shifted_one_does():
    schema_skews = drift.skew_thresholds(SCHEMA)
    assert schema_skews == {
        features.LABELS_KEY: schema_lib.LABEL_DRIFT,
        features.HEIGHT_KEY: schema_lib.IMAGE_DRIFT,
        features.WIDTH_KEY: schema_lib.IMAGE_DRIFT,
    }
    train = _statistics(_span(20, 600))
    same = drift.measure_skew(train, _statistics(_span(21, 200)), SCHEMA)
    assert {d.feature for d in same} == set(schema_skews) and not [d for d in same if d.exceeded]
    shifted = drift.measure_skew(train, _statistics(_span(22, 200, only_label=RED)), SCHEMA)
    [line] = drift.skew_lines(shifted, "2,3", 3)
    assert line.startswith(
        "skew in 'labels' between the train split (spans 2,3) and the eval split (span 3): L-infinity distance "
    )
    assert f"threshold {schema_lib.LABEL_DRIFT:g} (most changed value: {RED})" in line


def _statistics_artifact(folder, splits):
    """An ExampleStatistics artifact holding ``splits`` ({name: statistics}) as StatisticsGen writes them."""
    from tfx.types import artifact_utils, standard_artifacts

    artifact = standard_artifacts.ExampleStatistics()
    artifact.uri = str(folder)
    artifact.split_names = artifact_utils.encode_split_names(list(splits))
    for name, statistics in splits.items():
        split_dir = artifact_utils.get_split_uri([artifact], name)
        os.makedirs(split_dir)
        with open(os.path.join(split_dir, "FeatureStats.pb"), "wb") as f:
            f.write(statistics.SerializeToString())
        with tf.io.TFRecordWriter(os.path.join(split_dir, "stats_tfrecord")) as writer:
            writer.write(statistics.SerializeToString())
    return artifact


@pytest.mark.parametrize("eval_images, stops", [(drift.SKEW_MIN_EXAMPLES, True), (drift.SKEW_MIN_EXAMPLES - 1, False)])
def test_the_gate_measures_skew_on_spans_only_with_enough_eval_images(tmp_path, eval_images, stops):
    from tfx.types import standard_artifacts

    from components import validation_gate
    from imat_common.splits import DRIFT_SPLITS

    train, shifted = _statistics(_span(30, 400)), _statistics(_span(31, eval_images, only_label=RED))
    validated = standard_artifacts.Schema()
    splits = {"train": train, "eval": shifted, **{name: train for name in DRIFT_SPLITS}}
    lines = validation_gate.skew_problems(_statistics_artifact(tmp_path / "s", splits), SCHEMA, "2,3", 3, validated)
    assert bool(lines) == stops
    assert validated.has_custom_property(drift.SKEW_PROPERTY_PREFIX + features.LABELS_KEY) == stops
    # Without spans (no drift splits) skew is not measured: train and validation folders may differ by design.
    no_spans = _statistics_artifact(tmp_path / "n", {"train": train, "eval": shifted})
    assert validation_gate.skew_problems(no_spans, SCHEMA, "", None, standard_artifacts.Schema()) == []
