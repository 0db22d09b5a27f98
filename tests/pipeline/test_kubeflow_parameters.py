"""Runtime parameters reach run_fn and the gate: the executors' rewrite, and the Vertex training job it sends."""

import json

import pytest
import tensorflow_model_analysis as tfma
from google.cloud.aiplatform_v1.types.job_state import JobState
from tfx.extensions.google_cloud_ai_platform import training_clients
from tfx.proto import trainer_pb2
from tfx.types import standard_artifacts
from tfx.utils import proto_utils

from pipeline.cloud_config import CloudConfig, TrainerResources
from pipeline import run_parameters
from pipeline.config import Locations, PipelineConfig
from pipeline.pipeline import eval_config
from trainer.settings import TrainerSettings

IMAGE = "europe-docker.pkg.dev/my-proj/imat/pipeline:v2"
CONFIG = PipelineConfig(
    locations=Locations(
        pipeline_name="imat",
        pipeline_root="gs://b/root",
        data_root="gs://b/data",
        serving_dir="gs://b/serving",
        label_map="gs://b/lm.csv",
    ),
    trainer=TrainerSettings(num_labels=6),
)


def trainer_properties(**extra):
    return {
        "train_args": proto_utils.proto_to_json(trainer_pb2.TrainArgs(num_steps=CONFIG.trainer.train_steps)),
        "eval_args": proto_utils.proto_to_json(trainer_pb2.EvalArgs(num_steps=0)),
        "run_fn": "trainer.task.run_fn",
        "custom_config": json.dumps(CONFIG.trainer_custom_config()),
        **extra,
    }


def test_trainer_parameters_replace_num_steps_and_learning_rates():
    result = run_parameters.apply_trainer_parameters(
        trainer_properties(train_steps=777, head_learning_rate=0.02, fine_tune_learning_rate=0.003)
    )
    assert proto_utils.json_to_proto(result["train_args"], trainer_pb2.TrainArgs()).num_steps == 777
    custom_config = json.loads(result["custom_config"])
    assert custom_config["head_learning_rate"] == 0.02 and custom_config["fine_tune_learning_rate"] == 0.003
    assert custom_config["train_steps"] == 777  # run_fn's record of the steps agrees with TrainArgs
    moved = {"head_learning_rate", "fine_tune_learning_rate", "train_steps"}
    assert {k: v for k, v in custom_config.items() if k not in moved} == {
        k: v for k, v in CONFIG.trainer_custom_config().items() if k not in moved
    }


def test_absent_trainer_parameters_leave_the_properties_alone():
    properties = trainer_properties()
    result = run_parameters.apply_trainer_parameters(properties)
    assert (
        proto_utils.json_to_proto(result["train_args"], trainer_pb2.TrainArgs()).num_steps == CONFIG.trainer.train_steps
    )
    assert json.loads(result["custom_config"]) == CONFIG.trainer_custom_config()


def test_micro_f1_bound_moves_only_the_gate():
    original = eval_config(CONFIG)
    result = run_parameters.apply_evaluator_parameters(
        {"eval_config": proto_utils.proto_to_json(original), "micro_f1_lower_bound": 0.62}
    )
    changed = proto_utils.json_to_proto(result["eval_config"], tfma.EvalConfig())
    gate = changed.metrics_specs[0].metrics[0]
    assert json.loads(gate.config)["name"] == "micro_f1"
    assert gate.threshold.value_threshold.lower_bound.value == pytest.approx(0.62)
    assert gate.threshold.change_threshold == original.metrics_specs[0].metrics[0].threshold.change_threshold
    original.metrics_specs[0].metrics[0].threshold.value_threshold.lower_bound.value = 0.62
    assert changed == original


def test_the_executor_gates_on_the_bound_tfma_applied_and_the_runs_margin():
    properties = {"eval_config": proto_utils.proto_to_json(eval_config(CONFIG)), "micro_f1_lower_bound": 0.62}
    applied = run_parameters.apply_evaluator_parameters({**properties, "baseline_margin": 0.1})
    assert run_parameters.gate_lower_bound(applied) == pytest.approx(0.62)
    assert run_parameters.baseline_margin(applied) == pytest.approx(0.1)
    assert applied["eval_config"] == run_parameters.apply_evaluator_parameters(properties)["eval_config"]
    # Built without the parameter: the setting's default, never no margin at all.
    assert run_parameters.baseline_margin(properties) == CONFIG.gate.baseline_margin == 0.05
    no_gate = tfma.EvalConfig(metrics_specs=[tfma.MetricsSpec(metrics=[tfma.MetricConfig(class_name="AUC")])])
    assert run_parameters.gate_lower_bound({"eval_config": proto_utils.proto_to_json(no_gate)}) == -float("inf")


def test_the_evaluator_takes_the_margin_as_a_float_parameter():
    from tfx import v1 as tfx

    channel = tfx.dsl.Channel(type=standard_artifacts.Model)
    examples = tfx.dsl.Channel(type=standard_artifacts.Examples)
    evaluator = run_parameters.Evaluator(
        examples, channel, channel, eval_config(CONFIG), micro_f1_lower_bound=0, baseline_margin=-1
    )
    assert evaluator.exec_properties["baseline_margin"] == -1.0
    assert isinstance(evaluator.exec_properties["baseline_margin"], float)
    assert isinstance(evaluator.exec_properties["micro_f1_lower_bound"], float)


def test_a_bound_without_a_gate_is_an_error():
    no_gate = tfma.EvalConfig(metrics_specs=[tfma.MetricsSpec(metrics=[tfma.MetricConfig(class_name="AUC")])])
    with pytest.raises(ValueError, match="no 'micro_f1' metric"):
        run_parameters.apply_evaluator_parameters(
            {"eval_config": proto_utils.proto_to_json(no_gate), "micro_f1_lower_bound": 0.5}
        )


class FakeJobService:
    """Vertex AI's JobServiceClient, the network boundary: records the CustomJob it is sent."""

    created = []

    def __init__(self, client_options):
        self.client_options = client_options

    def create_custom_job(self, parent, custom_job):
        FakeJobService.created.append((self.client_options, parent, custom_job))
        return type("Response", (), {"name": f"{parent}/customJobs/42"})()

    def get_custom_job(self, name, retry=None):
        return type("Job", (), {"state": JobState.JOB_STATE_SUCCEEDED})()


def test_vertex_trainer_sends_the_worker_pool_and_the_parameters_to_vertex_training(tmp_path, monkeypatch):
    monkeypatch.setattr(training_clients.gapic, "JobServiceClient", FakeJobService)
    FakeJobService.created.clear()
    cloud = CloudConfig(
        project="my-proj",
        region="europe-west4",
        image=IMAGE,
        pipeline_root="gs://b/root",
        data_root="gs://b/data",
        label_map="gs://b/lm.csv",
        serving_dir="gs://b/serving",
        trainer=TrainerResources("a2-highgpu-2g", "NVIDIA_TESLA_A100", 2),
    )
    properties = trainer_properties(train_steps=5000, head_learning_rate=0.01, fine_tune_learning_rate=0.002)
    properties["custom_config"] = json.dumps({**CONFIG.trainer_custom_config(), **cloud.vertex_training_config()})
    examples, model, model_run = (
        standard_artifacts.Examples(),
        standard_artifacts.Model(),
        standard_artifacts.ModelRun(),
    )
    for artifact, name in ((examples, "examples"), (model, "model"), (model_run, "model_run")):
        artifact.uri = str(tmp_path / name)

    run_parameters.VertexTrainerExecutor().Do(
        {"examples": [examples]}, {"model": [model], "model_run": [model_run]}, properties
    )

    [(client_options, parent, job)] = FakeJobService.created
    assert client_options == {"api_endpoint": "europe-west4-aiplatform.googleapis.com"}
    assert parent == "projects/my-proj/locations/europe-west4"
    [pool] = job["job_spec"]["worker_pool_specs"]
    assert pool["machine_spec"] == {
        "machine_type": "a2-highgpu-2g",
        "accelerator_type": "NVIDIA_TESLA_A100",
        "accelerator_count": 2,
    }
    assert pool["replica_count"] == 1 and pool["container_spec"]["image_uri"] == IMAGE
    command = pool["container_spec"]["command"]
    assert command[:5] == [
        "python",
        "-m",
        "tfx.scripts.run_executor",
        "--executor_class_path",
        "tfx.components.trainer.executor.GenericExecutor",
    ]
    sent = json.loads(command[command.index("--exec-properties") + 1])
    assert json.loads(sent["train_args"])["num_steps"] == 5000
    custom_config = json.loads(sent["custom_config"])
    assert custom_config["head_learning_rate"] == 0.01 and custom_config["fine_tune_learning_rate"] == 0.002
    assert custom_config["num_labels"] == 6
    assert "credentials" not in json.dumps(job).lower()
