"""The three decision rules: fitted on calibration, chosen by k-fold there, scored on eval; the baseline."""

import json

import numpy as np
import pytest

from trainer import rules, trivial_baseline
from imat_common.features import Label, LabelMap
from trainer.thresholds import f1_at


def _scores(rng, n, rates, shift):
    """Multi-hot labels and scores where label k's positives score ``shift[k]`` higher on average."""
    labels = (rng.uniform(size=(n, len(rates))) < rates).astype(np.float32)
    probabilities = np.clip(rng.uniform(size=labels.shape) * 0.6 + labels * np.asarray(shift), 0, 1)
    return probabilities.astype(np.float32), labels


def test_only_labels_whose_threshold_moved_count_as_tuned():
    # Label 1 is separated by the global threshold already, so coordinate ascent leaves it there.
    rng = np.random.default_rng(0)
    separable = rng.uniform(size=200) < 0.3
    noisy = rng.uniform(size=200) < 0.3
    probabilities = np.stack([np.where(separable, 0.9, 0.1), rng.uniform(size=200) * 0.6 + noisy * 0.3], 1)
    fitted = rules.fit(probabilities.astype(np.float32), np.stack([separable, noisy], 1).astype(np.float32), 5)
    assert fitted.per_label[0] == np.float32(fitted.global_threshold)
    np.testing.assert_array_equal(fitted.tuned, fitted.per_label != np.float32(fitted.global_threshold))
    assert not fitted.tuned[0]


def test_fit_gives_rare_labels_the_global_threshold():
    rng = np.random.default_rng(0)
    probabilities, labels = _scores(rng, 400, (0.4, 0.3, 0.005), (0.3, 0.3, 0.3))
    fitted = rules.fit(probabilities, labels, min_positives=5)
    # Tuned: a threshold of its own. Label 2 stays at the global threshold, as its best cut.
    assert list(fitted.tuned) == [True, False, False]
    assert fitted.per_label[2] == np.float32(fitted.global_threshold) != 0.5
    assert (fitted.thresholds(rules.GLOBAL) == np.float32(fitted.global_threshold)).all()
    assert (fitted.thresholds(rules.FIXED) == 0.5).all()
    with pytest.raises(ValueError, match="unknown decision rule"):
        fitted.thresholds("median")


def test_cross_validation_prefers_per_label_when_labels_need_different_thresholds():
    # Label 0's positives score far higher than label 1's: one threshold cannot serve both.
    rng = np.random.default_rng(1)
    probabilities, labels = _scores(rng, 600, (0.3, 0.3), (0.0, 0.0))
    probabilities[:, 0] = np.where(labels[:, 0] > 0, rng.uniform(0.7, 1.0, 600), rng.uniform(0.0, 0.75, 600))
    probabilities[:, 1] = np.where(labels[:, 1] > 0, rng.uniform(0.2, 0.4, 600), rng.uniform(0.0, 0.25, 600))
    scores = rules.cross_validated_f1(probabilities, labels, min_positives=5, folds=5)
    assert scores[rules.PER_LABEL] > scores[rules.GLOBAL] > scores[rules.FIXED]
    assert rules.choose(scores) == rules.PER_LABEL


def test_cross_validation_prefers_one_threshold_when_per_label_ones_fit_noise():
    # 60 labels, 5-8 positives each, all with the same score distribution: per-label
    # thresholds chase noise, one shared threshold generalises.
    rng = np.random.default_rng(2)
    probabilities, labels = _scores(rng, 120, (0.05,) * 60, (0.15,) * 60)
    scores = rules.cross_validated_f1(probabilities, labels, min_positives=3, folds=5)
    assert scores[rules.GLOBAL] > scores[rules.PER_LABEL]
    assert rules.choose(scores) == rules.GLOBAL
    # In sample the per-label rule looks better: why the choice is made out of sample.
    fitted = rules.fit(probabilities, labels, min_positives=3)
    assert f1_at(probabilities, labels, fitted.per_label) > f1_at(
        probabilities, labels, fitted.thresholds(rules.GLOBAL)
    )


def test_ties_go_to_the_simpler_rule_and_unscorable_to_global():
    assert rules.choose({rules.PER_LABEL: 0.5, rules.GLOBAL: 0.5, rules.FIXED: 0.5}) == rules.FIXED
    assert rules.choose({rules.PER_LABEL: 0.6, rules.GLOBAL: 0.6, rules.FIXED: 0.5}) == rules.GLOBAL
    assert rules.choose({rule: float("nan") for rule in rules.RULES}) == rules.GLOBAL
    single = rules.cross_validated_f1(np.array([[0.3]]), np.array([[1.0]]), 1, 5)
    assert all(np.isnan(v) for v in single.values())


def test_report_tunes_on_calibration_only_and_scores_eval():
    rng = np.random.default_rng(3)
    calibration = _scores(rng, 300, (0.3, 0.1, 0.02), (0.3, 0.2, 0.3))
    evaluation = _scores(rng, 200, (0.3, 0.1, 0.02), (0.3, 0.2, 0.3))
    report = rules.decision_report(calibration, evaluation, min_positives=5, folds=5, baseline_label_ids=[1])
    # Nothing about the choice or the thresholds depends on the eval split.
    other_eval = _scores(np.random.default_rng(9), 50, (0.5, 0.5, 0.5), (0.0, 0.0, 0.0))
    again = rules.decision_report(calibration, other_eval, min_positives=5, folds=5, baseline_label_ids=[1])
    for key in ("served_rule", "thresholds", "per_label_thresholds", "global_threshold", "tuned"):
        assert report[key] == again[key], key
    assert again["micro_f1"][rules.PER_LABEL]["calibration"] == report["micro_f1"][rules.PER_LABEL]["calibration"]
    assert again["micro_f1"][rules.PER_LABEL]["eval"] != report["micro_f1"][rules.PER_LABEL]["eval"]

    served = report["served_rule"]
    assert (
        report["thresholds"] == report["per_label_thresholds"]
        if served == rules.PER_LABEL
        else len(set(report["thresholds"])) == 1
    )
    assert report["micro_f1"][served]["calibration"] == max(report["micro_f1"][r]["calibration"] for r in rules.RULES)
    eval_p, eval_l = evaluation
    for rule in rules.RULES:
        thresholds = {
            rules.PER_LABEL: report["per_label_thresholds"],
            rules.GLOBAL: [report["global_threshold"]] * 3,
            rules.FIXED: [0.5] * 3,
        }[rule]
        assert report["micro_f1"][rule]["eval"] == pytest.approx(f1_at(eval_p, eval_l, np.asarray(thresholds)))
    baseline = np.zeros_like(eval_l)
    baseline[:, 0] = 1
    assert report["micro_f1"]["baseline"]["eval"] == pytest.approx(f1_at(baseline, eval_l, np.full(3, 0.5)))
    assert report["baseline"]["label_ids"] == [1]
    assert report["calibration_examples"] == 300 and report["eval_examples"] == 200
    json.loads(json.dumps(report, allow_nan=False))  # the contract is plain JSON


def test_the_report_prints_three_rules_the_served_one_and_the_baseline():
    rng = np.random.default_rng(4)
    report = rules.decision_report(
        _scores(rng, 200, (0.3, 0.2), (0.3, 0.3)),
        _scores(rng, 100, (0.3, 0.2), (0.3, 0.3)),
        min_positives=5,
        folds=4,
        baseline_label_ids=[1],
    )
    lines = rules.format_report(report)
    assert "100 images, never used for tuning" in lines[0] and "4-fold" in lines[0] and "(200 images)" in lines[0]
    served = [line for line in lines if line.endswith("<- served")]
    assert (
        len(served) == 1
        and {rules.PER_LABEL: "per-label", rules.GLOBAL: "global", rules.FIXED: "0.5"}[report["served_rule"]]
        in served[0]
    )
    assert f"{report['micro_f1'][rules.FIXED]['eval']:6.3f}" in next(line for line in lines if "0.5 for every" in line)
    assert lines[-1].lstrip().startswith("baseline: most frequent train label per task")
    assert rules.format_report({"thresholds": [0.5]})[0].startswith("(this model's thresholds.json predates")
    report["training"] = {"steps": 600, "batch_size": 32, "train_examples": 1577, "epochs": 600 * 32 / 1577}
    assert rules.format_report(report)[-1] == "trained 600 steps of 32: 12.18 epochs of 1577 train images"


LABEL_MAP = LabelMap(
    (
        Label(1, 1, "dress", "category"),
        Label(2, 1, "shirt", "category"),
        Label(3, 2, "red", "color"),
        Label(4, 2, "blue", "color"),
        Label(5, 3, "long", "sleeve"),
    )
)


def test_baseline_takes_each_tasks_most_frequent_train_label():
    frequencies = trivial_baseline.parse_frequencies(["40 2", "12 1", "7 4", "7 3", "", "3 99"], source="vocab")
    assert frequencies == {2: 40, 1: 12, 4: 7, 3: 7, 99: 3}
    # A tie goes to the lower id; id 99 is not in the label map; the sleeve task has no train label.
    assert trivial_baseline.most_frequent_per_task(frequencies, LABEL_MAP) == [2, 3]
    assert trivial_baseline.most_frequent_per_task(frequencies, None) == [2]
    with pytest.raises(ValueError, match="vocab, line 2: expected 'count label_id'"):
        trivial_baseline.parse_frequencies(["3 1", "three 2"], source="vocab")
