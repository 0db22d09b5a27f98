"""Compiles ``create_pipeline(config)`` for Vertex AI Pipelines and Kubeflow Pipelines v2.

The DAG is the local runner's; only the roots (GCS), the orchestrator (``KubeflowV2DagRunner``)
and the cloud settings differ: Beam args for Dataflow, the Trainer on Vertex AI Training, the
Pusher to a Vertex AI endpoint or a GCS folder, and the runtime parameters. Compiling is
offline: the code is referenced by import path and ships in the pipeline image, so nothing is
uploaded and no credentials are needed.
"""

import json
import os
import posixpath
from typing import Any, Dict, List

import yaml
from tfx import v1 as tfx

from pipeline.cloud_config import CloudConfig, CloudConfigError
from pipeline.config import Locations, PipelineConfig
from trainer.settings import TrainerSettings
from pipeline.pipeline import Deployment, create_pipeline, runtime_parameter_defaults


def pipeline_config(cloud: CloudConfig, num_labels: int, pipeline_name: str = "imat", **overrides) -> PipelineConfig:
    """The pipeline's config on GCS and Dataflow; ``overrides`` are other settings, by public name.

    The curated schema defaults to ``schema.pbtxt`` beside the label map (``imat schema`` writes it).

    Raises:
      CloudConfigError: bad cloud settings, a ``distribution`` the trainer's machine cannot use,
        or a batch that does not divide among the training replicas of several machines.
    """
    cloud.validate()
    overrides.setdefault("schema_path", posixpath.join(posixpath.dirname(cloud.label_map), "schema.pbtxt"))
    if cloud.vertex_training:
        # The strategy follows from the worker pools: workers beside the chief train with
        # MultiWorkerMirroredStrategy, several GPUs mirror, a TPU needs TPUStrategy.
        trainer = cloud.trainer
        wanted = trainer.distribution()
        if overrides.get("distribution", wanted) != wanted:
            workers = f" and {trainer.workers} worker(s)" if trainer.workers else ""
            raise CloudConfigError(
                f"distribution {overrides['distribution']!r} does not fit the trainer's "
                f"{trainer.accelerator_count} x {trainer.accelerator_type or 'CPU'}{workers}: "
                f"it needs {wanted!r}"
            )
        overrides["distribution"] = wanted
    locations = Locations(
        pipeline_name=pipeline_name,
        pipeline_root=cloud.pipeline_root,
        data_root=cloud.data_root,
        serving_dir=cloud.serving_dir,
        similar_dir=cloud.similar_dir,
        label_map=cloud.label_map,
    )
    config = PipelineConfig(locations=locations, trainer=TrainerSettings(num_labels=num_labels)).with_settings(
        beam_pipeline_args=tuple(cloud.beam_pipeline_args()), **overrides
    )
    if cloud.vertex_training and cloud.trainer.workers:
        # Each replica takes an equal share of the global batch; the trainer would refuse it
        # after the machines had started.
        trainer = cloud.trainer
        replicas = (trainer.workers + 1) * (trainer.accelerator_count if trainer.accelerator_type else 1)
        if config.trainer.batch_size % replicas:
            raise CloudConfigError(
                f"--batch_size {config.trainer.batch_size} does not divide among the {replicas} training "
                f"replicas of {trainer.workers + 1} machines: use a multiple of {replicas}"
            )
    return config


def deployment(cloud: CloudConfig) -> Deployment:
    """How the DAG differs on Kubeflow / Vertex: runtime parameters, Vertex Trainer and Pusher.

    KFP v2 compiles only TFX's own LatestBlessedModelStrategy, so the baseline resolver is that one.
    It takes any ModelBlessing marked blessed; the Evaluator's is the only one, and its executor
    writes the gate's final decision into it (``components/quality_gate.py``).
    """
    return Deployment(
        runtime_parameters=True,
        candidate_aware_baseline=False,
        vertex_training=cloud.vertex_training_config(),
        vertex_serving=cloud.vertex_serving_config(),
        vertex_tuning=cloud.vertex_tuning_config(),
        scoring_beam_args=cloud.dataflow.scoring_args(),
    )


def compile_job(config: PipelineConfig, cloud: CloudConfig) -> Dict[str, Any]:
    """The Vertex AI PipelineJob (as a dict): pipeline spec 2.1 with every parameter's default.

    TFX writes the defaults only into ``runtimeConfig``, which a KFP v2 spec file leaves out;
    they are also written into the root's input definitions, with the pipeline root.
    """
    runner = tfx.orchestration.experimental.KubeflowV2DagRunner(
        config=tfx.orchestration.experimental.KubeflowV2DagRunnerConfig(
            default_image=cloud.image, use_pipeline_spec_2_1=True
        )
    )
    defaults = runtime_parameter_defaults(config)
    job = runner.run(create_pipeline(config, deployment=deployment(cloud)), parameter_values=defaults, write_out=False)
    spec = job["pipelineSpec"]
    spec["defaultPipelineRoot"] = config.locations.pipeline_root
    for name, definition in spec["root"]["inputDefinitions"]["parameters"].items():
        definition["defaultValue"] = defaults[name]
        definition["isOptional"] = True
    # JSON numbers from the proto are all floats; keep integers integers.
    job["runtimeConfig"]["parameterValues"] = defaults
    return job


def write_job(job: Dict[str, Any], output_dir: str, name: str, kfp_yaml: bool = False) -> List[str]:
    """Writes ``<name>.json`` (Vertex AI PipelineJob) and, with ``kfp_yaml``, ``<name>.yaml`` (KFP v2 spec).

    Returns:
      The paths written.
    """
    os.makedirs(output_dir, exist_ok=True)
    paths = [os.path.join(output_dir, f"{name}.json")]
    with open(paths[0], "w") as f:
        json.dump(job, f, indent=1, sort_keys=True)
    if kfp_yaml:
        paths.append(os.path.join(output_dir, f"{name}.yaml"))
        with open(paths[1], "w") as f:
            yaml.safe_dump(job["pipelineSpec"], f, sort_keys=True)
    return paths


def compile_pipeline(config: PipelineConfig, cloud: CloudConfig, output_dir: str, kfp_yaml: bool = False) -> List[str]:
    """Compiles and writes the pipeline; returns the paths written."""
    return write_job(compile_job(config, cloud), output_dir, config.locations.pipeline_name, kfp_yaml)
