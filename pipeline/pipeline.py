"""``create_pipeline(config)``: the one definition of the DAG, for every runner.

ImportExampleGen (train, calibration, eval) -> StatisticsGen -> ExampleValidator against the
imported schema (ImportSchemaGen) -> ValidationGate (stops here on bad data) -> Transform ->
[Tuner, with ``tune``: trials scored on calibration] -> Trainer (thresholds on calibration) ->
Evaluator on eval (baseline: the latest blessed model; blessed above the bound, the trivial
baseline plus a margin and the last blessed model: ``components/quality_gate.py``) -> Pusher ->
SimilarityIndexer. With ``config.ensemble``: one
Trainer per member, and the Ensembler's combined model in the Trainer's place. SchemaGen's
inferred schema is kept to compare against.
The preprocessing and run functions are referenced by import path, not module file: TFX
would otherwise hash (and on Vertex upload) every file beside the module.
What a runner may change besides roots and Beam args is in ``Deployment``.
"""

import dataclasses
from typing import Any, Dict, Mapping, Optional, Tuple

import tensorflow_model_analysis as tfma
from tfx import v1 as tfx
from tfx.dsl.components.base import executor_spec
from tfx.dsl.input_resolution.strategies.latest_blessed_model_strategy import LatestBlessedModelStrategy

from imat_common import serving, splits
from imat_common.serving import DECISIONS, PROBABILITIES
from components import atomic_pusher, baseline, quality_gate
from components.calibration_split import calibration_example_gen
from components.ensembler import Ensembler, member_key
from components.similar.component import SimilarityIndexer
from components.validation_gate import ValidationGate
from imat_common.settings import SettingsError
from pipeline import run_parameters
from pipeline.config import Member, PipelineConfig
from pipeline.label_metrics import LabelSliceMetrics
from pipeline.per_label_metrics import PerLabelAUC, PerLabelMetrics
from trainer.preprocessing import LABELS_FEATURE
from trainer import search_space
from trainer.settings import TrainerSettings

PREPROCESSING_FN = "trainer.preprocessing.preprocessing_fn"
RUN_FN = "trainer.task.run_fn"
TUNER_FN = "trainer.tuning.tuner_fn"
MICRO_F1 = run_parameters.MICRO_F1
AUC_NUM_THRESHOLDS = 200


@dataclasses.dataclass(frozen=True)
class Deployment:
    """What an orchestrator changes in the DAG. The defaults are the local runner's.

    Attributes:
      runtime_parameters: make the runtime settings (``setting(runtime=True)``) pipeline
        parameters, defaulting to the config's values (Kubeflow / Vertex); otherwise they are the config's plain values.
      candidate_aware_baseline: resolve the baseline with ``components.baseline`` (never the
        candidate itself). The KFP v2 compiler only knows TFX's ``LatestBlessedModelStrategy``.
      vertex_training: ``custom_config`` entries that run the Trainer as a Vertex AI Training
        job (``tfx.extensions.google_cloud_ai_platform`` keys); None trains in the component.
      vertex_serving: ``custom_config`` of ``google_cloud_ai_platform.Pusher`` (a Vertex AI
        endpoint); None pushes to ``config.locations.serving_dir``.
      vertex_tuning: ``custom_config`` entries that run the Tuner's trials as a Vertex AI
        Training job (``google_cloud_ai_platform.Tuner``), ``tune_parallel_trials`` machines
        at once; None tunes in the component, one trial at a time.
      scoring_beam_args: Beam args added to the components that score every image (the
        Evaluator, the SimilarityIndexer): Dataflow workers with a GPU.
    """

    runtime_parameters: bool = False
    candidate_aware_baseline: bool = True
    vertex_training: Optional[Mapping[str, Any]] = None
    vertex_serving: Optional[Mapping[str, Any]] = None
    vertex_tuning: Optional[Mapping[str, Any]] = None
    scoring_beam_args: Tuple[str, ...] = ()


def runtime_parameter_defaults(config: PipelineConfig) -> Dict[str, Any]:
    """Each runtime parameter's value in ``config``, which is its default when compiled."""
    return config.runtime_values()


def _run_values(config: PipelineConfig, deployment: Deployment) -> Dict[str, Any]:
    values = runtime_parameter_defaults(config)
    if not deployment.runtime_parameters:
        return values
    return {
        name: tfx.dsl.experimental.RuntimeParameter(name=name, ptype=type(value), default=value)
        for name, value in values.items()
    }


def eval_config(config: PipelineConfig) -> tfma.EvalConfig:
    """TFMA: a micro-F1 gate on the thresholded decisions, and per-label metrics with no gate.

    TFMA's gate is the bound and the last blessed model; the Evaluator's executor adds the
    trivial baseline's condition (``components/quality_gate.py``), which needs the candidate's
    ``thresholds.json`` and so cannot be a threshold here.

    One slice, the whole eval split. What per-label slices (``feature_keys=["labels"]``) gave, the
    example count and micro precision, recall and F1 of the images carrying label k, comes from
    ``pipeline.label_metrics.LabelSliceMetrics`` under ``classId:k``: TFMA 0.47 computes every
    metric in every slice, so per-label slices re-computed all labels' metrics for each label
    (examples x (1 + labels per example) x labels; measured: docs/benchmarks.md, "Evaluator").
    Each label's precision, recall, F1 and AUC come from ``pipeline.per_label_metrics``, one
    combiner for all labels, under the keys TFMA's ``binarize`` wrote.

    The model's ``transform_features`` signature turns the raw label-id list into the dense
    multi-hot vector TFMA needs (a variable-length list gives silently wrong metrics).
    """
    return tfma.EvalConfig(
        model_specs=[
            tfma.ModelSpec(
                signature_name=serving.EVALUATE,
                preprocessing_function_names=[serving.TRANSFORM_FEATURES],
                label_keys={DECISIONS: LABELS_FEATURE, PROBABILITIES: LABELS_FEATURE},
            )
        ],
        metrics_specs=[
            # The gate, alone in its spec: a threshold next to binarize would gate every label.
            tfma.MetricsSpec(
                output_names=[DECISIONS],
                metrics=[
                    tfma.MetricConfig(
                        class_name="F1Score",
                        config=f'{{"name": "{MICRO_F1}"}}',
                        threshold=tfma.MetricThreshold(
                            value_threshold=tfma.GenericValueThreshold(
                                lower_bound={"value": config.gate.micro_f1_lower_bound}
                            ),
                            change_threshold=tfma.GenericChangeThreshold(
                                direction=tfma.MetricDirection.HIGHER_IS_BETTER,
                                absolute={"value": -quality_gate.CHANGE_TOLERANCE},
                            ),
                        ),
                    )
                ],
                aggregate=tfma.AggregationOptions(micro_average=True),
            ),
            # Per label: precision, recall and F1 at each label's tuned threshold (decisions are 0/1,
            # so 0.5 splits them), and AUC at AUC_NUM_THRESHOLDS (TFMA's default 10,000 made AUC most
            # of the Evaluator's time for little precision; reported, never gated). One vectorised
            # combiner per output instead of TFMA's binarize, which ran one per label (measured:
            # docs/benchmarks.md, "Evaluator").
            tfma.MetricsSpec(
                output_names=[PROBABILITIES],
                metrics=[
                    tfma.MetricConfig(
                        class_name=PerLabelAUC.__name__,
                        module=PerLabelAUC.__module__,
                        config=f'{{"num_thresholds": {AUC_NUM_THRESHOLDS}}}',
                    )
                ],
            ),
            # The split's size, and per label k the images carrying k: count (k's support) and
            # micro precision / recall / F1 of their decisions, linear in examples x labels.
            tfma.MetricsSpec(
                output_names=[DECISIONS],
                metrics=[
                    tfma.MetricConfig(class_name="ExampleCount"),
                    tfma.MetricConfig(class_name=PerLabelMetrics.__name__, module=PerLabelMetrics.__module__),
                    tfma.MetricConfig(class_name=LabelSliceMetrics.__name__, module=LabelSliceMetrics.__module__),
                ],
            ),
        ],
        slicing_specs=[tfma.SlicingSpec()],
        # Default metrics would re-compute the model's compiled tf_keras metrics: off. The
        # intervals (jackknife, 20 partitions of the eval split) give the gate's comparison with
        # the last blessed model a paired interval; TFMA gates on the point values.
        options=tfma.Options(
            include_default_metrics={"value": False},
            compute_confidence_intervals={"value": config.gate.confidence_intervals},
        ),
    )


def _baseline_resolver(trainer, deployment: Deployment) -> tfx.dsl.Resolver:
    if deployment.candidate_aware_baseline:
        # Not the Trainer's own model: an unchanged rerun then reuses the Evaluator and Pusher.
        return tfx.dsl.Resolver(
            strategy_class=baseline.LatestBlessedOtherModelStrategy,
            **{
                baseline.MODEL_KEY: tfx.dsl.Channel(type=tfx.types.standard_artifacts.Model),
                baseline.BLESSING_KEY: tfx.dsl.Channel(type=tfx.types.standard_artifacts.ModelBlessing),
                baseline.CANDIDATE_KEY: trainer.outputs["model"],
            },
        ).with_id("latest_blessed_model_resolver")
    return tfx.dsl.Resolver(
        strategy_class=LatestBlessedModelStrategy,
        **{
            baseline.MODEL_KEY: tfx.dsl.Channel(type=tfx.types.standard_artifacts.Model),
            baseline.BLESSING_KEY: tfx.dsl.Channel(type=tfx.types.standard_artifacts.ModelBlessing),
        },
    ).with_id("latest_blessed_model_resolver")


def _pusher(config: PipelineConfig, deployment: Deployment, trainer, evaluator):
    if deployment.vertex_serving is not None:
        return tfx.extensions.google_cloud_ai_platform.Pusher(
            model=trainer.outputs["model"],
            model_blessing=evaluator.outputs["blessing"],
            custom_config=dict(deployment.vertex_serving),
        )
    return tfx.components.Pusher(
        model=trainer.outputs["model"],
        model_blessing=evaluator.outputs["blessing"],
        push_destination=tfx.proto.PushDestination(
            filesystem=tfx.proto.PushDestination.Filesystem(base_directory=config.locations.serving_dir)
        ),
        # A local version appears whole or not at all (a killed run, a full disk); gs:// as TFX does it.
        custom_executor_spec=executor_spec.ExecutorClassSpec(atomic_pusher.Executor),
    )


def data_components(config: PipelineConfig) -> Dict[str, Any]:
    """The DAG up to Transform, by role, in run order: the part that validates the data.

    Raises:
      ValueError: ``config.locations.schema_path`` is empty (the pipeline imports a curated schema).
    """
    locations, data = config.locations, config.data
    if data.train_spans < 0 or (data.span >= 0 and not data.train_spans):
        raise SettingsError(
            f"train_spans {data.train_spans}, span {data.span}: train_spans is 0 (no spans) or the number of "
            "spans to train on, and span needs train_spans >= 1"
        )
    if not locations.schema_path:
        raise ValueError(
            "PipelineConfig.locations.schema_path is empty: the pipeline imports a curated schema; "
            "write one with `imat schema --label_map CSV --output schema.pbtxt`"
        )
    example_gen = calibration_example_gen(
        locations.data_root,
        f"{data.train_split}/*.tfrecord.gz",
        f"{data.eval_split}/*.tfrecord.gz",
        data.calibration_percent,
        train_spans=data.train_spans,
        span=data.span,
        label_map=locations.label_map,
    )
    schema_importer = tfx.components.ImportSchemaGen(schema_file=locations.schema_path)
    # With the schema, label ids are counted as categories: the drift comparator needs the counts.
    statistics_gen = tfx.components.StatisticsGen(
        examples=example_gen.outputs["examples"], schema=schema_importer.outputs["schema"]
    )
    # SchemaGen's guess from this run's statistics: a statistic to compare with the contract
    # (`imat report` prints the differences), read by nothing downstream.
    schema_gen = tfx.components.SchemaGen(statistics=statistics_gen.outputs["statistics"], infer_feature_shape=True)
    example_validator = tfx.components.ExampleValidator(
        statistics=statistics_gen.outputs["statistics"],
        schema=schema_importer.outputs["schema"],
        # The drift splits are slim on purpose: they hold only what drift is measured on.
        exclude_splits=list(splits.DRIFT_SPLITS) if data.train_spans else None,
    )
    gate = ValidationGate(
        statistics=statistics_gen.outputs["statistics"],
        anomalies=example_validator.outputs["anomalies"],
        schema=schema_importer.outputs["schema"],
        warn_only=int(data.warn_only),
        examples=example_gen.outputs["examples"],
    )
    transform = tfx.components.Transform(
        examples=example_gen.outputs["examples"],
        schema=gate.outputs["validated_schema"],
        preprocessing_fn=PREPROCESSING_FN,
        materialize=False,
        # Statistics of the transformed features would decode and resize every image of every
        # split once more, only to describe 268,203 floats per image at 299 px: most of Transform's CPU
        # and, in the local runner, memory that grows with the data (measured: docs/benchmarks.md,
        # "Competition scale").
        # StatisticsGen already describes the raw data that the schema checks.
        disable_statistics=True,
        custom_config=config.transform_custom_config(),
    )
    return {
        "example_gen": example_gen,
        "statistics_gen": statistics_gen,
        "schema_gen": schema_gen,
        "schema_importer": schema_importer,
        "example_validator": example_validator,
        "gate": gate,
        "transform": transform,
    }


def member_run_values(member: Member, run_values: Dict[str, Any]) -> Dict[str, Any]:
    """The run parameters of one ensemble member's Trainer: the pipeline's, except what its spec sets.

    A setting the member's spec names (``"fine_tune_learning_rate=1e-3"``) is a constant of its
    Trainer; the others follow the run's parameters.
    """
    return {name: member.own.get(name, value) for name, value in run_values.items()}


def _tuner(config: PipelineConfig, front: Dict[str, Any], deployment: Deployment):
    """TFX's Tuner (``trainer/tuning.py``): trials on train, scored on calibration, never on eval.

    Raises:
      SettingsError: tuning an ensemble, parallel trials without Vertex AI, or a budget under one.
    """
    tune = config.tune
    if config.ensemble.members:
        raise SettingsError(
            "tune searches one Trainer's settings; an ensemble's members set their own (--ensemble): "
            "use one or the other"
        )
    if tune.tune_parallel_trials < 1 or (tune.tune_parallel_trials > 1 and deployment.vertex_tuning is None):
        raise SettingsError(
            f"tune_parallel_trials {tune.tune_parallel_trials}: trials run one at a time here (1); "
            "several at once need Vertex AI Training (imat compile)"
        )
    budget = tune.custom_config(config.trainer.seed)
    search_space.check_budget(budget, config.trainer)  # here, not after Transform
    kwargs: Dict[str, Any] = dict(
        examples=front["example_gen"].outputs["examples"],
        transform_graph=front["transform"].outputs["transform_graph"],
        schema=front["gate"].outputs["validated_schema"],
        tuner_fn=TUNER_FN,
        train_args=tfx.proto.TrainArgs(splits=[splits.TRAIN], num_steps=tune.tune_steps),
        eval_args=tfx.proto.EvalArgs(splits=[splits.CALIBRATION], num_steps=config.trainer.eval_steps),
        custom_config={
            **config.trainer_custom_config(),
            search_space.TUNE_CONFIG: budget,
            **(deployment.vertex_tuning or {}),
        },
    )
    if deployment.vertex_tuning is None:
        return tfx.components.Tuner(**kwargs)
    return tfx.extensions.google_cloud_ai_platform.Tuner(
        tune_args=tfx.proto.TuneArgs(num_parallel_trials=tune.tune_parallel_trials), **kwargs
    )


def _trainer(
    config: PipelineConfig,
    trainer: TrainerSettings,
    front: Dict[str, Any],
    run_values: Dict[str, Any],
    deployment: Deployment,
    tuner=None,
):
    return run_parameters.Trainer(
        run_fn=RUN_FN,
        examples=front["example_gen"].outputs["examples"],
        transform_graph=front["transform"].outputs["transform_graph"],
        schema=front["gate"].outputs["validated_schema"],
        train_args=tfx.proto.TrainArgs(splits=[splits.TRAIN], num_steps=trainer.train_steps),
        # Calibration tunes the thresholds and picks the rule; eval is only scored for the report.
        eval_args=tfx.proto.EvalArgs(splits=list(splits.HELD_OUT), num_steps=trainer.eval_steps),
        custom_config={
            **trainer.to_custom_config(),
            "label_map": config.locations.label_map,
            **(deployment.vertex_training or {}),
        },
        run_values={name: value for name, value in run_values.items() if name in run_parameters.TRAINER_PARAMETERS},
        vertex=deployment.vertex_training is not None,
        hyperparameters=tuner.outputs["best_hyperparameters"] if tuner is not None else None,
    )


def create_pipeline(
    config: PipelineConfig,
    metadata_connection_config=None,
    beam_pipeline_args: Optional[list] = None,
    deployment: Deployment = Deployment(),
) -> tfx.dsl.Pipeline:
    """Builds the TFX pipeline from the config; pure: no I/O, nothing run.

    Args:
      config: the pipeline's settings.
      metadata_connection_config: ML Metadata for local runs; None where the orchestrator has its own.
      beam_pipeline_args: overrides ``config.run.beam_pipeline_args``.
      deployment: what the orchestrator changes (runtime parameters, Vertex AI Training and serving).
    """
    run_values = _run_values(config, deployment)
    front = data_components(config)
    example_gen = front["example_gen"]
    members = config.members()
    tuners = [_tuner(config, front, deployment)] if config.tune.tune else []
    trainers = [
        _trainer(config, m.trainer, front, member_run_values(m, run_values), deployment).with_id(f"Trainer_{m.number}")
        for m in members
    ] or [_trainer(config, config.trainer, front, run_values, deployment, *tuners)]
    gated = trainers[0]  # the model the Evaluator gates: the single Trainer's, or the Ensembler's
    ensembler = []
    if members:
        settings = config.trainer
        gated = Ensembler(
            examples=example_gen.outputs["examples"],
            **{member_key(i): t.outputs["model"] for i, t in enumerate(trainers)},
            method=config.ensemble.method,
            min_positives=settings.min_positives,
            calibration_folds=settings.calibration_folds,
            eval_batch_size=settings.eval_batch_size,
            seed=settings.seed,
        )
        ensembler = [gated]
    model_resolver = _baseline_resolver(gated, deployment)
    evaluator = run_parameters.Evaluator(
        examples=example_gen.outputs["examples"],
        model=gated.outputs["model"],
        baseline_model=model_resolver.outputs[baseline.MODEL_KEY],
        eval_config=eval_config(config),
        micro_f1_lower_bound=run_values[run_parameters.MICRO_F1_LOWER_BOUND],
        example_splits=[splits.EVAL],
        baseline_margin=run_values[run_parameters.BASELINE_MARGIN],
    )  # never the calibration split: the gate is out of sample
    pusher = _pusher(config, deployment, gated, evaluator)
    # "More like this": the catalogue embedded by the model that serves, copied to
    # <similar_dir>/<version>, where `imat similar` looks for it.
    indexer = SimilarityIndexer(
        examples=example_gen.outputs["examples"],
        pushed_model=pusher.outputs["pushed_model"],
        label_map=config.locations.label_map,
        index_destination=config.locations.similar_dir,
        splits=",".join(splits.MODEL_SPLITS),  # not the drift splits: they hold no images
    )
    if deployment.scoring_beam_args:
        for scoring in (evaluator, indexer):
            scoring.with_beam_pipeline_args(list(deployment.scoring_beam_args))
    return tfx.dsl.Pipeline(
        pipeline_name=config.locations.pipeline_name,
        pipeline_root=config.locations.pipeline_root,
        components=list(front.values()) + tuners + trainers + ensembler + [model_resolver, evaluator, pusher, indexer],
        enable_cache=config.run.enable_cache,
        metadata_connection_config=metadata_connection_config,
        beam_pipeline_args=list(
            beam_pipeline_args if beam_pipeline_args is not None else config.run.beam_pipeline_args
        ),
    )
