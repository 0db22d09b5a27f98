"""Which given labels a model confidently contradicts: confident learning, one label at a time.

Multi-label confident learning (Northcutt et al., "Confident Learning", 2021; cleanlab's
``find_label_issues(multi_label=True)`` treats each label as its own yes/no problem the same
way). For label ``j`` and out-of-sample probabilities ``p``:

- the threshold of "has it" is the mean ``p`` over the images given ``j``; of "has it not", the
  mean ``1 - p`` over the images not given ``j`` (each class's own average confidence, so a label
  the model is shy about is not judged by 0.5);
- an image whose ``p`` reaches the first threshold is confidently "has it", one whose ``1 - p``
  reaches the second confidently "has it not" (both: the larger margin over its threshold wins);
- where the confident answer differs from the given one, the label is an issue: a **missing
  label** (not given, confidently present) or a **wrong label** (given, confidently absent).

Issues are ranked by the model's probability of the given answer (its self-confidence), the
least likely first. The probabilities must come from a model that did not train on these labels
(held-out images, or out-of-fold predictions): a model that memorised a wrong label agrees with it.
This module imports only numpy.
"""

import dataclasses
from typing import List, Sequence

import numpy as np

MISSING, WRONG = "missing label", "wrong label"
# A label needs some images on each side for its thresholds to mean anything.
MIN_PER_SIDE = 5


@dataclasses.dataclass(frozen=True)
class LabelIssue:
    """One (image, label) pair whose given answer the model confidently contradicts."""

    row: int  # the image's index in the arrays given
    label: int  # the column (label id - 1)
    given: bool  # whether the label was given
    probability: float  # the model's probability that the image has the label
    self_confidence: float  # the model's probability of the given answer: the rank key

    @property
    def action(self) -> str:
        return WRONG if self.given else MISSING


def find_label_issues(given, probabilities, min_per_side: int = MIN_PER_SIDE) -> List[LabelIssue]:
    """The label issues of a multi-label set, least self-confident first.

    Args:
      given: (images, labels) 0/1 array, the labels as given.
      probabilities: (images, labels) out-of-sample probabilities in [0, 1].
      min_per_side: labels with fewer given (or not given) images are not judged.

    Returns:
      The issues, sorted by self-confidence (ties: by row, then label).

    Raises:
      ValueError: the arrays differ in shape, are not 2-D, or hold values out of range or NaN.
    """
    given = np.asarray(given)
    probabilities = np.asarray(probabilities, np.float64)
    if given.ndim != 2 or given.shape != probabilities.shape:
        raise ValueError(
            f"labels and probabilities must be (images, labels) arrays of one shape, got {given.shape} "
            f"and {probabilities.shape}"
        )
    if not np.isin(given, (0, 1)).all():
        raise ValueError("given labels must be 0 or 1")
    bad = ~((probabilities >= 0) & (probabilities <= 1))  # NaN fails both comparisons
    if bad.any():
        row, column = (int(i) for i in np.argwhere(bad)[0])
        raise ValueError(
            f"probabilities must lie in [0, 1]: image {row}, label {column + 1} has {probabilities[row, column]}"
        )
    given = given.astype(bool)
    issues = []
    for label in range(given.shape[1]):
        has, p = given[:, label], probabilities[:, label]
        if has.sum() < min_per_side or (~has).sum() < min_per_side:
            continue
        for side, rows in ((True, np.flatnonzero(has)), (False, np.flatnonzero(~has))):
            # The side's share of confident contradictions, scaled to its images (the calibrated
            # confident joint), is how many of its answers are wrong; the most contradicted go.
            count = round(_contradicted_share(p, has, side) * len(rows))
            self_confidence = p[rows] if side else 1 - p[rows]
            chosen = rows[np.argsort(self_confidence, kind="stable")[:count]]
            # Never an issue where the model's own yes/no agrees with the given answer (cleanlab too).
            chosen = chosen[(p[chosen] >= 0.5) != side]
            for row in chosen:
                confidence = float(p[row] if side else 1 - p[row])
                issues.append(LabelIssue(int(row), label, side, float(p[row]), confidence))
    issues.sort(key=lambda issue: (issue.self_confidence, issue.row, issue.label))
    return issues


def _contradicted_share(p, has, side: bool) -> float:
    """Of the images on ``side`` (given or not given) that the model is confident about, the share
    it confidently puts on the other side."""
    margin_yes = p - p[has].mean()
    margin_no = (1 - p) - (1 - p[~has]).mean()
    confident_yes = (margin_yes >= 0) & ((margin_no < 0) | (margin_yes > margin_no))
    confident_no = (margin_no >= 0) & ~confident_yes
    on_side = has if side else ~has
    agree = (confident_yes if side else confident_no) & on_side
    contradict = (confident_no if side else confident_yes) & on_side
    confident = agree.sum() + contradict.sum()
    return float(contradict.sum() / confident) if confident else 0.0


def precision_recall(found: Sequence[LabelIssue], flipped) -> tuple:
    """Precision and recall of ``found`` against the (row, label column) pairs known to be flipped."""
    found_pairs = {(issue.row, issue.label) for issue in found}
    flipped = {(int(r), int(c)) for r, c in flipped}
    hits = len(found_pairs & flipped)
    precision = hits / len(found_pairs) if found_pairs else float("nan")
    recall = hits / len(flipped) if flipped else float("nan")
    return precision, recall


def flip_labels(given, share: float, seed: int = 0):
    """A copy of ``given`` with ``share`` of its images' labels flipped, one label per chosen image.

    Half the flips remove a given label (it becomes missing), half add one not given (it becomes
    wrong), where the image allows. Used to measure the audit on injected noise.

    Returns:
      (noisy copy, list of flipped (row, column) pairs).
    """
    given = np.asarray(given).astype(bool)
    rng = np.random.default_rng(seed)
    noisy = given.copy()
    rows = rng.choice(given.shape[0], size=int(round(share * given.shape[0])), replace=False)
    flipped = []
    for i, row in enumerate(rows):
        remove = i % 2 == 0
        candidates = np.flatnonzero(given[row] if remove else ~given[row])
        if not len(candidates):
            candidates = np.flatnonzero(~given[row] if remove else given[row])
        column = int(rng.choice(candidates))
        noisy[row, column] = ~noisy[row, column]
        flipped.append((int(row), column))
    return noisy.astype(np.int64), flipped
