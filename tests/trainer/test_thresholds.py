"""Per-label threshold tuning."""

import numpy as np
import pytest

from trainer.thresholds import f1_at, tune_global_threshold, tune_thresholds


def test_finds_the_separating_threshold():
    # Label 0: positives score 0.3-0.4, negatives 0.05-0.2: 0.5 finds none, the best cut is between 0.2 and 0.3.
    probabilities = np.array([[0.4], [0.35], [0.3], [0.2], [0.1], [0.05]])
    labels = np.array([[1], [1], [1], [0], [0], [0]])
    thresholds, tuned = tune_thresholds(probabilities, labels, min_positives=1)
    assert tuned[0] and 0.2 < thresholds[0] <= 0.3
    assert f1_at(probabilities, labels, thresholds) == 1.0
    assert f1_at(probabilities, labels, np.array([0.5])) == 0.0


def _noisy(seed, n=300, rates=(0.03, 0.1, 0.4, 0.7)):
    rng = np.random.default_rng(seed)
    labels = (rng.uniform(size=(n, len(rates))) < rates).astype(float)
    probabilities = np.clip(labels * 0.3 + rng.uniform(size=labels.shape) * 0.7, 0, 1).astype(np.float32)
    return probabilities, labels


def test_one_label_matches_brute_force():
    probabilities, labels = _noisy(0, rates=(0.3,))
    thresholds, tuned = tune_thresholds(probabilities, labels)
    grid = np.unique(probabilities)
    best = max(f1_at(probabilities, labels, np.array([t])) for t in grid)
    assert tuned.all() and f1_at(probabilities, labels, thresholds) == pytest.approx(best)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_no_single_threshold_change_improves_micro_f1(seed):
    probabilities, labels = _noisy(seed)
    thresholds, tuned = tune_thresholds(probabilities, labels)
    assert tuned.all()
    tuned_f1 = f1_at(probabilities, labels, thresholds)
    assert tuned_f1 >= f1_at(probabilities, labels, np.full(4, 0.5))
    for k in range(4):
        for t in np.append(np.unique(probabilities[:, k]), 1.01):
            moved = thresholds.copy()
            moved[k] = t
            assert f1_at(probabilities, labels, moved) <= tuned_f1 + 1e-12


def test_beats_thresholds_tuned_for_each_labels_own_f1():
    # Label 0: 50 easy positives. Label 1: one clear positive, then a block of 2 positives and
    # 3 negatives at one score. Including the block raises label 1's own F1 (0.5 -> 0.67) but
    # lowers micro-F1 (0.981 -> 0.972): the gate measures micro-F1, so the tuner leaves it out.
    n = 100
    probabilities = np.zeros((n, 2), np.float32)
    labels = np.zeros((n, 2))
    probabilities[:, 0] = np.where(np.arange(n) < 50, 0.9, 0.1)
    labels[:50, 0] = 1
    probabilities[:, 1] = 0.1
    probabilities[50, 1], labels[50, 1] = 0.8, 1
    probabilities[51:56, 1] = 0.6
    labels[51:53, 1] = 1
    thresholds, tuned = tune_thresholds(probabilities, labels, min_positives=1)
    per_label_best = np.array(
        [
            max(
                np.unique(probabilities[:, k]),
                key=lambda t: f1_at(probabilities[:, [k]], labels[:, [k]], np.array([t])),
            )
            for k in range(2)
        ]
    )
    assert per_label_best[1] == pytest.approx(0.6)
    assert 0.6 < thresholds[1] <= 0.8
    assert f1_at(probabilities, labels, thresholds) > f1_at(probabilities, labels, per_label_best)


def test_rare_and_absent_labels_keep_the_default():
    probabilities = np.array([[0.9, 0.2], [0.1, 0.3], [0.8, 0.6]])
    labels = np.array([[1, 0], [0, 0], [1, 0]])  # label 1 has no positives
    thresholds, tuned = tune_thresholds(probabilities, labels, min_positives=3, default=0.5)
    assert list(tuned) == [False, False]
    assert list(thresholds) == [0.5, 0.5]


def test_shape_mismatch_is_an_error():
    with pytest.raises(ValueError, match="same 2-D shape"):
        tune_thresholds(np.zeros((3, 2)), np.zeros((3, 3)))


def test_global_threshold_matches_brute_force():
    probabilities, labels = _noisy(4)
    best = tune_global_threshold(probabilities, labels)
    grid = np.append(np.unique(probabilities), 1.01)
    brute = max(f1_at(probabilities, labels, np.full(4, t)) for t in grid)
    assert f1_at(probabilities, labels, np.full(4, best)) == pytest.approx(brute)
    assert tune_global_threshold(probabilities, np.zeros_like(labels)) == 0.5  # nothing to tune on


def test_rare_labels_fall_back_to_the_given_default():
    probabilities, labels = _noisy(5, rates=(0.01, 0.5))
    labels[:, 0] = 0
    labels[:2, 0] = 1  # two positives: below min_positives
    thresholds, tuned = tune_thresholds(probabilities, labels, min_positives=5, default=0.37)
    assert list(tuned) == [False, True]
    assert thresholds[0] == np.float32(0.37)
