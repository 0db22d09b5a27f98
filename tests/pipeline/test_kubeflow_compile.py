"""imat compile: the Vertex AI PipelineJob JSON and the KFP v2 YAML, offline, read back and checked."""

import json
import os

import pytest
import yaml

from cli import compile as compile_command
from pipeline.cloud_config import CloudConfig, CloudConfigError
from trainer.settings import TrainerSettings
from tests.helpers import COMPONENTS, KUBEFLOW

pytestmark = KUBEFLOW

IMAGE = "us-central1-docker.pkg.dev/my-proj/imat/pipeline:v1"
BASE = [
    "--project",
    "my-proj",
    "--region",
    "europe-west4",
    "--image",
    IMAGE,
    "--pipeline_root",
    "gs://bkt/imat/pipeline",
    "--data",
    "gs://bkt/imat/data",
    "--label_map",
    "gs://bkt/imat/label_map.csv",
    "--num_labels",
    "228",
]
# KFP compiles the resolver node into two tasks.
RESOLVER = "latest_blessed_model_resolver"
TASKS = COMPONENTS - {RESOLVER} | {f"{RESOLVER}-model-blessing-resolver", f"{RESOLVER}-model-resolver"}
DATAFLOW = [
    "--runner=DataflowRunner",
    "--project=my-proj",
    "--region=europe-west4",
    "--temp_location=gs://bkt/imat/pipeline/tmp",
    "--setup_file=/pipeline/setup.py",
    "--machine_type=n2-standard-8",
    "--autoscaling_algorithm=THROUGHPUT_BASED",
    "--max_num_workers=20",
    "--disk_size_gb=100",
    f"--sdk_container_image={IMAGE}",
]


def compile_to(tmp_path, *flags):
    paths = compile_command.main(BASE + ["--output_dir", str(tmp_path)] + list(flags))
    with open(paths[0]) as f:
        return json.load(f), paths


def task_parameters(job, task):
    return job["pipelineSpec"]["root"]["dag"]["tasks"][task]["inputs"]["parameters"]


def constant(job, task, name):
    return task_parameters(job, task)[name]["runtimeValue"]["constant"]


@pytest.fixture(scope="module")
def gpu_job(tmp_path_factory):
    out = tmp_path_factory.mktemp("compiled")
    job, paths = compile_to(
        out,
        "--serving_dir",
        "gs://bkt/imat/serving",
        "--kfp_yaml",
        "--trainer_accelerator",
        "NVIDIA_TESLA_V100",
        "--trainer_accelerator_count",
        "4",
        "--trainer_machine_type",
        "n1-standard-32",
        "--train_steps",
        "3000",
    )
    return job, paths


def test_both_formats_are_written_and_the_yaml_is_the_jobs_pipeline_spec(gpu_job):
    job, paths = gpu_job
    assert [os.path.basename(p) for p in paths] == ["imat.json", "imat.yaml"]
    with open(paths[1]) as f:
        spec = yaml.safe_load(f)
    assert spec == job["pipelineSpec"]
    assert spec["schemaVersion"] == "2.1.0" and spec["pipelineInfo"]["name"] == "imat"
    assert spec["defaultPipelineRoot"] == "gs://bkt/imat/pipeline"
    assert job["runtimeConfig"]["gcsOutputDirectory"] == "gs://bkt/imat/pipeline"


def test_every_component_runs_in_the_pipeline_image_with_dataflow_args(gpu_job):
    job, _ = gpu_job
    assert set(job["pipelineSpec"]["root"]["dag"]["tasks"]) == TASKS
    executors = job["pipelineSpec"]["deploymentSpec"]["executors"]
    containers = {
        name[: -len("_executor")]: spec["container"] for name, spec in executors.items() if "container" in spec
    }
    assert set(containers) == TASKS - {t for t in TASKS if t.startswith("latest_blessed_model_resolver")}
    assert {c["image"] for c in containers.values()} == {IMAGE}
    for name in ("ImportExampleGen", "StatisticsGen", "Transform", "Evaluator"):
        args = containers[name]["args"]
        assert args[args.index("--runner=DataflowRunner") :] == DATAFLOW, name
    assert containers["Trainer"]["args"][1] == "pipeline.run_parameters.VertexTrainerExecutor"
    assert containers["Evaluator"]["args"][1] == "pipeline.run_parameters.EvaluatorExecutor"
    # Code by import path: nothing to upload at compile time.
    assert constant(job, "Trainer", "run_fn") == "trainer.task.run_fn"
    assert constant(job, "Transform", "preprocessing_fn") == "trainer.preprocessing.preprocessing_fn"
    # The curated schema beside the label map; the gate stops bad data (warn_only off).
    assert constant(job, "ImportSchemaGen", "schema_file") == "gs://bkt/imat/schema.pbtxt"
    assert constant(job, "ValidationGate", "warn_only") == 0
    assert constant(job, "Evaluator", "example_splits") == '["eval"]'


def test_trainer_runs_on_vertex_training_with_four_gpus_mirrored(gpu_job):
    job, _ = gpu_job
    custom_config = json.loads(constant(job, "Trainer", "custom_config"))
    assert custom_config["ai_platform_enable_vertex"] is True
    assert custom_config["ai_platform_vertex_region"] == "europe-west4"
    assert custom_config["ai_platform_training_args"] == {
        "project": "my-proj",
        "job_spec": {
            "worker_pool_specs": [
                {
                    "machine_spec": {
                        "machine_type": "n1-standard-32",
                        "accelerator_type": "NVIDIA_TESLA_V100",
                        "accelerator_count": 4,
                    },
                    "replica_count": 1,
                    "container_spec": {"image_uri": IMAGE},
                }
            ]
        },
    }
    assert custom_config["distribution"] == "mirrored"
    assert custom_config["num_labels"] == 228 and custom_config["label_map"] == "gs://bkt/imat/label_map.csv"


def test_runtime_parameters_are_pipeline_parameters_with_the_configs_defaults(gpu_job):
    job, _ = gpu_job
    definitions = job["pipelineSpec"]["root"]["inputDefinitions"]["parameters"]
    assert definitions == {
        "train_steps": {"parameterType": "NUMBER_INTEGER", "defaultValue": 3000, "isOptional": True},
        "head_learning_rate": {"parameterType": "NUMBER_DOUBLE", "defaultValue": 1e-3, "isOptional": True},
        "fine_tune_learning_rate": {"parameterType": "NUMBER_DOUBLE", "defaultValue": 1e-4, "isOptional": True},
        "micro_f1_lower_bound": {"parameterType": "NUMBER_DOUBLE", "defaultValue": 0.3, "isOptional": True},
        "baseline_margin": {"parameterType": "NUMBER_DOUBLE", "defaultValue": 0.05, "isOptional": True},
    }
    assert job["runtimeConfig"]["parameterValues"] == {
        "train_steps": 3000,
        "head_learning_rate": 1e-3,
        "fine_tune_learning_rate": 1e-4,
        "micro_f1_lower_bound": 0.3,
        "baseline_margin": 0.05,
    }
    trainer, evaluator = task_parameters(job, "Trainer"), task_parameters(job, "Evaluator")
    for name in ("train_steps", "head_learning_rate", "fine_tune_learning_rate"):
        assert trainer[name] == {"componentInputParameter": name}
    # The gate's settings, the trivial baseline's margin included, are the Evaluator's own parameters:
    # its executor decides the one blessing the Pusher and the stock resolver read.
    for name in ("micro_f1_lower_bound", "baseline_margin"):
        assert evaluator[name] == {"componentInputParameter": name}


def test_the_pusher_and_the_next_runs_baseline_read_the_evaluators_one_blessing(gpu_job):
    # KFP's resolver takes any ModelBlessing with blessed=1: were a second component to bless after
    # the Evaluator, a model it refused would still be blessed in the Evaluator's. So the one
    # blessing is the Evaluator's, decided on every condition of the gate by its executor.
    job, _ = gpu_job
    spec = job["pipelineSpec"]
    pusher = spec["root"]["dag"]["tasks"]["Pusher"]["inputs"]["artifacts"]["model_blessing"]["taskOutputArtifact"]
    assert pusher == {"producerTask": "Evaluator", "outputArtifactKey": "blessing"}
    query = spec["deploymentSpec"]["executors"][f"{RESOLVER}-model-blessing-resolver_executor"]["resolver"]
    assert "metadata.blessed.number_value=1" in query["outputArtifactQueries"]["model_blessing"]["filter"]
    blessing_outputs = {
        name
        for name, component in spec["components"].items()
        for artifact in component.get("outputDefinitions", {}).get("artifacts", {}).values()
        if "title: tfx.ModelBlessing\n" in artifact["artifactType"]["instanceSchema"]
    }
    assert blessing_outputs == {"Evaluator", f"{RESOLVER}-model-blessing-resolver"}  # the resolver's: a query


def test_pusher_writes_to_the_gcs_serving_folder(gpu_job):
    job, _ = gpu_job
    destination = json.loads(constant(job, "Pusher", "push_destination"))
    assert destination == {"filesystem": {"base_directory": "gs://bkt/imat/serving"}}


def test_tpu_variant_and_vertex_endpoint(tmp_path):
    job, _ = compile_to(
        tmp_path,
        "--endpoint",
        "imat-endpoint",
        "--trainer_accelerator",
        "TPU_V3",
        "--mixed_precision",
        "mixed_bfloat16",
        "--service_account",
        "runner@my-proj.iam.gserviceaccount.com",
    )
    custom_config = json.loads(constant(job, "Trainer", "custom_config"))
    assert custom_config["ai_platform_training_args"]["job_spec"] == {
        "worker_pool_specs": [
            {
                "machine_spec": {"machine_type": "cloud-tpu", "accelerator_type": "TPU_V3", "accelerator_count": 8},
                "replica_count": 1,
                "container_spec": {"image_uri": IMAGE},
            }
        ],
        "service_account": "runner@my-proj.iam.gserviceaccount.com",
    }
    assert custom_config["distribution"] == "tpu" and custom_config["mixed_precision"] == "mixed_bfloat16"
    executors = job["pipelineSpec"]["deploymentSpec"]["executors"]
    assert (
        executors["Pusher_executor"]["container"]["args"][1]
        == "tfx.extensions.google_cloud_ai_platform.pusher.executor.Executor"
    )
    assert json.loads(constant(job, "Pusher", "custom_config")) == {
        "ai_platform_enable_vertex": True,
        "ai_platform_vertex_region": "europe-west4",
        "ai_platform_vertex_container_image_uri": "us-docker.pkg.dev/vertex-ai/prediction/tf2-cpu.2-16:latest",
        "ai_platform_serving_args": {
            "project_id": "my-proj",
            "endpoint_name": "imat-endpoint",
            "machine_type": "n1-standard-4",
        },
    }
    assert (
        "--service_account_email=runner@my-proj.iam.gserviceaccount.com"
        in executors["Transform_executor"]["container"]["args"]
    )


def test_trainer_workers_give_a_chief_pool_and_a_worker_pool_training_multi_worker(tmp_path):
    job, _ = compile_to(
        tmp_path,
        "--serving_dir",
        "gs://bkt/s",
        "--trainer_workers",
        "3",
        "--trainer_machine_type",
        "n1-standard-16",
        "--trainer_accelerator_count",
        "2",
        "--batch_size",
        "64",
    )
    custom_config = json.loads(constant(job, "Trainer", "custom_config"))
    machine = {"machine_type": "n1-standard-16", "accelerator_type": "NVIDIA_TESLA_T4", "accelerator_count": 2}
    assert custom_config["ai_platform_training_args"]["job_spec"]["worker_pool_specs"] == [
        {"machine_spec": machine, "replica_count": 1, "container_spec": {"image_uri": IMAGE}},  # the chief
        {"machine_spec": machine, "replica_count": 3, "container_spec": {"image_uri": IMAGE}},
    ]
    assert custom_config["distribution"] == "multi_worker" and custom_config["batch_size"] == 64


def test_without_vertex_training_the_trainer_trains_in_its_component(tmp_path):
    job, _ = compile_to(tmp_path, "--serving_dir", "gs://bkt/s", "--no_vertex_training", "--no_dataflow_pipeline_image")
    custom_config = json.loads(constant(job, "Trainer", "custom_config"))
    assert not any(key.startswith("ai_platform") for key in custom_config)
    executors = job["pipelineSpec"]["deploymentSpec"]["executors"]
    assert executors["Trainer_executor"]["container"]["args"][1] == "pipeline.run_parameters.TrainerExecutor"
    assert not any(a.startswith("--sdk_container_image") for a in executors["Transform_executor"]["container"]["args"])


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--serving_dir", "gs://bkt/s", "--pipeline_root", "/local/root"], "--pipeline_root must be a gs:// path"),
        (["--serving_dir", "gs://bkt/s", "--data", "data/"], "--data must be a gs:// path"),
        ([], "give exactly one of --serving_dir"),
        (["--serving_dir", "gs://bkt/s", "--endpoint", "e"], "give exactly one of --serving_dir"),
        (["--serving_dir", "gs://bkt/s", "--project", " "], "--project is required"),
        (
            [
                "--serving_dir",
                "gs://bkt/s",
                "--trainer_accelerator",
                "TPU_V3",
                "--trainer_machine_type",
                "n1-standard-8",
            ],
            "TPU_V3 needs machine type 'cloud-tpu'",
        ),
        (
            ["--serving_dir", "gs://bkt/s", "--trainer_accelerator_count", "2", "--distribution", "default"],
            "distribution 'default' does not fit the trainer's 2 x NVIDIA_TESLA_T4: it needs 'mirrored'",
        ),
        (
            ["--serving_dir", "gs://bkt/s", "--trainer_workers", "1", "--distribution", "mirrored"],
            "distribution 'mirrored' does not fit the trainer's 1 x NVIDIA_TESLA_T4 and 1 worker(s): "
            "it needs 'multi_worker'",
        ),
        (
            ["--serving_dir", "gs://bkt/s", "--trainer_workers", "2", "--batch_size", "32"],
            "--batch_size 32 does not divide among the 3 training replicas of 3 machines: use a multiple of 3",
        ),
        (
            ["--serving_dir", "gs://bkt/s", "--trainer_workers", "2", "--trainer_accelerator", "TPU_V3"],
            "trainer workers run MultiWorkerMirroredStrategy on CPUs or GPUs, not TPU_V3",
        ),
        (["--serving_dir", "gs://bkt/s", "--trainer_workers", "-1"], "trainer workers must be 0 or more, not -1"),
    ],
)
def test_bad_settings_stop_with_a_message_naming_them(tmp_path, capsys, flags, message):
    with pytest.raises(SystemExit) as e:
        compile_command.main(BASE + ["--output_dir", str(tmp_path)] + flags)
    assert e.value.code == 2 and message in capsys.readouterr().err
    assert not os.listdir(tmp_path)


def test_cloud_config_lists_every_problem_at_once():
    cloud = CloudConfig(
        project="",
        region="r",
        image="i",
        pipeline_root="/p",
        data_root="gs://d",
        label_map="gs://l",
        serving_dir="gs://s",
    )
    with pytest.raises(CloudConfigError) as e:
        cloud.validate()
    assert "--project is required" in str(e.value) and "--pipeline_root must be a gs:// path" in str(e.value)


def test_local_and_kubeflow_compile_the_same_dag():
    """One create_pipeline: the local IR and the Kubeflow job hold the same components and settings."""
    from tfx import v1 as tfx
    from tfx.dsl.compiler import compiler

    from pipeline import kubeflow_v2_runner as runner
    from pipeline.pipeline import create_pipeline

    cloud = CloudConfig(
        project="p",
        region="r",
        image=IMAGE,
        pipeline_root="gs://b/root",
        data_root="gs://b/data",
        label_map="gs://b/lm.csv",
        serving_dir="gs://b/serving",
        vertex_training=False,
    )
    config = runner.pipeline_config(cloud, num_labels=12)
    local = compiler.Compiler().compile(
        create_pipeline(config, tfx.orchestration.metadata.sqlite_metadata_connection_config("unused.sqlite"))
    )
    local_nodes = {n.pipeline_node.node_info.id: n.pipeline_node for n in local.nodes}
    job = runner.compile_job(config, cloud)
    kfp_tasks = set(job["pipelineSpec"]["root"]["dag"]["tasks"])
    assert set(local_nodes) == {t for t in TASKS if not t.startswith("latest_")} | {"latest_blessed_model_resolver"}
    assert kfp_tasks == TASKS
    local_trainer = local_nodes["Trainer"].parameters.parameters
    assert json.loads(local_trainer["custom_config"].field_value.string_value) == json.loads(
        constant(job, "Trainer", "custom_config")
    )
    assert local_trainer["train_steps"].field_value.int_value == TrainerSettings.train_steps
    assert json.loads(
        local_nodes["Evaluator"].parameters.parameters["eval_config"].field_value.string_value
    ) == json.loads(constant(job, "Evaluator", "eval_config"))


def test_an_ensemble_trains_each_member_as_its_own_vertex_job_and_the_evaluator_gates_the_combination(tmp_path):
    job, _ = compile_to(
        tmp_path,
        "--serving_dir",
        "gs://bkt/s",
        "--ensemble",
        "backbone=inception_v3",
        "--ensemble",
        "backbone=xception,loss=asl,seed=1",
        "--ensemble_method",
        "stacker",
    )
    tasks = job["pipelineSpec"]["root"]["dag"]["tasks"]
    assert set(tasks) == TASKS - {"Trainer"} | {"Trainer_1", "Trainer_2", "Ensembler"}
    for name, backbone, loss in (("Trainer_1", "inception_v3", "bce"), ("Trainer_2", "xception", "asl")):
        custom_config = json.loads(constant(job, name, "custom_config"))
        assert (custom_config["backbone"], custom_config["loss"]) == (backbone, loss)
        # Each member is a Vertex AI Training job of its own, with its own worker pool.
        assert custom_config["ai_platform_enable_vertex"] is True
        assert custom_config["ai_platform_training_args"]["job_spec"]["worker_pool_specs"][0]["machine_spec"] == {
            "machine_type": "n1-standard-8",
            "accelerator_type": "NVIDIA_TESLA_T4",
            "accelerator_count": 1,
        }
        # The runtime parameters reach every member.
        assert task_parameters(job, name)["train_steps"]["componentInputParameter"] == "train_steps"
    ensembler = tasks["Ensembler"]
    assert {
        key: value["taskOutputArtifact"]["producerTask"]
        for key, value in ensembler["inputs"]["artifacts"].items()
        if key.startswith("model_")
    } == {"model_1": "Trainer_1", "model_2": "Trainer_2"}
    assert constant(job, "Ensembler", "method") == "stacker"
    for consumer in ("Evaluator", "Pusher"):
        assert tasks[consumer]["inputs"]["artifacts"]["model"]["taskOutputArtifact"]["producerTask"] == "Ensembler"


def test_spans_compile_for_vertex_reading_the_newest_span_and_checking_drift(tmp_path):
    job, _ = compile_to(tmp_path, "--serving_dir", "gs://bkt/s", "--train_spans", "4")
    input_config = json.loads(constant(job, "ImportExampleGen", "input_config"))
    patterns = {split["name"]: split["pattern"] for split in input_config["splits"]}
    # The newest span is found when the job runs, by ExampleGen's driver on Vertex.
    assert patterns["train"] == "span-{SPAN}/train/*.tfrecord.gz"
    assert patterns["eval"] == patterns["calibration"] == "span-{SPAN}/validation/*.tfrecord.gz"
    assert {"drift_new", "drift_previous"} <= set(patterns)
    assert '"train_spans": 4.0' in constant(job, "ImportExampleGen", "custom_config")
    assert json.loads(constant(job, "ExampleValidator", "exclude_splits")) == ["drift_new", "drift_previous"]
    tasks = job["pipelineSpec"]["root"]["dag"]["tasks"]
    assert "examples" in tasks["ValidationGate"]["inputs"]["artifacts"]
    assert "schema" in tasks["StatisticsGen"]["inputs"]["artifacts"]
    assert constant(job, "SimilarityIndexer", "splits") == "train,calibration,eval"
    # A backfill: --span fixes the span at compile time.
    job, _ = compile_to(tmp_path / "backfill", "--serving_dir", "gs://bkt/s", "--train_spans", "1", "--span", "7")
    range_config = json.loads(constant(job, "ImportExampleGen", "range_config"))
    assert range_config["static_range"] == {"start_span_number": 7, "end_span_number": 7}


def test_tune_runs_parallel_trials_on_vertex_training_and_the_trainer_reads_the_best(tmp_path):
    job, _ = compile_to(
        tmp_path,
        "--serving_dir",
        "gs://bkt/s",
        "--tune",
        "--tune_trials",
        "12",
        "--tune_parallel_trials",
        "3",
        "--tune_search",
        "fine_tune_learning_rate, dropout",
        "--trainer_accelerator_count",
        "2",
    )
    tasks = job["pipelineSpec"]["root"]["dag"]["tasks"]
    assert set(tasks) == TASKS | {"Tuner"}
    executors = job["pipelineSpec"]["deploymentSpec"]["executors"]
    assert (
        executors["Tuner_executor"]["container"]["args"][1]
        == "tfx.extensions.google_cloud_ai_platform.tuner.executor.Executor"
    )
    assert executors["Tuner_executor"]["container"]["image"] == IMAGE
    assert constant(job, "Tuner", "tuner_fn") == "trainer.tuning.tuner_fn"
    assert json.loads(constant(job, "Tuner", "tune_args")) == {"num_parallel_trials": 3}
    # trials learn from train and are scored on calibration: the eval split stays the gate's
    assert json.loads(constant(job, "Tuner", "train_args")) == {"num_steps": 300, "splits": ["train"]}
    assert json.loads(constant(job, "Tuner", "eval_args")) == {"splits": ["calibration"]}
    custom_config = json.loads(constant(job, "Tuner", "custom_config"))
    machine = {"machine_type": "n1-standard-8", "accelerator_type": "NVIDIA_TESLA_T4", "accelerator_count": 2}
    # one pool, the chief: the Vertex AI Tuner adds the other parallel trials' machines like it
    assert custom_config["ai_platform_tuning_args"] == {
        "project": "my-proj",
        "job_spec": {
            "worker_pool_specs": [{"machine_spec": machine, "replica_count": 1, "container_spec": {"image_uri": IMAGE}}]
        },
    }
    assert custom_config["ai_platform_enable_vertex"] is True
    assert custom_config["ai_platform_vertex_region"] == "europe-west4"
    assert custom_config["tune"] == {
        "trials": 12,
        "steps": 300,
        "search": ["fine_tune_learning_rate", "dropout"],
        "algorithm": "random",
        "seed": 0,
    }
    assert custom_config["distribution"] == "mirrored" and custom_config["num_labels"] == 228
    assert tasks["Trainer"]["inputs"]["artifacts"]["hyperparameters"]["taskOutputArtifact"] == {
        "outputArtifactKey": "best_hyperparameters",
        "producerTask": "Tuner",
    }
    assert "Tuner" in tasks["Trainer"]["dependentTasks"]


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--tune", "--tune_parallel_trials", "2", "--no_vertex_training"], "several at once need Vertex AI Training"),
        (["--tune", "--ensemble", "seed=1", "--ensemble", "seed=2"], "use one or the other"),
        (["--tune", "--tune_steps", "0"], "tune_steps must be 1 or more, got 0"),
        (["--tune", "--tune_search", "dropout,learning_rate"], "'learning_rate' cannot be searched; did you mean"),
        (["--tune", "--tune_algorithm", "grid"], "tune_algorithm 'grid': use random or bayesian"),
    ],
)
def test_a_tuning_that_cannot_run_stops_with_a_message(tmp_path, capsys, flags, message):
    from cli import main as imat

    with pytest.raises(SystemExit) as e:
        imat.main(["compile"] + BASE + ["--output_dir", str(tmp_path), "--serving_dir", "gs://bkt/s"] + flags)
    assert e.value.code == 2 and message in capsys.readouterr().err
    assert not os.listdir(tmp_path)


def _args(job, task):
    return job["pipelineSpec"]["deploymentSpec"]["executors"][f"{task}_executor"]["container"]["args"]


def test_gpu_scoring_workers_score_on_dataflow_gpus_and_the_rest_stays_on_cpus(tmp_path):
    job, _ = compile_to(tmp_path, "--serving_dir", "gs://bkt/s", "--scoring_accelerator", "nvidia-l4")
    gpu = [
        "--machine_type=g2-standard-8",
        "--dataflow_service_options=worker_accelerator=type:nvidia-l4;count:1;install-nvidia-driver",
        "--experiments=no_use_multiple_sdk_containers",
    ]
    for task in ("Evaluator", "SimilarityIndexer"):
        args = _args(job, task)
        # after the pipeline's Dataflow args: Beam takes the last --machine_type
        assert args[args.index("--runner=DataflowRunner") :] == DATAFLOW + gpu, task
    for task in ("ImportExampleGen", "StatisticsGen", "Transform"):
        assert not any("worker_accelerator" in a or "g2-standard" in a for a in _args(job, task)), task
    from apache_beam.options.pipeline_options import GoogleCloudOptions, PipelineOptions, WorkerOptions

    options = PipelineOptions(DATAFLOW + gpu)
    assert options.view_as(WorkerOptions).machine_type == "g2-standard-8"
    assert options.view_as(GoogleCloudOptions).dataflow_service_options == [gpu[1].split("=", 1)[1]]


def test_a_t4_takes_an_n1_host_by_default_and_cpu_scoring_adds_nothing(tmp_path):
    job, _ = compile_to(
        tmp_path / "t4",
        "--serving_dir",
        "gs://bkt/s",
        "--scoring_accelerator",
        "nvidia-tesla-t4",
        "--scoring_accelerator_count",
        "2",
    )
    args = _args(job, "Evaluator")
    assert "--machine_type=n1-standard-8" in args
    assert "--dataflow_service_options=worker_accelerator=type:nvidia-tesla-t4;count:2;install-nvidia-driver" in args
    job, _ = compile_to(tmp_path / "cpu", "--serving_dir", "gs://bkt/s")
    args = _args(job, "Evaluator")
    assert args[args.index("--runner=DataflowRunner") :] == DATAFLOW


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--scoring_accelerator", "nvidia-h9000"], "Dataflow's GPU types are nvidia-l4"),
        (["--scoring_accelerator", "nvidia-l4", "--scoring_machine_type", "n1-standard-8"], "g2 machine types only"),
        (["--scoring_accelerator", "nvidia-tesla-t4", "--scoring_machine_type", "n2-standard-8"], "n1 machine types"),
        (["--scoring_accelerator", "nvidia-l4", "--no_dataflow_pipeline_image"], "need the pipeline image"),
        (["--scoring_accelerator", "nvidia-l4", "--scoring_accelerator_count", "0"], "1 or more, not 0"),
    ],
)
def test_gpu_scoring_workers_that_cannot_start_are_refused(tmp_path, capsys, flags, message):
    with pytest.raises(SystemExit) as e:
        compile_command.main(BASE + ["--output_dir", str(tmp_path), "--serving_dir", "gs://bkt/s"] + flags)
    assert e.value.code == 2 and message in capsys.readouterr().err
