"""imat submit: what would be sent to Vertex AI Pipelines and to a KFP endpoint, with only the network stubbed."""

import json

import google.auth
import pytest
from google.auth import credentials as ga_credentials
from google.cloud import aiplatform
from google.cloud.aiplatform.utils import gcs_utils
from google.cloud.aiplatform_v1.services.pipeline_service import PipelineServiceClient
from google.cloud.aiplatform_v1.types import pipeline_job as pipeline_job_pb

from cli import compile as compile_command, submit
from tests.helpers import import_extra

kfp = import_extra("kfp", "kubeflow")

VERTEX = ["--project", "my-proj", "--region", "us-central1"]


@pytest.fixture(scope="module")
def compiled(tmp_path_factory):
    out = tmp_path_factory.mktemp("compiled")
    json_path, yaml_path = compile_command.main(
        [
            "--project",
            "my-proj",
            "--region",
            "us-central1",
            "--image",
            "gcr.io/my-proj/imat:1",
            "--pipeline_root",
            "gs://bkt/root",
            "--data",
            "gs://bkt/data",
            "--label_map",
            "gs://bkt/lm.csv",
            "--num_labels",
            "20",
            "--serving_dir",
            "gs://bkt/serving",
            "--output_dir",
            str(out),
            "--kfp_yaml",
        ]
    )
    return json_path, yaml_path


class Recorder:
    """Stands in for a client class; records constructor and method calls."""

    def __init__(self, **returns):
        self.calls, self.returns = [], returns

    def __call__(self, *args, **kwargs):
        self.calls.append(("__init__", args, kwargs))
        return self

    def __getattr__(self, name):
        if name.startswith("__"):
            raise AttributeError(name)

        def method(*args, **kwargs):
            self.calls.append((name, args, kwargs))
            return self.returns.get(name)

        return method


def test_vertex_submit_builds_the_pipeline_job_with_typed_parameters(compiled, monkeypatch):
    json_path, _ = compiled
    init, job = Recorder(), Recorder()
    monkeypatch.setattr(aiplatform, "init", init)
    monkeypatch.setattr(aiplatform, "PipelineJob", job)
    submit.main(
        VERTEX
        + [
            "--pipeline",
            json_path,
            "--param",
            "train_steps=5000",
            "--param",
            "micro_f1_lower_bound=0.55",
            "--service_account",
            "runner@my-proj.iam.gserviceaccount.com",
            "--no_cache",
            "--label",
            "team=vision",
        ]
    )
    assert init.calls == [("__init__", (), {"project": "my-proj", "location": "us-central1"})]
    (_, _, created), (name, _, submitted) = job.calls
    assert created == {
        "display_name": "imat",
        "template_path": json_path,
        "job_id": None,
        "pipeline_root": None,
        "parameter_values": {"train_steps": 5000, "micro_f1_lower_bound": 0.55},
        "enable_caching": False,
        "labels": {"team": "vision"},
        "project": "my-proj",
        "location": "us-central1",
    }
    assert type(created["parameter_values"]["train_steps"]) is int
    assert name == "submit"
    assert submitted == {
        "service_account": "runner@my-proj.iam.gserviceaccount.com",
        "network": None,
        "experiment": None,
    }


def test_vertex_request_carries_the_compiled_spec_and_the_run_values(compiled, monkeypatch):
    """The real PipelineJob, stubbed where it would reach Google: ADC lookup, GCS and the Vertex API."""
    json_path, _ = compiled
    monkeypatch.setattr(google.auth, "default", lambda *a, **k: (ga_credentials.AnonymousCredentials(), "my-proj"))
    monkeypatch.setattr(
        gcs_utils, "create_gcs_bucket_for_pipeline_artifacts_if_it_does_not_exist", lambda **kwargs: None
    )
    sent = []

    def create_pipeline_job(self, *, parent, pipeline_job, pipeline_job_id, timeout=None):
        sent.append((parent, pipeline_job))
        created = pipeline_job_pb.PipelineJob(pipeline_job)
        created.name = f"{parent}/pipelineJobs/{pipeline_job_id}"
        return created

    monkeypatch.setattr(PipelineServiceClient, "create_pipeline_job", create_pipeline_job)
    job = submit.main(
        VERTEX + ["--pipeline", json_path, "--param", "head_learning_rate=0.005", "--job_id", "imat-run-7"]
    )
    [(parent, request)] = sent
    assert parent == "projects/my-proj/locations/us-central1"
    assert job.resource_name == "projects/my-proj/locations/us-central1/pipelineJobs/imat-run-7"
    assert request.runtime_config.gcs_output_directory == "gs://bkt/root"
    assert dict(request.runtime_config.parameter_values) == {
        "train_steps": 2000,
        "head_learning_rate": 0.005,
        "fine_tune_learning_rate": 1e-4,
        "micro_f1_lower_bound": 0.3,
        "baseline_margin": 0.05,
    }
    with open(json_path) as f:
        assert (
            request.pipeline_spec["root"]["dag"]["tasks"].keys()
            == json.load(f)["pipelineSpec"]["root"]["dag"]["tasks"].keys()
        )


def test_kfp_submit_creates_a_run_from_the_yaml(compiled, monkeypatch):
    _, yaml_path = compiled
    client = Recorder(create_run_from_pipeline_package=type("Run", (), {"run_id": "run-1"})())
    monkeypatch.setattr(kfp, "Client", client)
    submit.main(
        [
            "--kfp_host",
            "https://kfp.example.com/pipeline",
            "--pipeline",
            yaml_path,
            "--param",
            "fine_tune_learning_rate=0.0005",
            "--experiment",
            "imat",
            "--pipeline_root",
            "gs://bkt/kfp-root",
        ]
    )
    (_, _, constructed), (name, _, run) = client.calls
    assert constructed == {"host": "https://kfp.example.com/pipeline", "namespace": "kubeflow"}
    assert name == "create_run_from_pipeline_package"
    assert run == {
        "pipeline_file": yaml_path,
        "arguments": {"fine_tune_learning_rate": 0.0005},
        "run_name": "imat",
        "experiment_name": "imat",
        "namespace": "kubeflow",
        "pipeline_root": "gs://bkt/kfp-root",
        "enable_caching": None,
        "service_account": None,
    }


@pytest.mark.parametrize(
    "extra, message",
    [
        (
            ["--param", "learning_rate=0.1"],
            "the pipeline has no such parameter; it has baseline_margin, fine_tune_learning_rate, "
            "head_learning_rate, micro_f1_lower_bound, train_steps",
        ),
        (["--param", "train_steps=5.5"], "--param train_steps=5.5: not a valid NUMBER_INTEGER"),
        (["--param", "train_steps"], "expected NAME=VALUE"),
        (["--pipeline_root", "/tmp/root"], "Vertex AI needs a gs:// pipeline root"),
    ],
)
def test_bad_submissions_stop_before_anything_is_sent(compiled, monkeypatch, capsys, extra, message):
    job = Recorder()
    monkeypatch.setattr(aiplatform, "PipelineJob", job)
    with pytest.raises(SystemExit) as e:
        submit.main(VERTEX + ["--pipeline", compiled[0]] + extra)
    assert e.value.code == 2 and message in capsys.readouterr().err
    assert job.calls == []


def test_each_target_refuses_the_other_format(compiled, monkeypatch, capsys):
    monkeypatch.setattr(kfp, "Client", Recorder())
    with pytest.raises(SystemExit, match="2"):
        submit.main(["--kfp_host", "https://kfp", "--pipeline", compiled[0]])
    assert "Kubeflow Pipelines takes the .yaml" in capsys.readouterr().err
    with pytest.raises(SystemExit, match="2"):
        submit.main(VERTEX + ["--pipeline", compiled[1]])
    assert "Vertex AI takes the .json" in capsys.readouterr().err


def test_vertex_needs_project_and_region(compiled, capsys):
    with pytest.raises(SystemExit):
        submit.main(["--pipeline", compiled[0], "--region", "us-central1"])
    assert "Vertex AI needs --project and --region" in capsys.readouterr().err
