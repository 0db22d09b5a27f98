"""Trainer and Evaluator that take per-run values as execution parameters of their own.

Kubeflow Pipelines / Vertex AI can only change a top-level execution parameter at submit time:
a ``RuntimeParameter`` inside ``TrainArgs`` cannot be built (the proto refuses it), and one
inside ``custom_config`` or an ``EvalConfig`` is compiled into the JSON as the parameter object
itself, silently, never as a pipeline parameter. So these components declare the values users
change per run (the settings declared ``runtime=True``: training steps, the two learning rates,
the micro-F1 bound, the margin over the trivial baseline) as parameters of their own, and their
executors write them into ``TrainArgs``, ``custom_config`` and the ``EvalConfig`` before the stock
executor runs. Locally they are plain numbers.

The Evaluator's executor then decides the blessing on all of the gate's conditions
(``components/quality_gate.py``): TFMA's bound and comparison with the last blessed model, and the
trivial baseline plus ``baseline_margin``, which TFMA cannot express.
"""

import dataclasses
import json
import math
from typing import Any, Dict, List, Mapping, Optional, Union

import tensorflow_model_analysis as tfma
from tfx import types
from tfx.components.evaluator import executor as evaluator_executor
from tfx.components.trainer import executor as trainer_executor
from tfx.dsl.components.base import base_beam_component, base_component, executor_spec
from tfx.extensions.google_cloud_ai_platform.trainer import executor as vertex_trainer_executor
from tfx.orchestration import data_types
from tfx.proto import trainer_pb2
from tfx.types import artifact_utils, standard_artifacts, standard_component_specs as specs
from tfx.types.component_spec import ExecutionParameter
from tfx.utils import json_utils, proto_utils

from components import quality_gate
from imat_common.settings import is_runtime, kind_of, name_of
from pipeline.config import GateSettings
from trainer.settings import TrainerSettings

TRAIN_STEPS = "train_steps"  # also TrainArgs.num_steps
MICRO_F1_LOWER_BOUND = "micro_f1_lower_bound"
BASELINE_MARGIN = "baseline_margin"
MICRO_F1 = quality_gate.MICRO_F1  # the gate metric's name in the EvalConfig


def _runtime(section: type) -> Dict[str, type]:
    return {name_of(f): kind_of(f) for f in dataclasses.fields(section) if is_runtime(f)}


# The runtime settings each component takes as parameters: name -> type.
TRAINER_PARAMETERS = _runtime(TrainerSettings)
EVALUATOR_PARAMETERS = _runtime(GateSettings)

Number = Union[int, float, data_types.RuntimeParameter]


def _float(value: Optional[Number]) -> Optional[Union[float, data_types.RuntimeParameter]]:
    """A float setting's value as a float (``with_settings(baseline_margin=-1)`` gives an int)."""
    return float(value) if isinstance(value, (int, float)) else value


def apply_trainer_parameters(exec_properties: Mapping[str, Any]) -> Dict[str, Any]:
    """The Trainer's execution properties with the run parameters written where run_fn reads them.

    Each replaces the ``custom_config`` key of its name; ``train_steps`` also replaces
    ``TrainArgs.num_steps``, which ``run_fn`` reads.
    """
    result = dict(exec_properties)
    if result.get(TRAIN_STEPS) is not None:
        train_args = proto_utils.json_to_proto(result.get(specs.TRAIN_ARGS_KEY) or "{}", trainer_pb2.TrainArgs())
        train_args.num_steps = int(result[TRAIN_STEPS])
        result[specs.TRAIN_ARGS_KEY] = proto_utils.proto_to_json(train_args)
    custom_config = json_utils.loads(result.get(specs.CUSTOM_CONFIG_KEY) or "null") or {}
    for key, kind in TRAINER_PARAMETERS.items():
        if result.get(key) is not None:
            custom_config[key] = kind(result[key])
    result[specs.CUSTOM_CONFIG_KEY] = json_utils.dumps(custom_config)
    return result


def _gate_metrics(eval_config: tfma.EvalConfig) -> List[tfma.MetricConfig]:
    """The EvalConfig's ``micro_f1`` metrics with a value threshold: the gate's."""
    return [
        metric
        for spec in eval_config.metrics_specs
        for metric in spec.metrics
        if metric.config
        and json.loads(metric.config).get("name") == MICRO_F1
        and metric.threshold.HasField("value_threshold")
    ]


def gate_lower_bound(exec_properties: Mapping[str, Any]) -> float:
    """The micro-F1 lower bound in the Evaluator's EvalConfig; -inf where it has no bound."""
    eval_config = proto_utils.json_to_proto(exec_properties[specs.EVAL_CONFIG_KEY], tfma.EvalConfig())
    bounds = [
        metric.threshold.value_threshold.lower_bound.value
        for metric in _gate_metrics(eval_config)
        if metric.threshold.value_threshold.HasField("lower_bound")
    ]
    return max(bounds) if bounds else -math.inf


def baseline_margin(exec_properties: Mapping[str, Any]) -> float:
    """The Evaluator's ``baseline_margin``; the setting's default where the component was built without it."""
    value = exec_properties.get(BASELINE_MARGIN)
    if value is None:
        return next(f.default for f in dataclasses.fields(GateSettings) if name_of(f) == BASELINE_MARGIN)
    return float(value)


def apply_evaluator_parameters(exec_properties: Mapping[str, Any]) -> Dict[str, Any]:
    """The Evaluator's execution properties with ``micro_f1_lower_bound`` set on the micro-F1 gate.

    ``baseline_margin`` is left as it is: the executor applies it after TFMA (``EvaluatorExecutor``).

    Raises:
      ValueError: the EvalConfig has no metric named ``micro_f1`` with a value threshold.
    """
    result = dict(exec_properties)
    bound = result.get(MICRO_F1_LOWER_BOUND)
    if bound is None:
        return result
    eval_config = proto_utils.json_to_proto(result[specs.EVAL_CONFIG_KEY], tfma.EvalConfig())
    gates = _gate_metrics(eval_config)
    if not gates:
        raise ValueError(
            f"{MICRO_F1_LOWER_BOUND} given, but the EvalConfig has no '{MICRO_F1}' metric "
            "with a value threshold to apply it to"
        )
    for metric in gates:
        metric.threshold.value_threshold.lower_bound.value = float(bound)
    result[specs.EVAL_CONFIG_KEY] = proto_utils.proto_to_json(eval_config)
    return result


class TrainerExecutor(trainer_executor.GenericExecutor):
    """The stock trainer executor, after applying the run parameters."""

    def Do(self, input_dict, output_dict, exec_properties):
        return super().Do(input_dict, output_dict, apply_trainer_parameters(exec_properties))


class VertexTrainerExecutor(vertex_trainer_executor.GenericExecutor):
    """Launches the training job on Vertex AI Training with the run parameters applied.

    The job runs the stock trainer executor on the already-rewritten properties.
    """

    def Do(self, input_dict, output_dict, exec_properties):
        return super().Do(input_dict, output_dict, apply_trainer_parameters(exec_properties))


class EvaluatorExecutor(evaluator_executor.Executor):
    """The stock evaluator executor, after setting the gate's lower bound; then the gate's last word.

    TFMA blesses on the bound and the last blessed model; ``quality_gate.gate_blessing`` then
    also requires the trivial baseline plus ``baseline_margin``, and rewrites the same blessing,
    the one the Pusher and the baseline resolvers read.
    """

    def Do(self, input_dict, output_dict, exec_properties):
        properties = apply_evaluator_parameters(exec_properties)
        super().Do(input_dict, output_dict, properties)
        blessing = artifact_utils.get_single_instance(output_dict[specs.BLESSING_KEY])
        if not blessing.has_custom_property(quality_gate.BLESSED):
            return  # TFMA validated nothing (an EvalConfig without thresholds): nothing to gate
        quality_gate.gate_blessing(
            model=artifact_utils.get_single_instance(input_dict[specs.MODEL_KEY]),
            evaluation_uri=artifact_utils.get_single_uri(output_dict[specs.EVALUATION_KEY]),
            blessing=blessing,
            lower_bound=gate_lower_bound(properties),
            margin=baseline_margin(properties),
        )


class TrainerSpec(specs.TrainerSpec):
    """The stock Trainer's spec and the run parameters."""

    PARAMETERS = {
        **specs.TrainerSpec.PARAMETERS,
        **{name: ExecutionParameter(type=kind, optional=True) for name, kind in TRAINER_PARAMETERS.items()},
    }


class EvaluatorSpec(specs.EvaluatorSpec):
    """The stock Evaluator's spec and the gate's runtime settings (the bound, the margin)."""

    PARAMETERS = {
        **specs.EvaluatorSpec.PARAMETERS,
        **{name: ExecutionParameter(type=kind, optional=True) for name, kind in EVALUATOR_PARAMETERS.items()},
    }


class Trainer(base_component.BaseComponent):
    """TFX's Trainer with a ``run_fn`` by import path and the runtime Trainer settings as parameters.

    ``vertex=True`` runs it as ``tfx.extensions.google_cloud_ai_platform.Trainer`` does: the
    component launches a Vertex AI custom job described by ``custom_config`` and waits for it.
    """

    SPEC_CLASS = TrainerSpec
    EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(TrainerExecutor)

    def __init__(
        self,
        examples: types.BaseChannel,
        transform_graph: types.BaseChannel,
        schema: types.BaseChannel,
        run_fn: str,
        train_args: trainer_pb2.TrainArgs,
        eval_args: trainer_pb2.EvalArgs,
        custom_config: Dict[str, Any],
        run_values: Optional[Mapping[str, Number]] = None,
        vertex: bool = False,
        hyperparameters: Optional[types.BaseChannel] = None,
    ):
        """``run_values``: a value (or ``RuntimeParameter``) per ``TRAINER_PARAMETERS`` name;
        ``hyperparameters``: the Tuner's best, which ``run_fn`` applies over the settings it searched.

        Raises:
          ValueError: ``run_values`` names a setting that is not a runtime Trainer setting.
        """
        unknown = set(run_values or {}) - set(TRAINER_PARAMETERS)
        if unknown:
            raise ValueError(f"not runtime Trainer settings: {sorted(unknown)}; known: {sorted(TRAINER_PARAMETERS)}")
        spec = TrainerSpec(
            examples=examples,
            transform_graph=transform_graph,
            schema=schema,
            hyperparameters=hyperparameters,
            run_fn=run_fn,
            train_args=train_args,
            eval_args=eval_args,
            custom_config=json_utils.dumps(custom_config),
            model=types.Channel(type=standard_artifacts.Model),
            model_run=types.Channel(type=standard_artifacts.ModelRun),
            **dict(run_values or {}),
        )
        super().__init__(
            spec=spec, custom_executor_spec=(executor_spec.ExecutorClassSpec(VertexTrainerExecutor) if vertex else None)
        )


class Evaluator(base_beam_component.BaseBeamComponent):
    """TFX's Evaluator (TFMA) with the gate's settings as parameters, and the trivial baseline's condition.

    ``micro_f1_lower_bound`` and ``baseline_margin``: a number or a ``RuntimeParameter``; None
    leaves the EvalConfig's bound and takes ``GateSettings``' margin. ``example_splits``: the
    splits it scores (None: TFX's default, ``eval``).
    """

    SPEC_CLASS = EvaluatorSpec
    EXECUTOR_SPEC = executor_spec.BeamExecutorSpec(EvaluatorExecutor)

    def __init__(
        self,
        examples: types.BaseChannel,
        model: types.BaseChannel,
        baseline_model: types.BaseChannel,
        eval_config: tfma.EvalConfig,
        micro_f1_lower_bound: Optional[Number] = None,
        example_splits: Optional[List[str]] = None,
        baseline_margin: Optional[Number] = None,
    ):
        spec = EvaluatorSpec(
            examples=examples,
            model=model,
            baseline_model=baseline_model,
            eval_config=eval_config,
            fairness_indicator_thresholds=json_utils.dumps(None),
            example_splits=json_utils.dumps(example_splits),
            evaluation=types.Channel(type=standard_artifacts.ModelEvaluation),
            blessing=types.Channel(type=standard_artifacts.ModelBlessing),
            micro_f1_lower_bound=_float(micro_f1_lower_bound),
            baseline_margin=_float(baseline_margin),
        )
        super().__init__(spec=spec)
