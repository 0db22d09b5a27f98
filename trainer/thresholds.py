"""Decision thresholds that maximise micro-F1 on the calibration split: one per label, or one for all.

The competition's best teams gained most from this step: a rare label's best threshold is
far below 0.5, a frequent one's often above it. ``trainer/rules.py`` decides, out of sample,
whether per-label thresholds, one global threshold or 0.5 serves.
"""

from typing import Tuple

import numpy as np

from trainer.settings import TrainerSettings

DEFAULT_THRESHOLD = 0.5


def f1_at(probabilities: np.ndarray, labels: np.ndarray, thresholds: np.ndarray) -> float:
    """Micro-averaged F1 of ``probabilities >= thresholds`` against multi-hot ``labels``."""
    decisions = probabilities >= thresholds
    truth = labels > 0.5
    tp = np.sum(decisions & truth)
    fp = np.sum(decisions & ~truth)
    fn = np.sum(~decisions & truth)
    return float(2 * tp / (2 * tp + fp + fn)) if tp + fp + fn else 0.0


def _best_cut(scores: np.ndarray, truth: np.ndarray, rest: Tuple[float, float, float]) -> Tuple[int, float]:
    """Best number of top-scored examples to call positive for one label, given the other labels' counts.

    Returns (i, micro-F1) where the top i examples (by ``scores``, sorted descending) are positive.
    """
    tp_rest, fp_rest, fn_rest = rest
    positives = truth.sum()
    tp = np.concatenate([[0], np.cumsum(truth)])
    predicted = np.arange(len(scores) + 1)
    denominator = 2 * (tp_rest + tp) + fp_rest + (predicted - tp) + fn_rest + (positives - tp)
    f1 = np.where(denominator > 0, 2 * (tp_rest + tp) / np.maximum(denominator, 1), 0.0)
    # A threshold cannot split equal scores: only cut where the next score is lower (or at the ends).
    distinct = np.concatenate([[True], scores[1:] < scores[:-1], [True]])
    f1 = np.where(distinct, f1, -1.0)
    best = int(np.argmax(f1))
    return best, float(f1[best])


def _threshold_for_cut(scores: np.ndarray, i: int) -> np.float32:
    """A float32 threshold that calls exactly the top i scores positive, midway where it can be."""
    if i == 0:
        return np.nextafter(np.float32(scores[0]), np.float32(np.inf))
    above = np.float32(scores[i - 1])
    below = np.float32(scores[i]) if i < len(scores) else np.float32(0.0)
    middle = np.float32((float(above) + float(below)) / 2)  # midway: robust to small score shifts
    return middle if below < middle <= above else above


def tune_global_threshold(
    probabilities: np.ndarray, labels: np.ndarray, default: float = DEFAULT_THRESHOLD
) -> np.float32:
    """The one threshold, shared by every label, that maximises micro-F1.

    Micro-F1 pools every (example, label) decision, so this is the best cut of all scores
    pooled: exact, in one sort. ``default`` when there is nothing to tune on.
    """
    scores = np.asarray(probabilities, dtype=np.float32).ravel()
    truth = (np.asarray(labels) > 0.5).ravel()
    if scores.shape != truth.shape:
        raise ValueError(f"probabilities {np.shape(probabilities)} and labels {np.shape(labels)} differ in shape")
    if not scores.size or not truth.any():
        return np.float32(default)
    order = np.argsort(-scores, kind="stable")
    i, _ = _best_cut(scores[order], truth[order], (0.0, 0.0, 0.0))
    return _threshold_for_cut(scores[order], i)


def tune_thresholds(
    probabilities: np.ndarray,
    labels: np.ndarray,
    min_positives: int = TrainerSettings.min_positives,
    default: float = DEFAULT_THRESHOLD,
    max_passes: int = 10,
) -> Tuple[np.ndarray, np.ndarray]:
    """Finds per-label thresholds that maximise micro-averaged F1.

    Each label's F1-optimal threshold on its own is not what the gate measures: rare labels
    would get low thresholds whose false positives cost micro-F1 more than they gain. So
    this is coordinate ascent on micro-F1: starting from ``default``, each label in turn gets
    the threshold that maximises micro-F1 with the others fixed, until nothing improves. The
    result is never worse than ``default`` everywhere on the data it was tuned on.

    Args:
      probabilities: [examples, labels] predicted probabilities.
      labels: [examples, labels] multi-hot truth.
      min_positives: labels with fewer positives than this keep ``default``: a threshold
        tuned on one or two examples would be noise.
      default: the starting and fallback threshold (``trainer/rules.py`` passes the global
        threshold tuned on the same data).
      max_passes: bound on the passes over all labels.

    Returns:
      (thresholds [labels] float32, tuned [labels] bool: True where the threshold differs from
      ``default``, False where the fallback was kept, for too few positives or because no other
      threshold did better).
    """
    probabilities = np.asarray(probabilities, dtype=np.float32)
    labels = np.asarray(labels) > 0.5
    if probabilities.shape != labels.shape or probabilities.ndim != 2:
        raise ValueError(f"probabilities {probabilities.shape} and labels {labels.shape} must be the same 2-D shape")
    num_labels = probabilities.shape[1]
    thresholds = np.full(num_labels, default, dtype=np.float32)
    eligible = labels.sum(axis=0) >= min_positives
    decisions = probabilities >= thresholds
    tp = (decisions & labels).sum(axis=0).astype(np.float64)
    fp = (decisions & ~labels).sum(axis=0).astype(np.float64)
    fn = (~decisions & labels).sum(axis=0).astype(np.float64)
    sorted_labels = {}
    for _ in range(max_passes):
        improved = False
        for k in np.flatnonzero(eligible):
            if k not in sorted_labels:
                order = np.argsort(-probabilities[:, k], kind="stable")
                sorted_labels[k] = (probabilities[order, k], labels[order, k])
            scores, truth = sorted_labels[k]
            rest = (tp.sum() - tp[k], fp.sum() - fp[k], fn.sum() - fn[k])
            current = 2 * tp.sum() / max(2 * tp.sum() + fp.sum() + fn.sum(), 1)
            i, f1 = _best_cut(scores, truth, rest)
            if f1 > current + 1e-12:
                thresholds[k] = _threshold_for_cut(scores, i)
                tp[k] = truth[:i].sum()
                fp[k] = i - tp[k]
                fn[k] = truth.sum() - tp[k]
                improved = True
        if not improved:
            break
    # Own threshold: moved off the fallback. An eligible label whose best cut is the fallback has none.
    return thresholds, thresholds != np.float32(default)
