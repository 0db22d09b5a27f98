"""PerLabelMetrics and PerLabelAUC, combiner by combiner (their equality with TFMA's binarized
metrics in a real TFMA run: tests/pipeline/test_eval_config.py)."""

import math

import numpy as np
import pytest
import tensorflow_model_analysis as tfma

from pipeline.per_label_metrics import PerLabelAUC, PerLabelMetrics, auc_thresholds, threshold_intervals

OUTPUT = "out"


def _combine(metric, labels, predictions, partitions=1):
    """Runs the metric's combiner over the rows, in ``partitions`` accumulators merged at the end."""
    (computation,) = metric.computations(output_names=[OUTPUT])
    combiner = computation.combiner
    accumulators = [combiner.create_accumulator() for _ in range(partitions)]
    for i, (label, prediction) in enumerate(zip(labels, predictions)):
        inputs = tfma.metrics.StandardMetricInputs(
            labels={OUTPUT: np.asarray(label, np.float32)}, predictions={OUTPUT: np.asarray(prediction, np.float32)}
        )
        accumulators[i % partitions] = combiner.add_input(accumulators[i % partitions], inputs)
    merged = combiner.merge_accumulators(accumulators)
    return {(key.name, key.sub_key.class_id): value for key, value in combiner.extract_output(merged).items()}


def test_precision_recall_f1_per_label_count_decisions_above_one_half():
    labels = [[1, 0, 1], [1, 1, 0], [0, 0, 1], [1, 0, 0]]
    decisions = [[1, 0, 0], [1, 0, 0], [1, 0, 1], [0, 0, 0]]
    out = _combine(PerLabelMetrics(), labels, decisions, partitions=2)
    # label 0: tp 2, fp 1, fn 1; label 1: never decided (precision undefined), one missed; label 2: tp 1, fn 1.
    assert out[("precision", 0)] == pytest.approx(2 / 3) and out[("recall", 0)] == pytest.approx(2 / 3)
    assert out[("f1_score", 0)] == pytest.approx(4 / 6)
    assert math.isnan(out[("precision", 1)]) and out[("recall", 1)] == 0.0 and out[("f1_score", 1)] == 0.0
    assert out[("precision", 2)] == 1.0 and out[("recall", 2)] == 0.5 and out[("f1_score", 2)] == pytest.approx(2 / 3)
    assert len(out) == 9


def test_auc_is_the_rank_auc_when_no_two_scores_share_a_threshold_interval():
    rng = np.random.default_rng(3)
    labels = (rng.uniform(size=(60, 4)) < 0.3).astype(float)
    labels[0, :] = 1.0
    labels[1, :] = 0.0
    # Scores on a grid of interval centres: at most one distinct value per interval of 199.
    grid = (np.arange(199) + 0.5) / 199
    scores = np.clip(0.3 * labels + rng.uniform(0, 0.7, labels.shape), 0, 1)
    scores = grid[np.minimum((scores * 199).astype(int), 198)]
    out = _combine(PerLabelAUC(num_thresholds=200), labels, scores, partitions=3)
    for k in range(4):
        pos, neg = scores[labels[:, k] == 1, k], scores[labels[:, k] == 0, k]
        exact = ((pos[:, None] > neg[None, :]).sum() + 0.5 * (pos[:, None] == neg[None, :]).sum()) / (
            len(pos) * len(neg)
        )
        assert out[("auc", k)] == pytest.approx(exact, abs=1e-9)
        assert 0.5 < out[("auc", k)] < 1.0


def test_auc_of_a_label_without_positives_or_negatives_is_nan():
    labels = [[0, 1, 1], [0, 1, 0], [0, 1, 1]]
    scores = [[0.2, 0.9, 0.8], [0.7, 0.1, 0.3], [0.4, 0.6, 0.9]]
    out = _combine(PerLabelAUC(), labels, scores)
    assert math.isnan(out[("auc", 0)]) and math.isnan(out[("auc", 1)])
    assert out[("auc", 2)] == pytest.approx(1.0)


def test_intervals_follow_tfma_histogram_truncation():
    thresholds = auc_thresholds(5)  # -1e-7, 0.25, 0.5, 0.75, 1 + 1e-7
    predictions = np.array([-0.5, 0.0, 0.24999, 0.25, 0.2500999, 0.5001, 0.99, 1.0, 3.0])
    # 0.25 truncates to the bucket edge 0.25, which is not at least 0.25 + 1e-7: below.
    # 0.2500999 truncates to 0.25 as well. From 1 (plus infinity) positive at every inner threshold.
    np.testing.assert_array_equal(threshold_intervals(predictions, thresholds), [1, 1, 1, 1, 1, 3, 4, 4, 4])


def test_label_vectors_must_match_and_keep_one_width():
    (computation,) = PerLabelMetrics().computations(output_names=[OUTPUT])
    combiner = computation.combiner
    narrow = tfma.metrics.StandardMetricInputs(
        labels={OUTPUT: np.array([1.0, 0.0])}, predictions={OUTPUT: np.array([1.0, 0.0, 1.0])}
    )
    with pytest.raises(ValueError, match="dense multi-hot vector as wide as the predictions"):
        combiner.add_input(combiner.create_accumulator(), narrow)
    (auc,) = PerLabelAUC().computations(output_names=[OUTPUT])
    two = tfma.metrics.StandardMetricInputs(labels={OUTPUT: np.ones(2)}, predictions={OUTPUT: np.ones(2)})
    three = tfma.metrics.StandardMetricInputs(labels={OUTPUT: np.ones(3)}, predictions={OUTPUT: np.ones(3)})
    accumulator = auc.combiner.add_input(auc.combiner.create_accumulator(), two)
    with pytest.raises(ValueError, match="widths 2 and 3"):
        auc.combiner.add_input(accumulator, three)
    with pytest.raises(ValueError, match="at least 2"):
        PerLabelAUC(num_thresholds=1)


def test_the_baseline_model_keeps_its_own_computations():
    # TFMA runs one of equal computations (combiner class, keys, preprocessors): the baseline's
    # per-label metrics, and so their diffs, must not collapse into the candidate's.
    from pipeline.label_metrics import LabelSliceMetrics

    for metric in (PerLabelMetrics(), PerLabelAUC(), LabelSliceMetrics()):
        computations = metric.computations(model_names=["candidate", "baseline"], output_names=[OUTPUT])
        kept = set(computations)  # TFMA's own equality, as its evaluator de-duplicates with
        assert sorted(c.combiner._model_name for c in kept) == ["baseline", "candidate"], type(metric).__name__


def test_nan_predictions_and_labels_outside_zero_one_are_refused():
    with pytest.raises(ValueError, match=r"predicted NaN for label\(s\) \[1\]"):
        _combine(PerLabelAUC(), [[1, 0]], [[0.2, float("nan")]])
    with pytest.raises(ValueError, match=r"outside \[0, 1\]"):
        _combine(PerLabelMetrics(), [[2, 0]], [[0.7, 0.1]])
