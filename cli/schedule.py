"""``imat schedule``: start a compiled pipeline on Vertex AI Pipelines on a cron schedule (create or update).

  imat schedule --project P --region us-central1 --job build/imat.json --cron "0 3 * * 1" \\
      --display_name imat-weekly --service_account runner@P.iam.gserviceaccount.com
  imat schedule --project P --region us-central1 --job build/imat.json --cron "TZ=Europe/Paris 0 3 * * 1" \\
      --display_name imat-weekly --param train_steps=5000 --max_concurrent_runs 1 --dry_run

The cron expression has five fields (minute hour day-of-month month day-of-week; numbers, ranges,
lists, steps and *), in UTC unless prefixed with TZ=<IANA zone>. If the project and region hold a
schedule named --display_name, it is updated (its cron, its maximum of concurrent runs, and the job
it starts: this pipeline and these parameter values); otherwise one is created. ImportExampleGen
picks the newest span when each run starts, so one compiled job serves every week. --dry_run checks
everything and prints what would be scheduled, without a call. Credentials as for imat submit: only
from the environment (Application Default Credentials).
"""

import argparse
import json
import zoneinfo
from typing import Any, Dict, List, Optional, Tuple

from cli.submit import SubmitError, _runtime_settings, load_pipeline, parameter_types, parse_parameters
from imat_common.errors import user_error

# The five fields of a cron expression: name, lowest, highest (day of week 0 and 7 are Sunday).
CRON_FIELDS = (("minute", 0, 59), ("hour", 0, 23), ("day of month", 1, 31), ("month", 1, 12), ("day of week", 0, 7))
_TZ_PREFIXES = ("CRON_TZ=", "TZ=")
# Vertex AI's limit on a schedule's display name (aiplatform.utils.validate_display_name).
MAX_DISPLAY_NAME = 128


class CronError(ValueError):
    """A cron expression Vertex AI would refuse; the message names the field and why."""


def _is_number(text: str) -> bool:
    return text.isascii() and text.isdigit()


def _cron_number(text: str, item: str, name: str, low: int, high: int) -> int:
    if not text:
        raise CronError(f"{name} field {item!r}: a number is missing")
    if not _is_number(text):
        raise CronError(f"{name} field {item!r}: {text!r} is not a number (days and months are numbers too)")
    value = int(text)
    if not low <= value <= high:
        raise CronError(f"{name} field {item!r}: {value} is outside {low}-{high}")
    return value


def _check_cron_item(item: str, name: str, low: int, high: int) -> None:
    """One comma-separated item of a field: ``*``, ``N`` or ``N-M``, optionally ``/STEP`` after ``*`` or a range."""
    base, has_step, step = item.partition("/")
    if has_step:
        if not _is_number(step) or int(step) < 1:
            raise CronError(f"{name} field {item!r}: the step {step!r} is not a whole number >= 1")
        if base != "*" and "-" not in base:
            raise CronError(f"{name} field {item!r}: a step follows * or a range (e.g. {base}-{high}/{step})")
    if base == "*":
        return
    start, is_range, end = base.partition("-")
    first = _cron_number(start, item, name, low, high)
    if is_range and first > _cron_number(end, item, name, low, high):
        raise CronError(f"{name} field {item!r}: the range runs backwards")


def validate_cron(expression: str) -> str:
    """Checks a cron expression as Vertex AI schedules take it; returns it unchanged.

    Five fields separated by spaces (minute hour day-of-month month day-of-week), each ``*``, a
    number, a range ``N-M``, a step ``*/S`` or ``N-M/S``, or a comma-separated list of those; an
    optional first word ``TZ=<zone>`` or ``CRON_TZ=<zone>`` with an IANA time zone name.

    Raises:
      CronError: the first problem found, naming the field.
    """
    words = expression.split()
    if words and words[0].startswith(_TZ_PREFIXES):
        zone = words.pop(0).partition("=")[2]
        try:
            zoneinfo.ZoneInfo(zone)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            raise CronError(f"time zone {zone!r} is not an IANA time zone name (e.g. Europe/Paris)") from None
    if len(words) != len(CRON_FIELDS):
        raise CronError(
            f"expected {len(CRON_FIELDS)} fields ({', '.join(name for name, _, _ in CRON_FIELDS)}), got {len(words)}"
        )
    for field, (name, low, high) in zip(words, CRON_FIELDS):
        items = field.split(",")
        if "" in items:
            raise CronError(f"{name} field {field!r}: an empty item in the list")
        for item in items:
            _check_cron_item(item, name, low, high)
    return expression


def data_read(document: Dict[str, Any]) -> Tuple[Optional[int], Optional[int], str]:
    """What each run of the compiled job reads: (train spans, fixed span, data root).

    train spans is None for a job compiled without spans (every run reads the data root as it is
    then); fixed span is the span a job compiled with ``--span N`` reads on every run, else None.
    """
    tasks = document["pipelineSpec"]["root"].get("dag", {}).get("tasks", {})
    for task in tasks.values():
        parameters = task.get("inputs", {}).get("parameters", {})
        if "input_config" not in parameters or "input_base" not in parameters:
            continue
        constants = {name: p.get("runtimeValue", {}).get("constant") for name, p in parameters.items()}
        if "{SPAN}" not in str(constants.get("input_config")):
            return None, None, constants["input_base"]
        custom = json.loads(constants.get("custom_config") or "{}").get("custom_config", {}).get("value", {})
        static = json.loads(constants.get("range_config") or "{}").get("static_range")
        fixed = int(static["start_span_number"]) if static else None
        return int(custom.get("train_spans", 1)), fixed, constants["input_base"]
    return None, None, ""


def parse_args(argv: Optional[List[str]]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        allow_abbrev=False,
        prog="imat schedule",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--job", "--pipeline", dest="job", required=True, help="imat compile's .json")
    parser.add_argument("--cron", required=True, help='when runs start, e.g. "0 3 * * 1" (Mondays 03:00 UTC)')
    parser.add_argument(
        "--display_name", required=True, help="the schedule's name: one with this name is updated, else created"
    )
    parser.add_argument("--project", required=True, help="Google Cloud project")
    parser.add_argument("--region", required=True, help="Vertex AI region, e.g. us-central1")
    parser.add_argument("--service_account", help="the identity the runs use (an email)")
    parser.add_argument(
        "--max_concurrent_runs",
        type=int,
        default=1,
        help="runs the schedule may have going at once (default 1: a run due while one is going is skipped)",
    )
    parser.add_argument(
        "--param",
        "--parameter",
        dest="param",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help=f"a pipeline parameter for every run; repeat ({', '.join(_runtime_settings())})",
    )
    parser.add_argument("--dry_run", action="store_true", help="check and print what would be scheduled; call nothing")
    return parser.parse_args(argv)


def check(args: argparse.Namespace) -> Tuple[Dict[str, Any], Dict[str, Any]]:
    """Every offline check, before any call. Returns the compiled job and the typed parameter values."""
    try:
        validate_cron(args.cron)
    except CronError as e:
        raise SubmitError(f"--cron {args.cron!r}: {e}") from None
    if args.max_concurrent_runs < 1:
        raise SubmitError(f"--max_concurrent_runs {args.max_concurrent_runs}: must be 1 or more")
    if not args.display_name.strip() or len(args.display_name) > MAX_DISPLAY_NAME:
        raise SubmitError(f"--display_name {args.display_name!r}: 1 to {MAX_DISPLAY_NAME} characters")
    document = load_pipeline(args.job)
    if "pipelineSpec" not in document:
        raise SubmitError(f"{args.job} is a KFP pipeline spec: Vertex AI schedules take the .json from imat compile")
    root = document.get("runtimeConfig", {}).get("gcsOutputDirectory", "")
    if not root.startswith("gs://"):
        raise SubmitError(f"Vertex AI needs a gs:// pipeline root, got {root!r}: compile with one")
    _, fixed, _ = data_read(document)
    if fixed is not None:
        raise SubmitError(
            f"{args.job} reads span {fixed} on every run (compiled with --span {fixed}, a backfill): "
            "compile without --span so each run reads the newest span"
        )
    return document, parse_parameters(args.param, parameter_types(document))


def pipeline_name(document: Dict[str, Any]) -> str:
    return document.get("displayName") or document["pipelineSpec"]["pipelineInfo"]["name"]


def describe(args: argparse.Namespace, document: Dict[str, Any], parameters: Dict[str, Any]) -> List[str]:
    """The schedule, as --dry_run prints it (and the lines after a create or update)."""
    compiled = document.get("runtimeConfig", {}).get("parameterValues", {})
    values = ", ".join(
        f"{name}={value}" + (" (given)" if name in parameters else "")
        for name, value in sorted({**compiled, **parameters}.items())
    )
    spans, _, data = data_read(document)
    if spans is None:
        reads = f"{data} as it is when each run starts (compiled without spans)"
    else:
        reads = f"the newest span-N under {data} when each run starts, training on the newest {spans}"
    runs = f"{args.max_concurrent_runs} run{'s' if args.max_concurrent_runs > 1 else ''}"
    lines = [
        f"  cron: {args.cron} (at most {runs} at once)",
        f"  job: {args.job} (pipeline {pipeline_name(document)})",
        f"  data: {reads}",
        f"  parameters: {values}",
    ]
    if args.service_account:
        lines.append(f"  service account: {args.service_account}")
    return lines


def _filter_string(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def existing_schedule(aiplatform, args: argparse.Namespace):
    """The active or paused schedule named --display_name in the project and region, or None."""
    from google.cloud.aiplatform.compat.types import schedule as gca_schedule

    updatable = (gca_schedule.Schedule.State.ACTIVE, gca_schedule.Schedule.State.PAUSED)
    found = aiplatform.PipelineJobSchedule.list(
        filter=f"display_name={_filter_string(args.display_name)}", project=args.project, location=args.region
    )
    # The filter is the server's; the name, state and kind (a pipeline run) are checked here too.
    found = [
        s
        for s in found
        if s.display_name == args.display_name
        and s.gca_resource.state in updatable  # not s.state: that property fetches the schedule again
        and "create_pipeline_job_request" in s.gca_resource
    ]
    if len(found) > 1:
        raise SubmitError(
            f"{len(found)} schedules are named {args.display_name!r} in {args.project}/{args.region} "
            f"({', '.join(s.resource_name for s in found)}): delete all but one, or choose another --display_name"
        )
    return found[0] if found else None


def update(schedule, job, args: argparse.Namespace) -> None:
    """Replaces the schedule's cron, maximum of concurrent runs and job (spec and parameter values).

    The SDK's ``PipelineJobSchedule.update`` takes no job, so this sends the same UpdateSchedule
    call with the job request in the mask too. The job's other settings (network, labels, and the
    service account unless --service_account is given) stay as they were.
    """
    from google.protobuf import field_mask_pb2

    resource = schedule.gca_resource
    resource.cron = args.cron
    resource.max_concurrent_run_count = args.max_concurrent_runs
    pipeline_job = resource.create_pipeline_job_request.pipeline_job
    pipeline_job.pipeline_spec = job.pipeline_spec
    pipeline_job.runtime_config = job.runtime_config
    if args.service_account:
        pipeline_job.service_account = args.service_account
    schedule.api_client.update_schedule(
        schedule=resource,
        update_mask=field_mask_pb2.FieldMask(paths=["cron", "max_concurrent_run_count", "create_pipeline_job_request"]),
    )


def schedule_vertex(args: argparse.Namespace, document: Dict[str, Any], parameters: Dict[str, Any]):
    """Creates the schedule, or updates the one with the same display name. Returns (verb, schedule)."""
    from google.cloud import aiplatform

    # No credentials argument anywhere: the client library finds ADC in the environment.
    aiplatform.init(project=args.project, location=args.region)
    job = aiplatform.PipelineJob(
        display_name=pipeline_name(document),
        template_path=args.job,
        parameter_values=parameters,
        project=args.project,
        location=args.region,
    )
    schedule = existing_schedule(aiplatform, args)
    if schedule is not None:
        update(schedule, job, args)
        return "updated", schedule
    created = job.create_schedule(
        cron=args.cron,
        display_name=args.display_name,
        max_concurrent_run_count=args.max_concurrent_runs,
        service_account=args.service_account,
    )
    return "created", created


def main(argv: Optional[List[str]] = None):
    """Checks, then creates or updates the schedule (or with --dry_run prints it). Returns the schedule or None."""
    args = parse_args(argv)
    try:
        document, parameters = check(args)
        if args.dry_run:
            print(
                f"would create, or update if it exists, the schedule {args.display_name!r} "
                f"in {args.project}/{args.region}:"
            )
            print("\n".join(describe(args, document, parameters)))
            return None
        verb, schedule = schedule_vertex(args, document, parameters)
    except SubmitError as e:
        raise user_error("schedule", e) from None
    print(f"{verb} schedule {schedule.resource_name} ({args.display_name!r}):")
    print("\n".join(describe(args, document, parameters)))
    return schedule
