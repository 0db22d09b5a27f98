"""imat schedule: the cron check, the offline checks, and what would be sent to Vertex AI to create or update."""

import json
from types import SimpleNamespace

import google.auth
import pytest
from google.auth import credentials as ga_credentials
from google.cloud import aiplatform
from google.cloud.aiplatform_v1.services.schedule_service import ScheduleServiceClient
from google.cloud.aiplatform_v1.types import schedule as schedule_pb

from cli import compile as compile_command, main as imat, schedule
from tests.helpers import KUBEFLOW

PARENT = "projects/my-proj/locations/us-central1"
VERTEX = ["--project", "my-proj", "--region", "us-central1"]
WEEKLY = ["--cron", "0 3 * * 1", "--display_name", "imat-weekly"]
COMPILED_PARAMETERS = {
    "train_steps": 2000,
    "head_learning_rate": 1e-3,
    "fine_tune_learning_rate": 1e-4,
    "micro_f1_lower_bound": 0.3,
    "baseline_margin": 0.05,
}


@pytest.mark.parametrize(
    "expression",
    [
        "0 3 * * 1",
        "*/15 0-23/2 1,15 1-12 0-7",
        "5,10-20/5,59 * * 6 0",
        "0 0 31 12 7",
        "TZ=Europe/Paris 0 3 * * 1",
        "CRON_TZ=America/New_York 30 2 * * 1-5",
    ],
)
def test_the_cron_validator_accepts_five_valid_fields(expression):
    assert schedule.validate_cron(expression) == expression


@pytest.mark.parametrize(
    "expression, message",
    [
        ("0 3 * *", "expected 5 fields (minute, hour, day of month, month, day of week), got 4"),
        ("0 3 * * 1 2026", "expected 5 fields"),
        ("", "got 0"),
        ("60 3 * * 1", "minute field '60': 60 is outside 0-59"),
        ("0 24 * * 1", "hour field '24': 24 is outside 0-23"),
        ("0 3 0 * 1", "day of month field '0': 0 is outside 1-31"),
        ("0 3 * 13 1", "month field '13': 13 is outside 1-12"),
        ("0 3 * * 8", "day of week field '8': 8 is outside 0-7"),
        ("0 3 * * MON", "day of week field 'MON': 'MON' is not a number"),
        ("0 5-2 * * 1", "hour field '5-2': the range runs backwards"),
        ("*/0 3 * * 1", "minute field '*/0': the step '0' is not a whole number >= 1"),
        ("0 3 */x * 1", "day of month field '*/x': the step 'x' is not a whole number >= 1"),
        ("5/15 3 * * 1", "minute field '5/15': a step follows * or a range (e.g. 5-59/15)"),
        ("0 3 1,,15 * 1", "day of month field '1,,15': an empty item in the list"),
        ("0 3 * 1- 1", "month field '1-': a number is missing"),
        ("0 ² * * 1", "hour field '²': '²' is not a number"),
        ("TZ=Mars/Olympus 0 3 * * 1", "time zone 'Mars/Olympus' is not an IANA time zone name"),
    ],
)
def test_the_cron_validator_names_the_field_at_fault(expression, message):
    with pytest.raises(schedule.CronError) as e:
        schedule.validate_cron(expression)
    assert message in str(e.value) and "\n" not in str(e.value)


# Everything below needs a compiled job, and so kfp.


@pytest.fixture(scope="module")
def job(tmp_path_factory):
    """The weekly job: reads the newest span when each run starts, trains on the newest 3."""
    out = tmp_path_factory.mktemp("compiled")
    [json_path] = compile_command.main(
        VERTEX
        + ["--image", "gcr.io/my-proj/imat:1", "--pipeline_root", "gs://bkt/root", "--data", "gs://bkt/data"]
        + ["--label_map", "gs://bkt/lm.csv", "--num_labels", "20", "--serving_dir", "gs://bkt/serving"]
        + ["--train_spans", "3", "--output_dir", str(out)]
    )
    return json_path


@pytest.fixture
def recorded(monkeypatch):
    """aiplatform's entry points replaced by Recorders: nothing reaches Google, every call is kept."""
    from tests.pipeline.test_kubeflow_submit import Recorder  # importing that module needs kfp, as these tests do

    created = SimpleNamespace(resource_name=f"{PARENT}/schedules/1")
    fakes = SimpleNamespace(
        init=Recorder(), job=Recorder(create_schedule=created), schedules=Recorder(list=[]), created=created
    )
    monkeypatch.setattr(aiplatform, "init", fakes.init)
    monkeypatch.setattr(aiplatform, "PipelineJob", fakes.job)
    monkeypatch.setattr(aiplatform, "PipelineJobSchedule", fakes.schedules)
    return fakes


@pytest.fixture
def vertex(monkeypatch):
    """The real aiplatform SDK, stubbed where it would reach Google: ADC and the schedule service."""
    monkeypatch.setattr(google.auth, "default", lambda *a, **k: (ga_credentials.AnonymousCredentials(), "my-proj"))
    service = SimpleNamespace(existing=[], listed=[], created=[], updated=[])

    def list_schedules(self, request=None, **kwargs):
        service.listed.append(request)
        return list(service.existing)

    def create_schedule(self, *, parent, schedule, timeout=None):
        service.created.append((parent, schedule))
        done = schedule_pb.Schedule(schedule)
        done.name = f"{parent}/schedules/new"
        return done

    def update_schedule(self, *, schedule, update_mask):
        service.updated.append((schedule, update_mask))
        return schedule

    def get_schedule(self, *args, **kwargs):
        raise AssertionError("imat schedule should need no call but list and create or update")

    for name, stub in [
        ("list_schedules", list_schedules),
        ("create_schedule", create_schedule),
        ("update_schedule", update_schedule),
        ("get_schedule", get_schedule),
    ]:
        monkeypatch.setattr(ScheduleServiceClient, name, stub)
    return service


def existing(display_name="imat-weekly", state=schedule_pb.Schedule.State.ACTIVE, number=7):
    """A schedule as the service lists it: last week's cron and job, a network and an identity."""
    return schedule_pb.Schedule(
        name=f"{PARENT}/schedules/{number}",
        display_name=display_name,
        state=state,
        cron="0 1 * * *",
        max_concurrent_run_count=1,
        create_pipeline_job_request={
            "parent": PARENT,
            "pipeline_job": {
                "network": "projects/1/global/networks/vpc",
                "service_account": "old@my-proj.iam.gserviceaccount.com",
                "runtime_config": {"parameter_values": {"train_steps": 10}},
            },
        },
    )


def one_error_line(capsys) -> str:
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("imat schedule: error: "), lines
    return lines[0]


@KUBEFLOW
@pytest.mark.parametrize(
    "flags, message",
    [
        (["--job", "missing/imat.json"], "cannot read the compiled pipeline missing/imat.json: No such file"),
        (
            ["--param", "learning_rate=0.1"],
            "--param learning_rate: the pipeline has no such parameter; it has baseline_margin, "
            "fine_tune_learning_rate, head_learning_rate, micro_f1_lower_bound, train_steps",
        ),
        (["--parameter", "train_steps=5.5"], "--param train_steps=5.5: not a valid NUMBER_INTEGER"),
        (["--max_concurrent_runs", "0"], "--max_concurrent_runs 0: must be 1 or more"),
        (["--cron", "0 3 * * 8"], "--cron '0 3 * * 8': day of week field '8': 8 is outside 0-7"),
        (["--display_name", "x" * 129], "1 to 128 characters"),
    ],
)
def test_offline_checks_stop_with_one_line_and_exit_2_before_any_call(job, recorded, capsys, flags, message):
    with pytest.raises(SystemExit) as e:
        schedule.main(VERTEX + WEEKLY + ["--job", job] + flags)  # a later flag wins
    assert e.value.code == 2
    assert message in one_error_line(capsys)
    assert recorded.init.calls == recorded.job.calls == recorded.schedules.calls == []


@KUBEFLOW
def test_a_job_compiled_for_one_span_is_refused(job, recorded, tmp_path, capsys):
    """A backfill job (compile --span 5) would retrain on span 5 every week."""
    with open(job) as f:
        document = json.load(f)
    parameters = document["pipelineSpec"]["root"]["dag"]["tasks"]["ImportExampleGen"]["inputs"]["parameters"]
    # What imat compile --train_spans 3 --span 5 writes there.
    static = {"static_range": {"end_span_number": 5, "start_span_number": 5}}
    parameters["range_config"] = {"runtimeValue": {"constant": json.dumps(static)}}
    backfill = tmp_path / "backfill.json"
    backfill.write_text(json.dumps(document))
    with pytest.raises(SystemExit) as e:
        schedule.main(VERTEX + WEEKLY + ["--job", str(backfill)])
    assert e.value.code == 2
    assert "reads span 5 on every run (compiled with --span 5, a backfill)" in one_error_line(capsys)
    assert recorded.init.calls == recorded.job.calls == recorded.schedules.calls == []


@KUBEFLOW
def test_dry_run_prints_the_schedule_and_calls_nothing(job, recorded, capsys):
    imat.main(["schedule"] + VERTEX + WEEKLY + ["--job", job, "--param", "train_steps=5000", "--dry_run"])
    out = capsys.readouterr().out
    assert "would create, or update if it exists, the schedule 'imat-weekly' in my-proj/us-central1" in out
    assert "cron: 0 3 * * 1 (at most 1 run at once)" in out
    assert f"job: {job} (pipeline imat)" in out
    assert "the newest span-N under gs://bkt/data when each run starts, training on the newest 3" in out
    assert "head_learning_rate=0.001, micro_f1_lower_bound=0.3, train_steps=5000 (given)" in out
    assert recorded.init.calls == recorded.job.calls == recorded.schedules.calls == []


@KUBEFLOW
def test_creates_when_no_schedule_has_the_name(job, recorded):
    flags = ["--job", job, "--param", "train_steps=5000", "--parameter", "micro_f1_lower_bound=0.55"]
    flags += ["--max_concurrent_runs", "2", "--service_account", "runner@my-proj.iam.gserviceaccount.com"]
    assert schedule.main(VERTEX + WEEKLY + flags) is recorded.created
    assert recorded.init.calls == [("__init__", (), {"project": "my-proj", "location": "us-central1"})]
    assert recorded.schedules.calls == [
        ("list", (), {"filter": 'display_name="imat-weekly"', "project": "my-proj", "location": "us-central1"})
    ]
    (_, _, constructed), (name, _, scheduled) = recorded.job.calls
    assert constructed == {
        "display_name": "imat",
        "template_path": job,
        "parameter_values": {"train_steps": 5000, "micro_f1_lower_bound": 0.55},
        "project": "my-proj",
        "location": "us-central1",
    }
    assert type(constructed["parameter_values"]["train_steps"]) is int
    assert name == "create_schedule"
    assert scheduled == {
        "cron": "0 3 * * 1",
        "display_name": "imat-weekly",
        "max_concurrent_run_count": 2,
        "service_account": "runner@my-proj.iam.gserviceaccount.com",
    }


@KUBEFLOW
def test_the_create_request_carries_the_cron_the_spec_and_the_run_values(job, vertex, capsys):
    # Schedules that are not the one: another name, and a completed one (Vertex AI updates only
    # active or paused schedules).
    vertex.existing += [existing("imat-weekly-eu"), existing(state=schedule_pb.Schedule.State.COMPLETED)]
    created = schedule.main(VERTEX + WEEKLY + ["--job", job, "--param", "head_learning_rate=0.005"])
    assert vertex.listed == [{"parent": PARENT, "filter": 'display_name="imat-weekly"'}]
    assert vertex.updated == []
    [(parent, sent)] = vertex.created
    assert parent == PARENT and created.resource_name == f"{PARENT}/schedules/new"
    assert (sent.display_name, sent.cron, sent.max_concurrent_run_count) == ("imat-weekly", "0 3 * * 1", 1)
    request = sent.create_pipeline_job_request
    assert request.parent == PARENT
    assert request.pipeline_job.runtime_config.gcs_output_directory == "gs://bkt/root"
    assert dict(request.pipeline_job.runtime_config.parameter_values) == {
        **COMPILED_PARAMETERS,
        "head_learning_rate": 0.005,
    }
    assert request.pipeline_job.pipeline_spec["pipelineInfo"]["name"] == "imat"
    assert f"created schedule {PARENT}/schedules/new ('imat-weekly')" in capsys.readouterr().out


@KUBEFLOW
def test_updates_the_schedule_with_the_same_name_instead_of_creating_one(job, vertex, capsys):
    vertex.existing += [existing("imat-daily", number=3), existing(state=schedule_pb.Schedule.State.PAUSED)]
    flags = ["--job", job, "--param", "train_steps=4000", "--max_concurrent_runs", "2"]
    updated = schedule.main(VERTEX + WEEKLY + flags)
    assert vertex.created == []
    [(sent, mask)] = vertex.updated
    assert sorted(mask.paths) == ["create_pipeline_job_request", "cron", "max_concurrent_run_count"]
    assert sent.name == updated.resource_name == f"{PARENT}/schedules/7"
    assert (sent.display_name, sent.cron, sent.max_concurrent_run_count) == ("imat-weekly", "0 3 * * 1", 2)
    pipeline_job = sent.create_pipeline_job_request.pipeline_job
    # The job is this compiled pipeline with these values; what was not given stays as it was.
    assert dict(pipeline_job.runtime_config.parameter_values) == {**COMPILED_PARAMETERS, "train_steps": 4000}
    assert pipeline_job.runtime_config.gcs_output_directory == "gs://bkt/root"
    with open(job) as f:
        assert pipeline_job.pipeline_spec["root"]["dag"]["tasks"].keys() == (
            json.load(f)["pipelineSpec"]["root"]["dag"]["tasks"].keys()
        )
    assert pipeline_job.network == "projects/1/global/networks/vpc"
    assert pipeline_job.service_account == "old@my-proj.iam.gserviceaccount.com"
    assert f"updated schedule {PARENT}/schedules/7 ('imat-weekly')" in capsys.readouterr().out


@KUBEFLOW
def test_two_schedules_with_the_name_are_one_line_and_nothing_changes(job, vertex, capsys):
    vertex.existing += [existing(number=7), existing(number=8)]
    with pytest.raises(SystemExit) as e:
        schedule.main(VERTEX + WEEKLY + ["--job", job])
    assert e.value.code == 2
    assert "2 schedules are named 'imat-weekly' in my-proj/us-central1" in one_error_line(capsys)
    assert vertex.created == vertex.updated == []
