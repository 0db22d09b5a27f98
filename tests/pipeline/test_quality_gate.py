"""The gate's decision (the bound, the trivial baseline plus a margin, the last blessed model), and the blessing."""

import json
import math
import os

import pytest
import tensorflow as tf
from tensorflow_model_analysis.proto import metrics_for_slice_pb2
from tfx.types import standard_artifacts

from components import baseline, quality_gate
from components.quality_gate import LAST_BLESSED, LOWER_BOUND, TRIVIAL_BASELINE, decide
from imat_common import serving


def test_a_model_above_every_condition_is_blessed_and_the_message_names_them():
    decision = decide(0.712, lower_bound=0.3, trivial_baseline=0.441, margin=0.05, last_blessed=0.7)
    assert decision.blessed and decision.failed == []
    assert decision.message() == (
        "blessed: eval micro-F1 0.712 is at least the lower bound 0.3, above the trivial baseline 0.441 "
        "+ margin 0.05 and not worse than the last blessed model's 0.700, difference +0.012"
    )


@pytest.mark.parametrize(
    "values, failed, message",
    [
        (
            dict(micro_f1=0.35, lower_bound=0.4, trivial_baseline=0.2, margin=0.05, last_blessed=0.3),
            LOWER_BOUND,
            "NOT blessed: eval micro-F1 0.350 is below the lower bound 0.4",
        ),
        (
            dict(micro_f1=0.41, lower_bound=0.3, trivial_baseline=0.53, margin=0.05, last_blessed=0.4),
            TRIVIAL_BASELINE,
            "NOT blessed: eval micro-F1 0.410 is not above the trivial baseline 0.530 + margin 0.05",
        ),
        (
            dict(micro_f1=0.65, lower_bound=0.3, trivial_baseline=0.44, margin=0.05, last_blessed=0.7),
            LAST_BLESSED,
            "NOT blessed: eval micro-F1 0.650 is worse than the last blessed model's 0.700, difference -0.050",
        ),
    ],
)
def test_each_condition_alone_refuses_the_model_and_is_named(values, failed, message):
    decision = decide(**values)
    assert not decision.blessed
    assert decision.failed == [failed]
    assert decision.message() == message
    assert decision.custom_properties()[quality_gate.GATE_FAILED] == failed
    assert decision.custom_properties()[quality_gate.BLESSED] == 0


def test_a_model_that_learnt_nothing_passes_the_bound_but_not_the_baseline():
    # The real catalogue: a frozen random backbone scored 0.526 where the baseline scored 0.555.
    decision = decide(0.526, lower_bound=0.3, trivial_baseline=0.555, margin=0.05)
    assert decision.failed == [TRIVIAL_BASELINE]


def test_the_baseline_must_be_beaten_by_more_than_the_margin_and_the_bound_reached():
    assert decide(0.6, 0.3, 0.5, 0.1).failed == [TRIVIAL_BASELINE]  # 0.6 is not above 0.5 + 0.1
    assert decide(0.61, 0.3, 0.5, 0.1).blessed
    assert decide(0.3, 0.3, 0.1, 0.05).blessed  # the bound is "at or above"
    # A negative margin lets a model below the baseline through: what a permissive test config uses.
    assert decide(0.2, 0.0, 0.5, -1.0).blessed


def test_every_failed_condition_is_named_in_order():
    decision = decide(0.2, lower_bound=0.3, trivial_baseline=0.5, margin=0.05, last_blessed=0.6)
    assert decision.failed == [LOWER_BOUND, TRIVIAL_BASELINE, LAST_BLESSED]
    assert decision.message().count("; ") == 2
    assert decision.custom_properties()[quality_gate.GATE_FAILED] == ",".join(decision.failed)


def test_no_trivial_baseline_or_no_score_refuses_the_model():
    no_baseline = decide(0.9, 0.3, None, 0.05)
    assert no_baseline.failed == [TRIVIAL_BASELINE] and "retrain it" in no_baseline.message()
    assert quality_gate.GATE_TRIVIAL_BASELINE not in no_baseline.custom_properties()
    missing = decide(math.nan, 0.3, 0.5, 0.05)
    assert missing.failed == [LOWER_BOUND, TRIVIAL_BASELINE] and "(missing)" in missing.message()


def test_a_tfma_refusal_is_never_turned_into_a_blessing():
    decision = decide(0.8, 0.3, 0.5, 0.05, last_blessed=0.7, evaluator_blessed=False)
    assert not decision.blessed and decision.failed == [quality_gate.EVALUATOR]
    # Where a named condition explains TFMA's refusal, it alone is reported.
    assert decide(0.2, 0.3, 0.1, 0.05, evaluator_blessed=False).failed == [LOWER_BOUND]


def test_the_trivial_baseline_is_read_from_thresholds_json():
    assert quality_gate.trivial_baseline_of({"micro_f1": {"baseline": {"calibration": 0.5, "eval": 0.53}}}) == 0.53
    assert quality_gate.trivial_baseline_of({"format": 1, "thresholds": [0.5]}) is None


# The Evaluator's outputs, as TFMA and the Trainer write them.


def _add_metric(
    metrics, value, model_name="", is_diff=False, name="micro_f1", output="decisions", sub_key=None, interval=None
):
    item = metrics.metric_keys_and_values.add()
    item.key.name, item.key.output_name, item.key.model_name, item.key.is_diff = name, output, model_name, is_diff
    if sub_key is not None:
        item.key.sub_key.class_id.value = sub_key
    item.value.double_value.value = value
    if interval is not None:  # as TFMA's writer stores a ValueWithTDistribution
        item.confidence_interval.lower_bound.double_value.value = interval[0]
        item.confidence_interval.upper_bound.double_value.value = interval[1]


def _write_evaluation(folder, candidate, last_blessed=None, difference_interval=None):
    """A TFMA metrics file: the overall slice's gate metric, with distractors a reader must skip."""
    os.makedirs(folder)
    overall = metrics_for_slice_pb2.MetricsForSlice()
    name = "candidate" if last_blessed is not None else ""  # TFMA names the models only when there are two
    _add_metric(overall, candidate, name)
    _add_metric(overall, 0.99, name, name="f1_score", sub_key=0)  # a per-label F1
    _add_metric(overall, 0.98, name, output="probabilities")
    if last_blessed is not None:
        _add_metric(overall, last_blessed, "baseline")
        _add_metric(overall, candidate - last_blessed, "candidate", is_diff=True, interval=difference_interval)
        # A per-label diff, with its own interval, that the reader must skip.
        _add_metric(overall, 0.5, "candidate", is_diff=True, name="f1_score", sub_key=0, interval=(-0.9, 0.9))
    label_slice = metrics_for_slice_pb2.MetricsForSlice()
    label_slice.slice_key.single_slice_keys.add(column="labels", int64_value=1)
    _add_metric(label_slice, 0.01, name)
    with tf.io.TFRecordWriter(os.path.join(folder, "metrics-00000-of-00001.tfrecord")) as writer:
        for record in (label_slice, overall):
            writer.write(record.SerializeToString())
    return folder


def _model(tmp_path, trivial_baseline, model_id=7):
    model = standard_artifacts.Model()
    model.uri, model.id = str(tmp_path / "model"), model_id
    path = serving.thresholds_path(os.path.join(model.uri, "Format-Serving"))
    os.makedirs(os.path.dirname(path))
    with open(path, "w") as f:
        json.dump({"micro_f1": {"baseline": {"calibration": 0.5, "eval": trivial_baseline}}}, f)
    return model


def _tfma_blessing(tmp_path, model, blessed=True):
    """The Evaluator's blessing as TFMA left it."""
    blessing = standard_artifacts.ModelBlessing()
    blessing.uri = str(tmp_path / "blessing")
    os.makedirs(blessing.uri)
    open(os.path.join(blessing.uri, "BLESSED" if blessed else "NOT_BLESSED"), "w").close()
    blessing.set_int_custom_property("blessed", int(blessed))
    blessing.set_int_custom_property("current_model_id", model.id)
    return blessing


def test_the_gate_metric_is_read_for_the_candidate_and_the_last_blessed_model(tmp_path):
    alone = quality_gate.read_micro_f1(_write_evaluation(str(tmp_path / "a"), 0.61))
    assert (alone.candidate, alone.last_blessed, alone.difference_interval) == (pytest.approx(0.61), None, None)
    compared = quality_gate.read_micro_f1(_write_evaluation(str(tmp_path / "b"), 0.61, 0.58))
    assert (compared.candidate, compared.last_blessed) == (pytest.approx(0.61), pytest.approx(0.58))
    assert compared.difference_interval is None  # confidence_intervals off: TFMA wrote no interval


def test_the_difference_interval_is_read_from_the_gate_metrics_diff_only(tmp_path):
    scores = quality_gate.read_micro_f1(
        _write_evaluation(str(tmp_path / "e"), 0.61, 0.58, difference_interval=(-0.01, 0.07))
    )
    assert scores.difference_interval == (pytest.approx(-0.01), pytest.approx(0.07))


def test_the_comparison_with_the_last_blessed_model_names_the_difference_and_its_interval():
    better = decide(0.712, 0.3, 0.441, 0.05, last_blessed=0.7, difference_interval=(-0.02, 0.044))
    assert better.blessed
    assert "last blessed model's 0.700, difference +0.012 (95 % interval -0.020 to +0.044)" in better.message()
    assert better.custom_properties()[quality_gate.GATE_DIFFERENCE_LOWER] == pytest.approx(-0.02)
    assert better.custom_properties()[quality_gate.GATE_DIFFERENCE_UPPER] == pytest.approx(0.044)
    worse = decide(0.65, 0.3, 0.44, 0.05, last_blessed=0.7, difference_interval=(-0.09, -0.01))
    assert worse.failed == [LAST_BLESSED]
    assert worse.message() == (
        "NOT blessed: eval micro-F1 0.650 is worse than the last blessed model's 0.700, "
        "difference -0.050 (95 % interval -0.090 to -0.010)"
    )
    # Without a last blessed model there is no difference to report, whatever TFMA wrote.
    first = decide(0.65, 0.3, 0.44, 0.05, difference_interval=(-0.09, -0.01))
    assert quality_gate.GATE_DIFFERENCE_LOWER not in first.custom_properties()


def test_a_model_refused_for_the_baseline_loses_its_blessing_and_never_becomes_the_next_baseline(tmp_path):
    model = _model(tmp_path, trivial_baseline=0.53)
    blessing = _tfma_blessing(tmp_path, model)
    # TFMA blessed it: 0.56 is above the bound 0.3 and the last blessed model's 0.5.
    evaluation = _write_evaluation(str(tmp_path / "evaluation"), 0.56, 0.5)

    decision = quality_gate.gate_blessing(model, evaluation, blessing, lower_bound=0.3, margin=0.05)

    assert decision.failed == [TRIVIAL_BASELINE]
    assert blessing.get_int_custom_property("blessed") == 0
    assert blessing.get_int_custom_property(quality_gate.TFMA_BLESSED) == 1
    assert sorted(os.listdir(blessing.uri)) == ["NOT_BLESSED"]
    assert blessing.get_string_custom_property(quality_gate.GATE_FAILED) == TRIVIAL_BASELINE
    assert blessing.get_string_custom_property(quality_gate.GATE_MESSAGE) == decision.message()
    assert blessing.get_float_custom_property(quality_gate.GATE_TRIVIAL_BASELINE) == pytest.approx(0.53)
    assert blessing.get_float_custom_property(quality_gate.GATE_LAST_BLESSED) == pytest.approx(0.5)
    assert blessing.get_float_custom_property(quality_gate.GATE_BASELINE_MARGIN) == pytest.approx(0.05)
    # The next run's baseline resolver reads the same blessing: it finds no blessed model.
    assert baseline.latest_blessed([model], [blessing]) == {baseline.MODEL_KEY: [], baseline.BLESSING_KEY: []}


def test_a_model_above_the_baseline_keeps_tfmas_blessing_and_is_the_next_baseline(tmp_path):
    model = _model(tmp_path, trivial_baseline=0.44)
    blessing = _tfma_blessing(tmp_path, model)
    evaluation = _write_evaluation(str(tmp_path / "evaluation"), 0.71)

    decision = quality_gate.gate_blessing(model, evaluation, blessing, lower_bound=0.3, margin=0.05)

    assert decision.blessed and blessing.get_int_custom_property("blessed") == 1
    assert sorted(os.listdir(blessing.uri)) == ["BLESSED"]
    assert blessing.get_string_custom_property(quality_gate.GATE_FAILED) == ""
    assert not blessing.has_custom_property(quality_gate.GATE_LAST_BLESSED)  # the first model: none before it
    assert baseline.latest_blessed([model], [blessing])[baseline.MODEL_KEY] == [model]


def test_a_model_without_thresholds_json_is_refused(tmp_path):
    model = standard_artifacts.Model()
    model.uri, model.id = str(tmp_path / "no-model"), 3
    blessing = _tfma_blessing(tmp_path, model)
    evaluation = _write_evaluation(str(tmp_path / "evaluation"), 0.9)
    decision = quality_gate.gate_blessing(model, evaluation, blessing, lower_bound=0.3, margin=0.05)
    assert decision.failed == [TRIVIAL_BASELINE] and blessing.get_int_custom_property("blessed") == 0


def test_tfmas_refusal_stands_and_its_file_is_kept(tmp_path):
    model = _model(tmp_path, trivial_baseline=0.2)
    blessing = _tfma_blessing(tmp_path, model, blessed=False)
    evaluation = _write_evaluation(str(tmp_path / "evaluation"), 0.28)  # above 0.2 + 0.05, below 0.3
    decision = quality_gate.gate_blessing(model, evaluation, blessing, lower_bound=0.3, margin=0.05)
    assert decision.failed == [LOWER_BOUND]
    assert blessing.get_int_custom_property("blessed") == 0 and sorted(os.listdir(blessing.uri)) == ["NOT_BLESSED"]
