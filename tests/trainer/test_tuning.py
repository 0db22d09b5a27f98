"""The Tuner's ``tuner_fn``: its trials train what they say, score on calibration only, start from the run's settings.

A few steps of MobileNetV3Small at 32 px on demo garments, with a real Transform graph and TFRecords.
"""

import dataclasses
import json
import os

import numpy as np
import pytest
from tfx.components.trainer.fn_args_utils import FnArgs

from cli import demo_data
from imat_common.settings import SettingsError
from tests.helpers import demo_splits
from trainer import backbones, rules, search_space, task, tuning
from trainer.settings import TrainerSettings

NUM_LABELS = max(label.label_id for label in demo_data.label_table())
SIZE = 32
BASE = {
    "num_labels": NUM_LABELS,
    "image_size": SIZE,
    "weights": "none",
    "backbone": "mobilenetv3small",
    "head_steps_fraction": 0.0,
    "fine_tune_from": "",
    "fine_tune_learning_rate": 1e-3,
    "dropout": 0.2,
    "batch_size": 4,
    "eval_batch_size": 8,
    "shuffle_buffer": 32,
    "min_positives": 1,
    "calibration_folds": 2,
    "label_map": "",
}


def test_the_search_space_names_the_real_backbones():
    assert search_space.SPACE["backbone"].values == tuple(backbones.BACKBONES)


def test_every_searchable_setting_is_a_trainer_setting_and_holds_its_default():
    defaults = TrainerSettings(num_labels=3)
    dims, left_out = search_space.dimensions(defaults, list(search_space.SPACE))
    assert {d.name for d in dims} == set(search_space.SPACE) and not left_out
    for dim in dims:
        value = getattr(defaults, dim.name)
        if dim.kind == search_space.CHOICE:
            assert value in dim.values, dim
        else:
            assert dim.values[0] <= value <= dim.values[1], dim


def test_a_range_widens_to_hold_the_runs_own_value():
    settings = TrainerSettings(num_labels=3, fine_tune_learning_rate=0.05, head_units=64)
    dims = {d.name: d for d in search_space.dimensions(settings, ["fine_tune_learning_rate", "head_units"])[0]}
    assert dims["fine_tune_learning_rate"].values == (1e-5, 0.05)
    assert dims["head_units"].values == (64, 0, 256, 1024)


def test_an_unused_learning_rate_is_not_searched():
    scratch = TrainerSettings(num_labels=3, head_steps_fraction=0.0)
    dims, left_out = search_space.dimensions(scratch, [])
    assert "head_learning_rate" in left_out and "head_learning_rate" not in {d.name for d in dims}
    # searched together with the fraction, it can matter again
    dims, left_out = search_space.dimensions(scratch, ["head_learning_rate", "head_steps_fraction"])
    assert not left_out and len(dims) == 2


@pytest.mark.parametrize(
    "names, message",
    [(["learning_rate"], "did you mean"), (["dropout", "dropout"], "twice"), (["num_labels"], "cannot be searched")],
)
def test_a_bad_search_is_refused_by_name(names, message):
    with pytest.raises(SettingsError, match=message):
        search_space.dimensions(TrainerSettings(num_labels=3), names)


def test_the_same_seed_gives_the_same_search_seed_zero_included(tmp_path):
    settings = TrainerSettings(num_labels=3)
    names = ["dropout", "pooling", "head_units", "loss"]

    def values(seed):
        oracle = tuning.RandomSearchOracle(
            objective=tuning.keras_tuner.Objective(tuning.OBJECTIVE, "max"),
            max_trials=4,
            hyperparameters=tuning.hyperparameters(settings, names),
            seed=tuning.oracle_seed(seed),
        )
        oracle._set_project_dir(str(tmp_path), f"seed{seed}_{len(os.listdir(tmp_path))}")
        trials = []
        for _ in range(4):
            trial = oracle.create_trial("tuner0")
            trials.append(dict(trial.hyperparameters.values))
            oracle.update_trial(trial.trial_id, {tuning.OBJECTIVE: 0.5})
            oracle.end_trial(trial)
        assert trials[0] == {"dropout": 0.3, "pooling": "avg", "head_units": 0, "loss": "bce"}  # as given
        return trials[1:]

    assert values(0) == values(0) and values(1) == values(1)
    assert values(0) != values(1)


def test_a_boolean_setting_is_searched_as_a_boolean():
    hp = tuning.hyperparameters(TrainerSettings(num_labels=3), ["augment", "head_units"])
    assert hp.values == {"augment": False, "head_units": 0}
    assert [type(v) for v in hp.space[0].values] == [bool, bool]


def test_tuned_values_are_typed_and_unknown_ones_refused():
    settings = task.tuned_settings(TrainerSettings(num_labels=3), {"dropout": 0.1, "head_units": 256, "augment": True})
    assert (settings.dropout, settings.head_units, settings.augment) == (0.1, 256, True)
    with pytest.raises(SettingsError, match="not Trainer settings"):
        task.tuned_settings(TrainerSettings(num_labels=3), {"lerning_rate": 0.1})


def test_the_objective_is_out_of_fold_and_a_diverged_model_scores_zero():
    rng = np.random.default_rng(0)
    labels = (rng.random((60, 5)) < 0.3).astype(np.float32)
    probabilities = np.clip(labels * 0.6 + rng.random((60, 5)) * 0.4, 0, 1).astype(np.float32)
    settings = TrainerSettings(num_labels=5, min_positives=1, calibration_folds=3)
    result = tuning.calibration_objective(probabilities, labels, settings)
    scores = rules.cross_validated_f1(probabilities, labels, 1, 3)
    assert result[tuning.OBJECTIVE] == pytest.approx(scores[rules.choose(scores)])
    probabilities[3, 2] = np.nan
    assert tuning.calibration_objective(probabilities, labels, settings)[tuning.OBJECTIVE] == 0.0


@pytest.mark.parametrize(
    "tune, message",
    [
        (None, "no 'tune' entry"),
        ({"trials": 0, "steps": 5}, "tune_trials"),
        ({"trials": 2, "steps": 5, "algorithm": "grid"}, "grid"),
    ],
)
def test_a_bad_budget_is_refused(tune, message):
    config = {} if tune is None else {tuning.TUNE_CONFIG: tune}
    with pytest.raises(ValueError, match=message):
        tuning.tune_config(config, TrainerSettings(num_labels=3))


@pytest.fixture(scope="module")
def splits(tmp_path_factory):
    root = tmp_path_factory.mktemp("examples")
    train, evals = demo_splits(
        str(root / "examples"), str(root / "transform"), {"train": 24, "calibration": 12, "eval": 8}, SIZE
    )
    return train, evals, str(root / "transform")


@pytest.mark.slow
def test_trials_train_their_values_first_the_runs_own_and_never_read_eval(monkeypatch, tmp_path, splits):
    train_files, eval_files, transform_dir = splits
    trained, read = [], []
    train = task.train

    def recording_train(settings, *args, **kwargs):
        trained.append((settings, args[2]))
        return train(settings, *args, **kwargs)

    input_fn = tuning.data.input_fn

    def recording_input_fn(files, *args, **kwargs):
        read.extend(files)
        return input_fn(files, *args, **kwargs)

    monkeypatch.setattr(task, "train", recording_train)
    monkeypatch.setattr(tuning.data, "input_fn", recording_input_fn)
    search = ["fine_tune_learning_rate", "dropout", "pooling"]
    config = {**BASE, tuning.TUNE_CONFIG: {"trials": 3, "steps": 3, "search": search, "algorithm": "random"}}
    fn_args = FnArgs(
        train_files=train_files,
        eval_files=eval_files,
        transform_graph_path=transform_dir,  # as the Tuner's executor gives it: not transform_output
        working_dir=str(tmp_path / "tuner"),
        train_steps=100,  # the Trainer's count: trials take tune steps instead
        eval_steps=0,
        custom_config=config,
    )
    result = tuning.tuner_fn(fn_args)
    result.tuner.search(**result.fit_kwargs)

    trials = sorted(result.tuner.oracle.trials.values(), key=lambda t: t.trial_id)
    assert len(trials) == 3 and all(t.status == "COMPLETED" for t in trials)
    assert [steps for _, steps in trained] == [3, 3, 3]
    first = trials[0].hyperparameters.values
    assert first == {"fine_tune_learning_rate": 1e-3, "dropout": 0.2, "pooling": "avg"}
    for trial, (settings, _) in zip(trials, trained):
        values = trial.hyperparameters.values
        assert (settings.fine_tune_learning_rate, settings.dropout, settings.pooling) == (
            pytest.approx(values["fine_tune_learning_rate"]),
            pytest.approx(values["dropout"]),
            values["pooling"],
        )
        # everything not searched is the run's own
        assert dataclasses.replace(settings, **{n: getattr(trained[0][0], n) for n in search}) == trained[0][0]
        assert 0.0 <= trial.score <= 1.0
    assert len({json.dumps(t.hyperparameters.values, sort_keys=True) for t in trials}) == 3
    assert sum("Split-calibration" in f for f in read) == 3  # scored once per trial
    assert not [f for f in read if "Split-eval" in f]
    best = result.tuner.get_best_hyperparameters()[0].values
    assert best == max(trials, key=lambda t: t.score).hyperparameters.values
