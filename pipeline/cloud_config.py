"""Cloud settings for Kubeflow Pipelines / Vertex AI, in one frozen object.

Everything the local run does not need lives here: the project and region, the pipeline image,
the GCS roots, Dataflow's Beam args, the Trainer's Vertex AI Training worker pool and where the
Pusher sends the model. No credentials: every Google client finds Application Default
Credentials in its environment (the job's service account on Vertex and Dataflow).
"""

import dataclasses
import posixpath
from typing import Any, Dict, List, Optional, Tuple

# Where kubeflow/Dockerfile puts this project inside the pipeline image.
IMAGE_PROJECT_DIR = "/pipeline"
# Vertex AI's prebuilt TensorFlow serving image matching the TF 2.16 the model is saved with.
DEFAULT_SERVING_IMAGE = "us-docker.pkg.dev/vertex-ai/prediction/tf2-cpu.2-16:latest"
# TPU v2 / v3 on Vertex AI Training: this machine type, 8 cores. Newer TPUs name their own machine types.
TPU_MACHINE_TYPE = "cloud-tpu"
# Dataflow's GPU types (worker_accelerator=type:...) and their usual hosts: an L4 on G2, the others on N1.
DATAFLOW_GPUS = (
    "nvidia-l4",
    "nvidia-tesla-t4",
    "nvidia-tesla-v100",
    "nvidia-tesla-p100",
    "nvidia-tesla-p4",
    "nvidia-a100-80gb",
    "nvidia-tesla-a100",
)
L4_MACHINE_TYPE = "g2-standard-8"
GPU_MACHINE_TYPE = "n1-standard-8"
CLOUD_TPUS = ("TPU_V2", "TPU_V3")


class CloudConfigError(ValueError):
    """Cloud settings that cannot work; the message lists every problem."""


@dataclasses.dataclass(frozen=True)
class TrainerResources:
    """The Vertex AI Training worker pools of the Trainer: a chief, with GPUs or a TPU, and workers.

    The distribution strategy follows from it (trainer/task.py's ``distribution``): workers
    beside the chief: ``multi_worker``; several GPUs: ``mirrored``; a TPU: ``tpu``; one GPU or
    none: ``default``.
    """

    machine_type: str = "n1-standard-8"
    accelerator_type: str = "NVIDIA_TESLA_T4"  # "" for CPU only; TPU_V2 / TPU_V3 for a TPU
    accelerator_count: int = 1
    # Machines beside the chief, each like it (Vertex AI's second worker pool); 0: the chief alone.
    workers: int = 0

    @property
    def is_tpu(self) -> bool:
        """Whether the accelerator is a TPU."""
        return self.accelerator_type.startswith("TPU_")

    def distribution(self) -> str:
        """The trainer's distribution strategy for this machine."""
        if self.is_tpu:
            return "tpu"
        if self.workers:
            return "multi_worker"
        return "mirrored" if self.accelerator_type and self.accelerator_count > 1 else "default"

    def problems(self) -> List[str]:
        """What is wrong with these resources, if anything."""
        found = []
        if self.accelerator_type and self.accelerator_count < 1:
            found.append(f"trainer accelerator {self.accelerator_type} needs a count of at least 1")
        if self.accelerator_type in CLOUD_TPUS and self.machine_type != TPU_MACHINE_TYPE:
            found.append(f"{self.accelerator_type} needs machine type {TPU_MACHINE_TYPE!r}, not {self.machine_type!r}")
        if self.accelerator_type in CLOUD_TPUS and self.accelerator_count != 8:
            found.append(
                f"{self.accelerator_type} on Vertex AI Training comes as 8 cores, not {self.accelerator_count}"
            )
        if self.workers < 0:
            found.append(f"trainer workers must be 0 or more, not {self.workers}")
        if self.workers and self.is_tpu:
            found.append(
                f"trainer workers run MultiWorkerMirroredStrategy on CPUs or GPUs, not {self.accelerator_type}"
            )
        return found

    def worker_pool_specs(self, image: str) -> List[Dict[str, Any]]:
        """Vertex AI CustomJob worker pool specs: the chief, then ``workers`` replicas like it.

        All run the pipeline image; TFX sets the container command (``python -m
        tfx.scripts.run_executor ...``), the same for every pool, and Vertex AI gives each
        replica a TF_CONFIG naming it ``chief`` (first pool) or ``worker`` (second pool).
        """
        machine_spec: Dict[str, Any] = {"machine_type": self.machine_type}
        if self.accelerator_type:
            machine_spec.update(accelerator_type=self.accelerator_type, accelerator_count=self.accelerator_count)
        pools = [{"machine_spec": machine_spec, "replica_count": 1, "container_spec": {"image_uri": image}}]
        if self.workers:
            pools.append(
                {
                    "machine_spec": dict(machine_spec),
                    "replica_count": self.workers,
                    "container_spec": {"image_uri": image},
                }
            )
        return pools


@dataclasses.dataclass(frozen=True)
class DataflowSettings:
    """How Beam components (ExampleGen, StatisticsGen, Transform, Evaluator) run on Dataflow."""

    machine_type: str = "n2-standard-8"
    max_num_workers: int = 20
    autoscaling_algorithm: str = "THROUGHPUT_BASED"
    disk_size_gb: int = 100
    # Workers install this project from the setup.py the image carries.
    setup_file: str = f"{IMAGE_PROJECT_DIR}/setup.py"
    # Workers also run in the pipeline image: TFX, tf-keras and TF_USE_LEGACY_KERAS=1 are there.
    use_pipeline_image: bool = True
    # The steps that score every image (the Evaluator, the SimilarityIndexer's embedding job) on
    # workers with a GPU: a Dataflow accelerator type ("nvidia-l4", "nvidia-tesla-t4", ...); "" on CPUs.
    scoring_accelerator: str = ""
    scoring_accelerator_count: int = 1
    scoring_machine_type: str = ""  # "": g2-standard-8 for an L4, n1-standard-8 for the others

    @property
    def scoring_machine(self) -> str:
        """The scoring workers' machine type: the one given, else the accelerator's usual host."""
        if self.scoring_machine_type:
            return self.scoring_machine_type
        return L4_MACHINE_TYPE if self.scoring_accelerator == "nvidia-l4" else GPU_MACHINE_TYPE

    def problems(self) -> List[str]:
        """What is wrong with the scoring workers' accelerator, if anything."""
        if not self.scoring_accelerator:
            return []
        found = []
        if self.scoring_accelerator not in DATAFLOW_GPUS:
            found.append(
                f"--scoring_accelerator {self.scoring_accelerator!r}: Dataflow's GPU types are "
                + ", ".join(DATAFLOW_GPUS)
            )
        if self.scoring_accelerator_count < 1:
            found.append(f"--scoring_accelerator_count must be 1 or more, not {self.scoring_accelerator_count}")
        if self.scoring_accelerator == "nvidia-l4" and not self.scoring_machine.startswith("g2-"):
            found.append(f"nvidia-l4 runs on g2 machine types only, not {self.scoring_machine!r}")
        if self.scoring_accelerator != "nvidia-l4" and self.scoring_machine.startswith(("n2-", "e2-", "c2-", "g2-")):
            found.append(f"{self.scoring_accelerator} attaches to n1 machine types, not {self.scoring_machine!r}")
        if not self.use_pipeline_image:
            found.append(
                "GPU scoring workers need the pipeline image (its CUDA libraries): drop --no_dataflow_pipeline_image"
            )
        return found

    def scoring_args(self) -> Tuple[str, ...]:
        """Beam args added to the scoring components' (after the pipeline's: they win); none on CPUs.

        One SDK process per worker: each process would load the model onto the GPU and TensorFlow
        takes the GPU's memory whole.
        """
        if not self.scoring_accelerator:
            return ()
        return (
            f"--machine_type={self.scoring_machine}",
            "--dataflow_service_options=worker_accelerator="
            f"type:{self.scoring_accelerator};count:{self.scoring_accelerator_count};install-nvidia-driver",
            "--experiments=no_use_multiple_sdk_containers",
        )


@dataclasses.dataclass(frozen=True)
class CloudConfig:
    """Where and how the pipeline runs on Vertex AI Pipelines or Kubeflow Pipelines."""

    project: str
    region: str
    image: str  # the pipeline image (kubeflow/Dockerfile), for every component and the training job
    pipeline_root: str  # gs://: artifacts; Vertex AI writes there too
    data_root: str  # gs://: the download job's --output
    label_map: str  # gs://: label_map.csv
    serving_dir: str = ""  # gs:// folder the Pusher writes versions to (when no endpoint)
    endpoint: str = ""  # a Vertex AI endpoint's display name: push there instead
    serving_image: str = DEFAULT_SERVING_IMAGE
    serving_machine_type: str = "n1-standard-4"
    temp_location: str = ""  # Dataflow's; default <pipeline_root>/tmp
    service_account: str = ""  # the identity jobs run as (an email, never a key)
    vertex_training: bool = True  # False: train inside the Trainer component's own container
    trainer: TrainerResources = TrainerResources()
    dataflow: DataflowSettings = DataflowSettings()

    def problems(self) -> List[str]:
        """Every setting that cannot work, as readable lines."""
        found = [f"--{name} is required" for name in ("project", "region", "image") if not getattr(self, name).strip()]
        for name, flag in (("pipeline_root", "pipeline_root"), ("data_root", "data"), ("label_map", "label_map")):
            value = getattr(self, name)
            if not value.startswith("gs://"):
                found.append(f"--{flag} must be a gs:// path on Vertex AI / Dataflow, got {value!r}")
        if bool(self.serving_dir) == bool(self.endpoint):
            found.append("give exactly one of --serving_dir (a gs:// folder) and --endpoint (a Vertex AI endpoint)")
        elif self.serving_dir and not self.serving_dir.startswith("gs://"):
            found.append(f"--serving_dir must be a gs:// folder, got {self.serving_dir!r}")
        if self.temp_location and not self.temp_location.startswith("gs://"):
            found.append(f"--temp_location must be a gs:// path, got {self.temp_location!r}")
        if self.vertex_training:
            found.extend(self.trainer.problems())
        found.extend(self.dataflow.problems())
        return found

    def validate(self) -> "CloudConfig":
        """Returns self, or raises CloudConfigError naming every problem."""
        found = self.problems()
        if found:
            raise CloudConfigError("cloud settings: " + "; ".join(found))
        return self

    @property
    def similar_dir(self) -> str:
        """Where the similar-product indexes go: ``similar/`` beside the serving folder ('' with an endpoint)."""
        return posixpath.join(posixpath.dirname(self.serving_dir.rstrip("/")), "similar") if self.serving_dir else ""

    def beam_pipeline_args(self) -> Tuple[str, ...]:
        """Beam args that run every Beam component on Dataflow."""
        flow = self.dataflow
        args = [
            "--runner=DataflowRunner",
            f"--project={self.project}",
            f"--region={self.region}",
            f"--temp_location={self.temp_location or self.pipeline_root.rstrip('/') + '/tmp'}",
            f"--setup_file={flow.setup_file}",
            f"--machine_type={flow.machine_type}",
            f"--autoscaling_algorithm={flow.autoscaling_algorithm}",
            f"--max_num_workers={flow.max_num_workers}",
            f"--disk_size_gb={flow.disk_size_gb}",
        ]
        if flow.use_pipeline_image:
            args.append(f"--sdk_container_image={self.image}")
        if self.service_account:
            args.append(f"--service_account_email={self.service_account}")
        return tuple(args)

    def vertex_training_config(self) -> Optional[Dict[str, Any]]:
        """The Trainer's extra ``custom_config``: a Vertex AI CustomJob, or None to train in place."""
        if not self.vertex_training:
            return None
        job_spec: Dict[str, Any] = {"worker_pool_specs": self.trainer.worker_pool_specs(self.image)}
        if self.service_account:
            job_spec["service_account"] = self.service_account
        from tfx.v1.extensions import google_cloud_ai_platform as gcp  # TFX imports TensorFlow: only here

        return {
            gcp.ENABLE_VERTEX_KEY: True,
            gcp.VERTEX_REGION_KEY: self.region,
            gcp.TRAINING_ARGS_KEY: {"project": self.project, "job_spec": job_spec},
        }

    def vertex_tuning_config(self) -> Optional[Dict[str, Any]]:
        """The Tuner's extra ``custom_config``: its trials on the Trainer's machine type, or None to tune in place.

        One pool, the chief; the Vertex AI Tuner adds ``tune_parallel_trials`` - 1 machines like it.
        """
        if not self.vertex_training:
            return None
        chief = dataclasses.replace(self.trainer, workers=0)  # each trial trains on one machine
        job_spec: Dict[str, Any] = {"worker_pool_specs": chief.worker_pool_specs(self.image)}
        if self.service_account:
            job_spec["service_account"] = self.service_account
        from tfx.extensions.google_cloud_ai_platform.tuner.executor import TUNING_ARGS_KEY
        from tfx.v1.extensions import google_cloud_ai_platform as gcp

        return {
            gcp.ENABLE_VERTEX_KEY: True,
            gcp.VERTEX_REGION_KEY: self.region,
            TUNING_ARGS_KEY: {"project": self.project, "job_spec": job_spec},
        }

    def vertex_serving_config(self) -> Optional[Dict[str, Any]]:
        """The Vertex AI Pusher's ``custom_config``, or None to push to ``serving_dir``."""
        if not self.endpoint:
            return None
        from tfx.v1.extensions import google_cloud_ai_platform as gcp

        return {
            gcp.ENABLE_VERTEX_KEY: True,
            gcp.VERTEX_REGION_KEY: self.region,
            gcp.VERTEX_CONTAINER_IMAGE_URI_KEY: self.serving_image,
            gcp.SERVING_ARGS_KEY: {
                "project_id": self.project,
                "endpoint_name": self.endpoint,
                "machine_type": self.serving_machine_type,
            },
        }
