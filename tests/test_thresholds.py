"""Per-label threshold tuning."""
import numpy as np
import pytest

from trainer.thresholds import f1_at, tune_thresholds


def test_finds_the_separating_threshold():
    # Label 0: positives score 0.3-0.4, negatives 0.05-0.2: 0.5 finds none, the best cut is between 0.2 and 0.3.
    probabilities = np.array([[0.4], [0.35], [0.3], [0.2], [0.1], [0.05]])
    labels = np.array([[1], [1], [1], [0], [0], [0]])
    thresholds, tuned = tune_thresholds(probabilities, labels, min_positives=1)
    assert tuned[0] and 0.2 < thresholds[0] <= 0.3
    assert f1_at(probabilities, labels, thresholds) == 1.0
    assert f1_at(probabilities, labels, np.array([0.5])) == 0.0


def test_matches_brute_force_on_noisy_scores():
    rng = np.random.default_rng(0)
    labels = (rng.uniform(size=(300, 3)) < [0.1, 0.4, 0.7]).astype(float)
    probabilities = np.clip(labels * 0.3 + rng.uniform(size=labels.shape) * 0.7, 0, 1)
    thresholds, tuned = tune_thresholds(probabilities, labels)
    assert tuned.all()
    for k in range(3):
        grid = np.unique(probabilities[:, k])
        best = max(f1_at(probabilities[:, [k]], labels[:, [k]], np.array([t])) for t in grid)
        assert f1_at(probabilities[:, [k]], labels[:, [k]], thresholds[[k]]) == pytest.approx(best)


def test_rare_and_absent_labels_keep_the_default():
    probabilities = np.array([[0.9, 0.2], [0.1, 0.3], [0.8, 0.6]])
    labels = np.array([[1, 0], [0, 0], [1, 0]])  # label 1 has no positives
    thresholds, tuned = tune_thresholds(probabilities, labels, min_positives=3, default=0.5)
    assert list(tuned) == [False, False]
    assert list(thresholds) == [0.5, 0.5]


def test_shape_mismatch_is_an_error():
    with pytest.raises(ValueError, match="same 2-D shape"):
        tune_thresholds(np.zeros((3, 2)), np.zeros((3, 3)))
