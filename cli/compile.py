"""``imat compile``: the pipeline as a Vertex AI PipelineJob JSON (and a KFP v2 YAML), offline.

  imat compile --project P --region us-central1 --image us-central1-docker.pkg.dev/P/imat/pipeline:v1 \\
      --pipeline_root gs://B/imat/pipeline --data gs://B/imat/data --label_map gs://B/imat/label_map.csv \\
      --serving_dir gs://B/imat/serving --num_labels 228 --output_dir build/ --kfp_yaml

The Trainer runs on Vertex AI Training (--trainer_accelerator NVIDIA_TESLA_T4, count 1 by default;
several GPUs mirror, TPU_V3 takes 8 cores on machine type cloud-tpu; --trainer_workers N adds N
machines like the chief and trains with MultiWorkerMirroredStrategy); the Beam components run on
Dataflow. Training steps, both learning rates and the micro-F1 bound are pipeline parameters:
change them per run with ``imat submit --param NAME=VALUE``.
"""

import argparse
from typing import List, Optional

from pipeline.cloud_config import (
    CLOUD_TPUS,
    TPU_MACHINE_TYPE,
    CloudConfig,
    CloudConfigError,
    DataflowSettings,
    TrainerResources,
)
from imat_common.errors import user_error
from cli.flags import add_config_flags, config_overrides


def parse_args(argv: Optional[List[str]]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        allow_abbrev=False,
        prog="imat compile",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    where = parser.add_argument_group("where it runs")
    where.add_argument("--project", required=True, help="Google Cloud project")
    where.add_argument("--region", required=True, help="Vertex AI and Dataflow region, e.g. us-central1")
    where.add_argument("--image", required=True, help="the pipeline image built from kubeflow/Dockerfile")
    where.add_argument("--pipeline_root", required=True, help="gs:// folder for the pipeline's artifacts")
    where.add_argument("--data", required=True, help="gs:// folder: the download job's --output")
    where.add_argument("--label_map", required=True, help="gs:// path of label_map.csv")
    where.add_argument(
        "--schema",
        default="",
        help="gs:// path of the curated schema (`imat schema` writes it; "
        "give each version its own path: ImportSchemaGen caches by path); default: "
        "schema.pbtxt beside --label_map",
    )
    where.add_argument(
        "--num_labels",
        type=int,
        help="the label map's highest id; read from --label_map when left out (which needs GCS access)",
    )
    where.add_argument("--serving_dir", default="", help="gs:// folder the Pusher writes model versions to")
    where.add_argument("--endpoint", default="", help="instead: a Vertex AI endpoint (display name) to deploy to")
    where.add_argument("--serving_image", default=CloudConfig.serving_image, help="Vertex AI serving image")
    where.add_argument("--serving_machine_type", default=CloudConfig.serving_machine_type)
    where.add_argument("--service_account", default="", help="the identity jobs run as (an email)")
    where.add_argument("--temp_location", default="", help="Dataflow's gs:// temp folder (<pipeline_root>/tmp)")
    where.add_argument("--pipeline_name", default="imat")

    train = parser.add_argument_group("trainer on Vertex AI Training")
    train.add_argument(
        "--trainer_accelerator",
        default=TrainerResources.accelerator_type,
        help="NVIDIA_TESLA_T4, NVIDIA_L4, NVIDIA_TESLA_V100, NVIDIA_TESLA_A100, ..., TPU_V3, or none",
    )
    train.add_argument("--trainer_accelerator_count", type=int, help="GPUs on the machine (1), or TPU cores (8)")
    train.add_argument("--trainer_machine_type", help=f"{TrainerResources.machine_type}, or cloud-tpu for TPU_V2/V3")
    train.add_argument(
        "--trainer_workers",
        type=int,
        default=0,
        help="machines beside the chief, each like it: MultiWorkerMirroredStrategy (0: the chief "
        "alone); --batch_size is the global batch, split between them",
    )
    train.add_argument(
        "--no_vertex_training",
        action="store_true",
        help="train inside the Trainer component's own container instead (small runs)",
    )

    flow = parser.add_argument_group("Dataflow (ExampleGen, StatisticsGen, Transform, Evaluator)")
    flow.add_argument("--dataflow_machine_type", default=DataflowSettings.machine_type)
    flow.add_argument("--dataflow_max_workers", type=int, default=DataflowSettings.max_num_workers)
    flow.add_argument(
        "--dataflow_autoscaling", default=DataflowSettings.autoscaling_algorithm, help="THROUGHPUT_BASED or NONE"
    )
    flow.add_argument("--dataflow_disk_size_gb", type=int, default=DataflowSettings.disk_size_gb)
    flow.add_argument(
        "--dataflow_setup_file",
        default=DataflowSettings.setup_file,
        help="setup.py inside the image, installed on the workers",
    )
    flow.add_argument(
        "--scoring_accelerator",
        default=DataflowSettings.scoring_accelerator,
        help="a Dataflow GPU type (nvidia-l4, nvidia-tesla-t4, ...) for the workers of the Evaluator and the "
        "SimilarityIndexer, the steps that score every image; default: CPUs",
    )
    flow.add_argument("--scoring_accelerator_count", type=int, default=DataflowSettings.scoring_accelerator_count)
    flow.add_argument(
        "--scoring_machine_type",
        default=DataflowSettings.scoring_machine_type,
        help="the GPU workers' machine type (default: g2-standard-8 for nvidia-l4, n1-standard-8 otherwise)",
    )
    flow.add_argument(
        "--no_dataflow_pipeline_image",
        action="store_true",
        help="run workers on Dataflow's stock image (installing this project with --setup_file)",
    )

    out = parser.add_argument_group("output")
    out.add_argument("--output_dir", default=".", help="where <pipeline_name>.json (and .yaml) go")
    out.add_argument("--kfp_yaml", action="store_true", help="also write the KFP v2 pipeline spec YAML")

    model = parser.add_argument_group("pipeline settings (defaults as in imat run; see pipeline/config.py)")
    add_config_flags(model)
    return parser.parse_args(argv)


def trainer_resources(args: argparse.Namespace) -> TrainerResources:
    """The worker pool from the flags; a TPU v2/v3 defaults to its machine type and 8 cores."""
    accelerator = "" if args.trainer_accelerator.lower() in ("", "none", "cpu") else args.trainer_accelerator
    tpu = accelerator in CLOUD_TPUS
    count = args.trainer_accelerator_count
    if count is None:
        count = 8 if tpu else (1 if accelerator else 0)
    machine = args.trainer_machine_type or (TPU_MACHINE_TYPE if tpu else TrainerResources.machine_type)
    return TrainerResources(
        machine_type=machine, accelerator_type=accelerator, accelerator_count=count, workers=args.trainer_workers
    )


def cloud_config(args: argparse.Namespace) -> CloudConfig:
    """The cloud settings from the flags, validated."""
    return CloudConfig(
        project=args.project,
        region=args.region,
        image=args.image,
        pipeline_root=args.pipeline_root,
        data_root=args.data,
        label_map=args.label_map,
        serving_dir=args.serving_dir,
        endpoint=args.endpoint,
        serving_image=args.serving_image,
        serving_machine_type=args.serving_machine_type,
        temp_location=args.temp_location,
        service_account=args.service_account,
        vertex_training=not args.no_vertex_training,
        trainer=trainer_resources(args),
        dataflow=DataflowSettings(
            machine_type=args.dataflow_machine_type,
            max_num_workers=args.dataflow_max_workers,
            autoscaling_algorithm=args.dataflow_autoscaling,
            disk_size_gb=args.dataflow_disk_size_gb,
            setup_file=args.dataflow_setup_file,
            use_pipeline_image=not args.no_dataflow_pipeline_image,
            scoring_accelerator=""
            if args.scoring_accelerator.lower() in ("", "none", "cpu")
            else args.scoring_accelerator,
            scoring_accelerator_count=args.scoring_accelerator_count,
            scoring_machine_type=args.scoring_machine_type,
        ),
    ).validate()


def _num_labels(args: argparse.Namespace) -> int:
    if args.num_labels is not None:
        return args.num_labels
    from imat_common.features import LabelMapError, load_label_map

    try:
        return load_label_map(args.label_map).num_labels
    except LabelMapError:  # the file is there and wrong: its own message says where
        raise
    except Exception as e:  # GCS unreachable or no credentials: say what to do instead
        raise CloudConfigError(
            f"cannot read --label_map {args.label_map} ({type(e).__name__}: {e}); "
            "pass --num_labels to compile without GCS access"
        ) from e


def main(argv: Optional[List[str]] = None) -> List[str]:
    """Compiles the pipeline; prints and returns the paths written."""
    args = parse_args(argv)
    try:
        import kfp.pipeline_spec  # noqa: F401  TFX exports KubeflowV2DagRunner only next to kfp
    except ImportError:
        raise user_error(
            "compile",
            "kfp is not installed: pip install -e '.[kubeflow]' "
            "(kfp 2.x with protobuf 3.20.x; a bare `pip install kfp` breaks TensorFlow)",
        ) from None
    from pipeline import kubeflow_v2_runner as runner  # TFX is heavy: only after the flags are known to parse

    try:
        cloud = cloud_config(args)
        overrides = config_overrides(args)
        if args.schema:
            overrides["schema_path"] = args.schema
        config = runner.pipeline_config(cloud, _num_labels(args), pipeline_name=args.pipeline_name, **overrides)
    except CloudConfigError as e:
        raise user_error("compile", e) from None
    paths = runner.compile_pipeline(config, cloud, args.output_dir, kfp_yaml=args.kfp_yaml)
    for path in paths:
        print(f"wrote {path}")
    return paths
