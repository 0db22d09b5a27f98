"""Three decision rules, chosen on the calibration split and scored on the eval split.

Rules (``RULES``):
  per_label   a threshold per label, by coordinate ascent on micro-F1; a label with fewer
              than ``min_positives`` calibration positives gets the global threshold
  global      one threshold for every label, the best for micro-F1 on calibration
  fixed_0.5   0.5 for every label

Tuned on the calibration split, per-label thresholds always look best there: they were fitted
to it. So the rule that serves is chosen on k-fold cross-validated micro-F1 within the
calibration split (each fold scored by rules fitted on the other folds), then refitted on
the whole calibration split. The eval split only scores: nothing here reads it to choose.

The report in the exported model's ``assets.extra/thresholds.json`` (``decision_report``; the
contract every reader relies on: ``imat run``, ``imat report``, ``imat submission``; format 2):
  served_rule             the rule the exported model applies
  thresholds              its threshold per label (label id k at index k-1)
  per_label_thresholds    the per_label rule's thresholds
  tuned                   per label: true where its threshold differs from the global one
  global_threshold        the global rule's threshold
  min_positives, calibration_folds, calibration_examples, eval_examples
  micro_f1                {rule: {"calibration": k-fold micro-F1 (what chose the rule),
                                  "calibration_fitted": in-sample, "eval": out of sample},
                           "baseline": {"calibration": ..., "eval": ...}}
  baseline                {"rule": description, "label_ids": the ids it predicts for every image}
  training                (added by run_fn) {"steps", "batch_size", "train_examples", "epochs"}
"""

import dataclasses
from typing import Dict, List, Optional, Sequence

import numpy as np

from trainer import thresholds as thresholds_lib
from trainer.thresholds import DEFAULT_THRESHOLD
from imat_common.serving import THRESHOLDS_FILE

PER_LABEL, GLOBAL, FIXED = "per_label", "global", "fixed_0.5"
RULES = (PER_LABEL, GLOBAL, FIXED)
# On a tie, the simpler rule serves: it has less to get wrong on new data.
_SIMPLICITY = {FIXED: 2, GLOBAL: 1, PER_LABEL: 0}
REPORT_FORMAT = 2
BASELINE = "baseline"
BASELINE_RULE = "each task's most frequent train label, for every image"


@dataclasses.dataclass(frozen=True)
class FittedRules:
    """The rules' thresholds, fitted on one set of examples."""

    per_label: np.ndarray  # [labels] float32
    tuned: np.ndarray  # [labels] bool: False where the label fell back to the global threshold
    global_threshold: float

    def thresholds(self, rule: str) -> np.ndarray:
        """The threshold per label under ``rule``."""
        if rule == PER_LABEL:
            return self.per_label
        if rule in (GLOBAL, FIXED):
            value = self.global_threshold if rule == GLOBAL else DEFAULT_THRESHOLD
            return np.full(len(self.per_label), value, np.float32)
        raise ValueError(f"unknown decision rule {rule!r}; rules are {list(RULES)}")


def fit(probabilities: np.ndarray, labels: np.ndarray, min_positives: int) -> FittedRules:
    """Fits the global threshold, then per-label thresholds starting from it (rare labels keep it)."""
    global_threshold = thresholds_lib.tune_global_threshold(probabilities, labels)
    per_label, tuned = thresholds_lib.tune_thresholds(probabilities, labels, min_positives, default=global_threshold)
    return FittedRules(per_label, tuned, float(global_threshold))


def counts(decisions: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """[true positives, false positives, false negatives] of 0/1 decisions against multi-hot labels."""
    decided, truth = np.asarray(decisions) > 0.5, np.asarray(labels) > 0.5
    return np.array([np.sum(decided & truth), np.sum(decided & ~truth), np.sum(~decided & truth)], np.int64)


def micro_f1(count: np.ndarray) -> float:
    """Micro-F1 from ``counts``; 0 when there is nothing to count."""
    tp, fp, fn = (float(c) for c in count)
    return 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 0.0


def cross_validated_f1(
    probabilities: np.ndarray, labels: np.ndarray, min_positives: int, folds: int, seed: int = 0
) -> Dict[str, float]:
    """Each rule's micro-F1 over k folds, every fold decided by rules fitted on the other folds.

    The decisions of all folds are pooled before computing F1 (one micro-F1, as the gate
    measures). Folds are a fixed permutation of the examples (``seed``); with fewer than two
    examples there is nothing held out and every rule scores NaN.
    """
    n = len(labels)
    k = min(folds, n)
    if k < 2:
        return {rule: float("nan") for rule in RULES}
    fold_of = np.random.default_rng(seed).permutation(n) % k
    totals = {rule: np.zeros(3, np.int64) for rule in RULES}
    for fold in range(k):
        held_out = fold_of == fold
        fitted = fit(probabilities[~held_out], labels[~held_out], min_positives)
        for rule in RULES:
            decisions = probabilities[held_out] >= fitted.thresholds(rule)
            totals[rule] += counts(decisions, labels[held_out])
    return {rule: micro_f1(total) for rule, total in totals.items()}


def choose(scores: Dict[str, float]) -> str:
    """The rule with the highest score; the simpler one on a tie; ``global`` when none can be scored."""
    scored = {rule: value for rule, value in scores.items() if not np.isnan(value)}
    if not scored:
        return GLOBAL
    return max(scored, key=lambda rule: (round(scored[rule], 12), _SIMPLICITY[rule]))


def baseline_decisions(label_ids: Sequence[int], num_labels: int) -> np.ndarray:
    """The baseline's 0/1 decision per label, the same for every image."""
    row = np.zeros(num_labels, np.float32)
    row[[i - 1 for i in label_ids if 1 <= i <= num_labels]] = 1.0
    return row


def decision_report(
    calibration: tuple,
    evaluation: tuple,
    min_positives: int,
    folds: int,
    baseline_label_ids: Optional[Sequence[int]] = None,
) -> dict:
    """Fits the rules on calibration, chooses the served one there, scores all three on eval.

    Args:
      calibration: (probabilities, multi-hot labels) of the calibration split.
      evaluation: (probabilities, multi-hot labels) of the eval split; only scored.
      min_positives: calibration positives a label needs for a threshold of its own.
      folds: k of the cross-validation that chooses the rule.
      baseline_label_ids: the trivial baseline's labels (``trainer/trivial_baseline.py``).

    Returns:
      The ``thresholds.json`` report (see the module docstring).
    """
    cal_p, cal_l = (np.asarray(a, np.float32) for a in calibration)
    eval_p, eval_l = (np.asarray(a, np.float32) for a in evaluation)
    fitted = fit(cal_p, cal_l, min_positives)
    cv = cross_validated_f1(cal_p, cal_l, min_positives, folds)
    served = choose(cv)
    scores = {}
    for rule in RULES:
        t = fitted.thresholds(rule)
        scores[rule] = {
            "calibration": None if np.isnan(cv[rule]) else cv[rule],  # JSON has no NaN
            "calibration_fitted": micro_f1(counts(cal_p >= t, cal_l)),
            "eval": micro_f1(counts(eval_p >= t, eval_l)),
        }
    ids = sorted(int(i) for i in baseline_label_ids or [])
    row = baseline_decisions(ids, cal_p.shape[1])
    scores[BASELINE] = {
        "calibration": micro_f1(counts(np.broadcast_to(row, cal_l.shape), cal_l)),
        "eval": micro_f1(counts(np.broadcast_to(row, eval_l.shape), eval_l)),
    }
    return {
        "format": REPORT_FORMAT,
        "served_rule": served,
        "thresholds": fitted.thresholds(served).tolist(),
        "per_label_thresholds": fitted.per_label.tolist(),
        "tuned": fitted.tuned.tolist(),
        "global_threshold": fitted.global_threshold,
        "min_positives": int(min_positives),
        "calibration_folds": int(folds),
        "calibration_examples": int(len(cal_l)),
        "eval_examples": int(len(eval_l)),
        "micro_f1": scores,
        BASELINE: {"rule": BASELINE_RULE, "label_ids": ids},
    }


def format_report(report: dict) -> List[str]:
    """The three rules and the baseline, for logs, ``imat run``'s summary and ``imat report``."""
    if report.get("format") != REPORT_FORMAT:
        return [f"(this model's {THRESHOLDS_FILE} predates the calibration split: retrain to compare the rules)"]
    scores = report["micro_f1"]
    cv = lambda v: "    -" if v is None else f"{v:.3f}"
    lines = [
        f"micro-F1 on the eval split ({report['eval_examples']} images, never used for tuning); "
        f"rule chosen by {report['calibration_folds']}-fold micro-F1 on the calibration split "
        f"({report['calibration_examples']} images):",
        f"  {'decision rule':42s} {'eval':>6s} {'calibration':>11s}",
    ]
    names = {
        PER_LABEL: f"per-label thresholds ({sum(report['tuned'])} of {len(report['tuned'])} own)",
        GLOBAL: f"one global threshold ({report['global_threshold']:.3f})",
        FIXED: "0.5 for every label",
    }
    for rule in RULES:
        served = "  <- served" if rule == report["served_rule"] else ""
        lines.append(f"  {names[rule]:42s} {scores[rule]['eval']:6.3f} {cv(scores[rule]['calibration']):>11s}{served}")
    baseline = scores[BASELINE]
    lines.append(
        f"  {'baseline: most frequent train label per task':42s} {baseline['eval']:6.3f} "
        f"{baseline['calibration']:11.3f}"
    )
    training = report.get("training")
    if training and training.get("epochs"):  # written by run_fn (trainer/task.py)
        lines.append(
            f"trained {training['steps']} steps of {training['batch_size']}: {training['epochs']:.2f} epochs "
            f"of {training['train_examples']} train images"
        )
    ensemble = report.get("ensemble")
    if ensemble:  # written by the Ensembler (trainer/ensemble_export.py)
        lines.append(
            f"  an ensemble of {len(ensemble['members'])} ({ensemble['method']}); each member's own "
            f"served rule, eval / calibration:"
        )
        for i, (weight, own) in enumerate(zip(ensemble["weights"], ensemble["member_micro_f1"]), start=1):
            name = f"member {i}" + (f", weight {weight:.2f}" if ensemble["method"] == "weights" else "")
            lines.append(f"    {name:40s} {own['eval']:6.3f} {cv(own['calibration']):>11s}")
    return lines
