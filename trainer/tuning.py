"""The Tuner's ``tuner_fn``: trials that train the Trainer's own network and score it on calibration.

Each trial trains with ``trainer.task.train`` (the Trainer's plan, input and network) for
``tune_steps`` steps, with the trial's values of the searched settings
(``trainer/search_space.py``), then scores the calibration split: the objective is the
micro-F1 of the decision rule the Trainer would choose there, each fold decided by thresholds
fitted on the other folds (``rules.cross_validated_f1``), so a trial is not rewarded for
thresholds fitted on the images that score it. The eval split is never read: the Evaluator's
gate stays out of sample.

The first trial trains the settings as given (``DefaultFirst``): the best trial is at least
the run's own configuration, on this objective.

``custom_config`` is the Trainer's (``TrainerSettings`` by name, ``label_map``) plus
``TUNE_CONFIG``: the budget and the search (``pipeline.config.TuneSettings``). On Vertex AI the
Tuner component runs ``num_parallel_trials`` workers that share one oracle
(``tfx.extensions.google_cloud_ai_platform.Tuner``). A trial keeps no checkpoint: its score goes
to the oracle, and the Trainer retrains the best settings for its own steps.
"""

import logging
import math
import os
import time
from typing import Any, Dict, Mapping

import keras_tuner
import numpy as np
import tensorflow_transform as tft
import tf_keras as keras
from tfx import v1 as tfx

from imat_common import splits
from trainer import calibration, data, model as model_lib, multi_worker, rules, search_space, task

log = logging.getLogger(__name__)

TUNE_CONFIG = search_space.TUNE_CONFIG
OBJECTIVE = "calibration_micro_f1"


def hyperparameters(settings: model_lib.ModelConfig, names) -> keras_tuner.HyperParameters:
    """The search space for ``settings``: each searched setting, defaulting to its current value."""
    hp = keras_tuner.HyperParameters()
    searched, left_out = search_space.dimensions(settings, names)
    for name, why in left_out.items():
        log.info("not searched: %s (%s)", name, why)
    for dim in searched:
        default = getattr(settings, dim.name)
        if dim.kind == search_space.LOG:
            hp.Float(dim.name, dim.values[0], dim.values[1], sampling="log", default=default)
        elif dim.kind == search_space.LINEAR:
            hp.Float(dim.name, dim.values[0], dim.values[1], step=dim.values[2], default=default)
        elif isinstance(default, bool):  # a Choice of booleans would come back as 0 and 1
            hp.Boolean(dim.name, default=default)
        else:
            hp.Choice(dim.name, list(dim.values), default=default)
    return hp


class DefaultFirst:
    """An oracle mix-in: the first trial is every hyperparameter's default (the run's settings)."""

    def populate_space(self, trial_id):
        defaults = {hp.name: hp.default for hp in self.hyperparameters.space}
        tried = [t for t in self.trials.values() if t.trial_id != trial_id]
        if not any(t.hyperparameters.values == defaults for t in tried):
            return {"status": keras_tuner.engine.trial.TrialStatus.RUNNING, "values": defaults}
        return super().populate_space(trial_id)


class RandomSearchOracle(DefaultFirst, keras_tuner.oracles.RandomSearchOracle):
    pass


class BayesianOptimizationOracle(DefaultFirst, keras_tuner.oracles.BayesianOptimizationOracle):
    pass


def calibration_objective(probabilities: np.ndarray, labels: np.ndarray, settings) -> Dict[str, float]:
    """The trial's score: the chosen rule's cross-validated micro-F1 on calibration, and each rule's.

    A model whose probabilities are not finite (training diverged) scores 0.
    """
    if not np.all(np.isfinite(probabilities)):
        return {OBJECTIVE: 0.0}
    scores = rules.cross_validated_f1(probabilities, labels, settings.min_positives, settings.calibration_folds)
    best = rules.choose(scores)
    value = scores[best]
    result = {OBJECTIVE: 0.0 if math.isnan(value) else float(value)}
    result.update({f"cv_{rule}": float(score) for rule, score in scores.items() if not math.isnan(score)})
    return result


class CalibrationTuner(keras_tuner.engine.base_tuner.BaseTuner):
    """Trains the Trainer's network once per trial and scores it on calibration (no hypermodel)."""

    def __init__(self, oracle, settings, fn_args, steps: int, strategy, **kwargs):
        super().__init__(oracle=oracle, **kwargs)
        self._settings, self._fn_args, self._steps, self._strategy = settings, fn_args, steps, strategy
        # The Tuner's FnArgs carry the graph as transform_graph_path only (the Trainer's also as transform_output).
        self._transform = tft.TFTransformOutput(fn_args.transform_graph_path or fn_args.transform_output)

    def run_trial(self, trial, *args, **kwargs):
        settings = search_space.apply(self._settings, trial.hyperparameters.values, f"trial {trial.trial_id}")
        log.info("trial %s: %s", trial.trial_id, trial.hyperparameters.values)
        start = time.monotonic()
        keras.backend.clear_session()  # the last trial's graphs and weights go
        role = multi_worker.worker_role(self._strategy)
        model, _ = task.train(settings, self._fn_args.train_files, self._transform, self._steps, self._strategy, role)
        files = calibration.split_files(self._fn_args.eval_files, splits.CALIBRATION)
        dataset = data.input_fn(files, self._transform, settings.eval_batch_size, training=False)
        probabilities, labels = calibration.predict_eval(
            calibration.inference_fn(model), dataset, int(self._fn_args.eval_steps or 0)
        )
        result = calibration_objective(probabilities, labels, settings)
        log.info(
            "trial %s: %s %.4f on %d calibration images (%.0f s)",
            trial.trial_id,
            OBJECTIVE,
            result[OBJECTIVE],
            len(labels),
            time.monotonic() - start,
        )
        return result


def tune_config(custom_config: Mapping[str, Any], settings) -> Dict[str, Any]:
    """The budget and the search from ``custom_config``, checked as the pipeline checked them.

    Raises:
      ValueError: no ``TUNE_CONFIG`` entry, or a search ``search_space.check_budget`` refuses.
    """
    config = custom_config.get(TUNE_CONFIG)
    if not isinstance(config, Mapping):
        raise ValueError(f"the Tuner's custom_config has no {TUNE_CONFIG!r} entry (trials, steps, search, algorithm)")
    search_space.check_budget(config, settings)
    return dict(config)


def oracle_seed(seed: int) -> int:
    """The oracle's seed for the run's ``seed``: KerasTuner takes 0 as "no seed" and draws one at
    random, which made the default seed's searches differ from run to run."""
    return seed + 1


def tuner_fn(fn_args) -> tfx.components.TunerFnResult:
    """TFX Tuner entry point: the tuner and its ``search`` arguments (none: trials need no data arguments)."""
    config = fn_args.custom_config
    settings = model_lib.ModelConfig.from_custom_config(config)
    budget = tune_config(config, settings)
    # A trial trains for tune_steps whatever train_epochs says: the budget is the user's.
    settings = search_space.apply(settings, {"train_epochs": 0.0}, "the Tuner's settings")
    # Parallel trials each take one machine: a strategy that spans workers would join them.
    distribution = "default" if settings.distribution == "multi_worker" else settings.distribution
    strategy = task.distribution_strategy(distribution)
    oracle_class = BayesianOptimizationOracle if budget.get("algorithm") == "bayesian" else RandomSearchOracle
    oracle = oracle_class(
        objective=keras_tuner.Objective(OBJECTIVE, direction="max"),
        max_trials=int(budget["trials"]),
        hyperparameters=hyperparameters(settings, budget.get("search") or ()),
        allow_new_entries=False,
        tune_new_entries=False,
        seed=oracle_seed(int(budget.get("seed", settings.seed))),
    )
    # The executor's own temporary folder, one per worker; overwrite: a search is never resumed
    # from an earlier execution's trials, whose scores another input gave.
    tuner = CalibrationTuner(
        oracle,
        settings,
        fn_args,
        int(budget["steps"]),
        strategy,
        directory=os.fspath(fn_args.working_dir),
        project_name="imat_tuning_" + os.environ.get("KERASTUNER_TUNER_ID", "local"),
        overwrite=True,
    )
    return tfx.components.TunerFnResult(tuner=tuner, fit_kwargs={})
