"""Combining several trained models' probabilities: weights found by hill climbing, or a stacker.

Both are fitted on the calibration split only. Weights: greedy forward selection with
replacement (Caruana et al. 2004, the method of the 2018 challenge's seed reports), on
micro-F1 at the best global threshold. Stacker: a small dense network from every member's
probabilities for every label to each label's probability, started at the members' mean
(its last layer starts at zero, so it learns corrections to the mean). For either method the
decision thresholds are tuned on k-fold out-of-fold predictions (each fold combined by weights
or a stacker fitted on the other folds), so no threshold is fitted to predictions the
combination made on its own fitting examples; the exported combination is fitted on all of
calibration.

Everything here is NumPy, except the stacker's fit (TensorFlow, eager); ``stacker_predict``
is what the exported model computes (``trainer/ensemble_export.py``).
"""

import dataclasses
from typing import List, Sequence

import numpy as np

from trainer import rules, thresholds

WEIGHTS, STACKER = "weights", "stacker"
METHODS = (WEIGHTS, STACKER)
_EPSILON = 1e-6


def micro_f1_at_best_global(probabilities: np.ndarray, labels: np.ndarray) -> float:
    """Micro-F1 of ``probabilities`` at the one threshold that maximises it."""
    return thresholds.f1_at(probabilities, labels, thresholds.tune_global_threshold(probabilities, labels))


def weighted(members: np.ndarray, weights: Sequence[float]) -> np.ndarray:
    """The weighted mean of member probabilities [members, examples, labels] -> [examples, labels]."""
    return np.tensordot(np.asarray(weights, np.float32), np.asarray(members, np.float32), axes=1)


def hill_climb(members: np.ndarray, labels: np.ndarray, iterations: int = 25) -> np.ndarray:
    """Member weights (summing to 1) that maximise micro-F1 at the best global threshold.

    Starts from the best single member, then adds, with replacement, the member whose
    addition raises the score most, until no addition raises it or after ``iterations``.

    Args:
      members: probabilities [members, examples, labels].
      labels: multi-hot [examples, labels].
      iterations: most additions after the first member.
    """
    members = np.asarray(members, np.float32)
    singles = [micro_f1_at_best_global(m, labels) for m in members]
    counts = np.zeros(len(members))
    counts[int(np.argmax(singles))] = 1
    total, best = members[int(np.argmax(singles))].copy(), max(singles)
    for _ in range(iterations):
        n = counts.sum()
        scores = [micro_f1_at_best_global((total + m) / (n + 1), labels) for m in members]
        if max(scores) <= best:
            break
        chosen = int(np.argmax(scores))
        counts[chosen] += 1
        total += members[chosen]
        best = max(scores)
    return counts / counts.sum()


@dataclasses.dataclass
class Stacker:
    """The stacker's parameters; see ``stacker_predict``."""

    hidden_kernel: np.ndarray  # [members * labels, hidden]
    hidden_bias: np.ndarray  # [hidden]
    output_kernel: np.ndarray  # [hidden, labels]
    output_bias: np.ndarray  # [labels]


def _logit(p):
    p = np.clip(p, _EPSILON, 1 - _EPSILON)
    return np.log(p) - np.log1p(-p)


def stacker_inputs(members: np.ndarray) -> np.ndarray:
    """[members, examples, labels] -> [examples, members * labels], member-major."""
    members = np.asarray(members, np.float32)
    return np.transpose(members, (1, 0, 2)).reshape(members.shape[1], -1)


def stacker_predict(stacker: Stacker, members: np.ndarray) -> np.ndarray:
    """sigmoid(logit(mean of members) + relu(x W1 + b1) W2 + b2), x every member's probabilities."""
    members = np.asarray(members, np.float32)
    hidden = np.maximum(stacker_inputs(members) @ stacker.hidden_kernel + stacker.hidden_bias, 0)
    z = _logit(members.mean(axis=0)) + hidden @ stacker.output_kernel + stacker.output_bias
    return (1 / (1 + np.exp(-z))).astype(np.float32)


def fit_stacker(
    members: np.ndarray,
    labels: np.ndarray,
    hidden: int = 64,
    epochs: int = 300,
    learning_rate: float = 3e-3,
    l2: float = 1e-3,
    seed: int = 0,
) -> Stacker:
    """Fits the stacker on (member probabilities, labels) with full-batch Adam and an L2 penalty."""
    import tensorflow as tf

    members = np.asarray(members, np.float32)
    x = tf.constant(stacker_inputs(members))
    base = tf.constant(_logit(members.mean(axis=0)), tf.float32)
    y = tf.constant(np.asarray(labels, np.float32))
    rng = np.random.default_rng(seed)
    w1 = tf.Variable(rng.normal(0, np.sqrt(2 / x.shape[1]), (x.shape[1], hidden)).astype(np.float32))
    b1 = tf.Variable(np.zeros(hidden, np.float32))
    w2 = tf.Variable(np.zeros((hidden, members.shape[2]), np.float32))  # starts at the mean
    b2 = tf.Variable(np.zeros(members.shape[2], np.float32))
    optimizer = tf.optimizers.Adam(learning_rate)

    @tf.function
    def step():
        with tf.GradientTape() as tape:
            z = base + tf.nn.relu(x @ w1 + b1) @ w2 + b2
            loss = tf.reduce_mean(tf.nn.sigmoid_cross_entropy_with_logits(y, z)) + l2 * (
                tf.reduce_sum(w1**2) + tf.reduce_sum(w2**2)
            )
        variables = [w1, b1, w2, b2]
        optimizer.apply_gradients(zip(tape.gradient(loss, variables), variables))

    for _ in range(epochs):
        step()
    return Stacker(w1.numpy(), b1.numpy(), w2.numpy(), b2.numpy())


def out_of_fold(
    members: np.ndarray, labels: np.ndarray, folds: int, seed: int = 0, method: str = STACKER, **fit_args
) -> np.ndarray:
    """Each example's combined probabilities from a combination fitted on the other folds.

    Args:
      members, labels: as in ``fit_combination``'s calibration.
      folds: k; the folds are a fixed permutation of the examples (``seed``).
      method: ``STACKER`` (``fit_args`` go to ``fit_stacker``) or ``WEIGHTS`` (hill climbing).
    """
    members, labels = np.asarray(members, np.float32), np.asarray(labels, np.float32)
    n = members.shape[1]
    fold = np.random.default_rng(seed).permutation(n) % max(2, min(folds, n))
    predictions = np.zeros(members.shape[1:], np.float32)
    for k in np.unique(fold):
        held = fold == k
        if method == STACKER:
            stacker = fit_stacker(members[:, ~held], labels[~held], seed=seed, **fit_args)
            predictions[held] = stacker_predict(stacker, members[:, held])
        elif method == WEIGHTS:
            predictions[held] = weighted(members[:, held], hill_climb(members[:, ~held], labels[~held]))
        else:
            raise ValueError(f"unknown ensemble method {method!r}: use {' or '.join(METHODS)}")
    return predictions


@dataclasses.dataclass
class Combination:
    """A fitted combination: what the exported ensemble applies, and its report."""

    method: str
    weights: List[float]
    stacker: Stacker = None  # only for STACKER
    report: dict = dataclasses.field(default_factory=dict)  # the ``thresholds.json`` report

    def apply(self, members: np.ndarray) -> np.ndarray:
        """Combined probabilities [examples, labels] of member probabilities [members, examples, labels]."""
        if self.method == STACKER:
            return stacker_predict(self.stacker, members)
        return weighted(members, self.weights)


def fit_combination(
    method: str,
    calibration: tuple,
    evaluation: tuple,
    min_positives: int,
    folds: int,
    baseline_label_ids: Sequence[int] = (),
    seed: int = 0,
) -> Combination:
    """Fits ``method`` on calibration, tunes the decision rule, scores eval.

    Args:
      method: "weights" or "stacker".
      calibration: (member probabilities [members, examples, labels], multi-hot labels).
      evaluation: the same for the eval split; only scored.
      min_positives, folds: as in ``rules.decision_report``.
      baseline_label_ids: the trivial baseline's labels.
      seed: the stacker's initialisation and fold assignment.

    Raises:
      ValueError: an unknown method, or members that disagree in shape.
    """
    cal_members, cal_labels = np.asarray(calibration[0], np.float32), np.asarray(calibration[1], np.float32)
    eval_members, eval_labels = np.asarray(evaluation[0], np.float32), np.asarray(evaluation[1], np.float32)
    if (
        cal_members.ndim != 3
        or cal_members.shape[0] != eval_members.shape[0]
        or cal_members.shape[2] != eval_members.shape[2]
    ):
        raise ValueError(
            f"member probabilities must be [members, examples, labels] alike on both splits, "
            f"got {cal_members.shape} and {eval_members.shape}"
        )
    if method == WEIGHTS:
        combination = Combination(WEIGHTS, hill_climb(cal_members, cal_labels).tolist())
    elif method == STACKER:
        combination = Combination(
            STACKER, [1 / len(cal_members)] * len(cal_members), fit_stacker(cal_members, cal_labels, seed=seed)
        )
    else:
        raise ValueError(f"unknown ensemble method {method!r}: use {' or '.join(METHODS)}")
    # The thresholds and the rule are fitted on predictions of combinations that never saw the
    # example: weights hill-climbed on the same examples would make the calibration scores in sample.
    tuned_on = out_of_fold(cal_members, cal_labels, folds, seed, method)
    combination.report = rules.decision_report(
        (tuned_on, cal_labels), (combination.apply(eval_members), eval_labels), min_positives, folds, baseline_label_ids
    )
    return combination
