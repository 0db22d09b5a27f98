"""Ensembles: hill-climbed weights, the stacker and its out-of-fold tuning, and the exported combined model."""

import json
import os
import random

import numpy as np
import pytest
import tensorflow as tf
import tf_keras as keras

from cli import demo_data
from tests.helpers import jpeg, transform, write_examples
from trainer import ensemble, ensemble_export, exporter, model as model_lib, rules
from imat_common import features
from imat_common.serving import read_thresholds
from imat_common.serving import thresholds_path

NUM_LABELS, SIZE = 6, 32


def _members(seed=0, n=120):
    """Three members of different quality on the same labels: good, noisy, and useless."""
    rng = np.random.default_rng(seed)
    labels = (rng.random((n, NUM_LABELS)) < 0.3).astype(np.float32)
    good = np.clip(labels * 0.6 + rng.random(labels.shape) * 0.4, 0, 1)
    noisy = np.clip(labels * 0.3 + rng.random(labels.shape) * 0.7, 0, 1)
    useless = rng.random(labels.shape)
    return np.stack([noisy, useless, good]).astype(np.float32), labels


def test_hill_climbing_starts_from_the_best_member_and_never_scores_below_it():
    members, labels = _members()
    weights = ensemble.hill_climb(members, labels)
    assert weights.sum() == pytest.approx(1.0) and weights[2] == weights.max()
    singles = [ensemble.micro_f1_at_best_global(m, labels) for m in members]
    combined = ensemble.micro_f1_at_best_global(ensemble.weighted(members, weights), labels)
    assert combined >= max(singles)
    np.testing.assert_allclose(ensemble.weighted(members, [0, 0, 1]), members[2])


def test_an_untrained_stacker_is_the_members_mean_and_training_lowers_its_loss():
    members, labels = _members()
    untrained = ensemble.fit_stacker(members, labels, epochs=0)
    np.testing.assert_allclose(
        ensemble.stacker_predict(untrained, members), np.clip(members.mean(axis=0), 1e-6, 1 - 1e-6), atol=1e-5
    )
    trained = ensemble.fit_stacker(members, labels, epochs=200)

    def log_loss(p):
        p = np.clip(p, 1e-6, 1 - 1e-6)
        return -np.mean(labels * np.log(p) + (1 - labels) * np.log(1 - p))

    assert log_loss(ensemble.stacker_predict(trained, members)) < log_loss(members.mean(axis=0)) - 0.01


def test_out_of_fold_predictions_come_from_stackers_that_never_saw_the_example():
    members, labels = _members(n=40)
    folds, seed = 4, 3
    oof = ensemble.out_of_fold(members, labels, folds, seed, epochs=30)
    fold = np.random.default_rng(seed).permutation(40) % folds
    held = fold == 1
    by_hand = ensemble.stacker_predict(
        ensemble.fit_stacker(members[:, ~held], labels[~held], epochs=30, seed=seed), members[:, held]
    )
    np.testing.assert_allclose(oof[held], by_hand, atol=1e-6)
    # Changing the held-out examples' own labels leaves their predictions unchanged.
    flipped = labels.copy()
    flipped[held] = 1 - flipped[held]
    np.testing.assert_allclose(
        ensemble.out_of_fold(members, flipped, folds, seed, epochs=30)[held], oof[held], atol=1e-6
    )


def test_hill_climbed_weights_are_fitted_inside_the_folds():
    members, labels = _members(n=40)
    folds, seed = 4, 3
    oof = ensemble.out_of_fold(members, labels, folds, seed, ensemble.WEIGHTS)
    held = np.random.default_rng(seed).permutation(40) % folds == 2
    by_hand = ensemble.weighted(members[:, held], ensemble.hill_climb(members[:, ~held], labels[~held]))
    np.testing.assert_allclose(oof[held], by_hand, atol=1e-6)
    flipped = labels.copy()
    flipped[held] = 1 - flipped[held]  # the held-out examples' own labels do not reach their predictions
    np.testing.assert_allclose(ensemble.out_of_fold(members, flipped, folds, seed, ensemble.WEIGHTS)[held], oof[held])
    # The report's calibration figures are those out-of-fold predictions' (not the weights' in-sample fit).
    combination = ensemble.fit_combination(ensemble.WEIGHTS, (members, labels), (members, labels), 3, folds, seed=seed)
    fitted = rules.fit(oof, labels, 3)
    served = combination.report["served_rule"]
    assert combination.report["micro_f1"][served]["calibration_fitted"] == pytest.approx(
        rules.micro_f1(rules.counts(oof >= fitted.thresholds(served), labels))
    )


def test_fit_combination_tunes_on_calibration_and_refuses_bad_input():
    members, labels = _members(n=160)
    cal, ev = (members[:, :100], labels[:100]), (members[:, 100:], labels[100:])
    for method in ensemble.METHODS:
        combination = ensemble.fit_combination(method, cal, ev, min_positives=3, folds=4)
        report = combination.report
        assert report["calibration_examples"] == 100 and report["eval_examples"] == 60
        decided = combination.apply(ev[0]) >= np.asarray(report["thresholds"], np.float32)
        assert report["micro_f1"][report["served_rule"]]["eval"] == pytest.approx(
            rules.micro_f1(rules.counts(decided, ev[1]))
        )
    with pytest.raises(ValueError, match="unknown ensemble method 'vote'"):
        ensemble.fit_combination("vote", cal, ev, 3, 4)
    with pytest.raises(ValueError, match=r"\[members, examples, labels\]"):
        ensemble.fit_combination("weights", cal, (members[:2, 100:], labels[100:]), 3, 4)


@pytest.fixture(scope="module")
def members_and_examples(tmp_path_factory):
    """Two exported members (untrained MobileNetV3Small, different seeds) and ExampleGen-like splits."""
    work = tmp_path_factory.mktemp("ensemble")
    rng = random.Random(5)
    rows = []
    for _ in range(24):
        im, _ = demo_data.render(rng, 64)
        rows.append({features.IMAGE_KEY: [jpeg(im)], features.LABELS_KEY: rng.sample(range(1, NUM_LABELS + 1), 2)})
    _, tft_output = transform(rows, str(work / "transform"), NUM_LABELS, SIZE)
    examples = work / "examples"
    for split, part in (("calibration", rows[:14]), ("eval", rows[14:])):
        os.makedirs(examples / f"Split-{split}")
        write_examples(part, str(examples / f"Split-{split}" / "data.gz"))
    dirs = []
    for seed in (0, 1):
        keras.utils.set_random_seed(seed)
        model = model_lib.build_model(model_lib.ModelConfig(NUM_LABELS, SIZE, "none", backbone="mobilenetv3small"))
        member = str(work / f"member{seed}")
        exporter.export(model, tft_output, np.full(NUM_LABELS, 0.5, np.float32), member, list("abcdef"))
        os.makedirs(os.path.dirname(thresholds_path(member)))
        report = rules.decision_report(
            (np.full((2, NUM_LABELS), 0.5), np.eye(2, NUM_LABELS)),
            (np.full((2, NUM_LABELS), 0.5), np.eye(2, NUM_LABELS)),
            1,
            2,
            [1, 4],
        )
        with open(thresholds_path(member), "w") as f:
            json.dump(report, f)
        dirs.append(member)
    return dirs, str(examples), rows


@pytest.mark.slow
@pytest.mark.parametrize("method", ensemble.METHODS)
def test_the_exported_ensemble_serves_the_combination_computed_outside_it(members_and_examples, tmp_path, method):
    dirs, examples, rows = members_and_examples
    out = str(tmp_path / "ensemble")
    report = ensemble_export.combine_and_export(
        dirs, examples, out, method, min_positives=1, folds=3, batch_size=64, seed=0
    )
    assert report["ensemble"]["method"] == method and len(report["ensemble"]["weights"]) == 2
    assert report["baseline"]["label_ids"] == [1, 4]  # the members' trivial baseline, carried over
    assert read_thresholds(out) == report
    printed = rules.format_report(report)
    assert f"  an ensemble of 2 ({method}); each member's own served rule, eval / calibration:" in printed
    assert sum(line.startswith("    member ") for line in printed) == 2
    assert any(", weight " in line for line in printed) == (method == ensemble.WEIGHTS)

    members = [tf.saved_model.load(d) for d in dirs]
    eval_files = ensemble_export.examples_files(examples, "eval")
    probabilities, labels = ensemble_export.score(members, eval_files, 64)
    combination = ensemble.Combination(method, report["ensemble"]["weights"])
    if method == ensemble.STACKER:  # refit exactly as the export did: same data, same seed
        cal = ensemble_export.score(members, ensemble_export.examples_files(examples, "calibration"), 64)
        combination.stacker = ensemble.fit_stacker(*cal, seed=0)
    expected = combination.apply(probabilities)

    served = tf.saved_model.load(out)
    batch = tf.constant([r.numpy() for r in tf.data.TFRecordDataset(eval_files, compression_type="GZIP")])
    outputs = served.signatures["serving_default"](examples=batch)
    np.testing.assert_allclose(outputs["probabilities"].numpy(), expected, atol=1e-5)
    np.testing.assert_array_equal(
        outputs["decisions"].numpy(), (expected >= np.asarray(report["thresholds"], np.float32)).astype(np.float32)
    )
    images = tf.constant([row[features.IMAGE_KEY][0] for row in rows[14:]])
    np.testing.assert_allclose(
        served.signatures["predict_images"](images=images)["probabilities"].numpy(), expected, atol=1e-5
    )
    np.testing.assert_allclose(
        served.signatures["transform_features"](examples=batch)["labels_multi_hot"].numpy(), labels
    )
    np.testing.assert_allclose(
        served.signatures["embed_images"](images=images)["embedding"].numpy(),
        members[0].signatures["embed_images"](images=images)["embedding"].numpy(),
        atol=1e-6,
    )
    names = outputs["label_names"].numpy()
    assert set(names.ravel()) <= {c.encode() for c in "abcdef"} | {b""}
    assert (names != b"").sum() == outputs["decisions"].numpy().sum()
