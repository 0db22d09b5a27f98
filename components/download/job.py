"""Beam job: download iMaterialist image URLs into sharded gzip TFRecords, resumably.

Plan on the launching machine (stream the JSON, refuse bad records, cut shards), then a
Beam pipeline downloads every shard without a status file. Rerun the same command after a
crash or Ctrl-C: finished shards are kept and only the rest are fetched.

Run locally, with no binary downloaded by Beam (the FnApiRunner; threads inside each
worker already keep both cores busy):

  imat download --input train=train.json --input validation=validation.json \\
      --label_map label_map.csv --output /tmp/imat-data

or, as a module: ``python -m components.download.job --input ... --output ...``.

New data in weekly batches: each batch into its own span folder, /tmp/imat-data/span-3/<split>/
(no zero padding), the layout the pipeline reads its newest span from:

  imat download --input train=week3/train.json --input validation=week3/validation.json \\
      --label_map label_map.csv --output /tmp/imat-data --span 3

Run on Dataflow (the JSON may be on GCS; workers install this project with --setup_file):

  imat download --input train=gs://bucket/train.json --label_map gs://bucket/label_map.csv \\
      --output gs://bucket/imat-data --runner=DataflowRunner --project=my-project \\
      --region=us-central1 --temp_location=gs://bucket/tmp --setup_file=./setup.py \\
      --machine_type=n2-standard-8 --max_num_workers=20

Flags this job does not know are passed to Beam as pipeline options. Image URLs may only
reach public addresses unless --allow_private_networks (or --allow_network CIDR) says otherwise.
"""

import errno
import json
import logging
import re
import shlex
import sys
import threading
import time
from collections import Counter
from typing import Dict, List, Optional, Tuple

import apache_beam as beam
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems
from apache_beam.metrics import Metrics
from apache_beam.options.pipeline_options import PipelineOptions

from components.download import options as options_lib
from components.download import plan as plan_lib
from components.download import resume
from components.download.fetch import FetchSettings
from components.download.images import ImageSettings
from components.download.records import ManifestError
from components.download.shard import ShardSpec, committed_this_run, download_shard, read_statuses, retry_shard
from components.download.tfrecord import DEFAULT_GZIP_LEVEL
from imat_common import process_gc
from imat_common.features import LabelMapError, load_label_map

log = logging.getLogger(__name__)
LOCAL_RUNNER_ARGS = ["--runner=FnApiRunner"]


class Interrupted(KeyboardInterrupt):
    """Ctrl-C during the download, with what the finished shards kept."""

    def __init__(self, out_dir: str, done: int, total: int, stored: int):
        super().__init__()
        self.out_dir, self.done, self.total, self.stored = out_dir, done, total, stored


class OutputError(RuntimeError):
    """The output folder's file system refused a read or write: read-only, full, over quota, no access...

    ``str()`` is one line naming the path and what to do; ``resumable`` says whether the folder
    already holds a plan that a rerun resumes, and ``kept`` what the finished shards hold.
    """

    def __init__(self, message: str, resumable: bool, kept: str = ""):
        super().__init__(message)
        self.resumable, self.kept = resumable, kept


class TooFewStored(RuntimeError):
    """A split stored less than ``--min_stored_fraction`` of its records; carries the summary."""

    def __init__(self, message: str, summary: dict):
        super().__init__(message)
        self.summary = summary


# Exit codes besides argparse's 2 (bad input) and 130 (Ctrl-C): sysexits' EX_IOERR for an output
# that cannot be written, and 3 for a run that ended but stored too little to train on.
EXIT_OUTPUT_ERROR = 74
EXIT_TOO_FEW_STORED = 3

# What the user can do about an output file system's refusal, by errno.
_OUTPUT_ADVICE = {
    errno.ENOSPC: ("no space left on the device", "free space there or choose an --output with room"),
    errno.EDQUOT: ("disk quota exceeded", "free space or raise the quota, or choose another --output"),
    errno.EROFS: ("read-only file system", "make it writable or choose another --output"),
    errno.EACCES: ("permission denied", "give this user write access or choose another --output"),
    errno.EPERM: ("operation not permitted", "give this user write access or choose another --output"),
    errno.EFBIG: ("file too large for the file system", "choose an --output on another file system"),
    errno.EIO: ("I/O error", "check the device or the remote file system, then"),
}
# Errnos that only a write can meet: whatever the path, the output is at fault (inputs are only read).
_WRITE_ERRNOS = (errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EFBIG)
# Beam runs the DoFn in its worker and re-raises its failure as a RuntimeError carrying only the text.
_ERRNO_IN_TEXT = re.compile(r"\[Errno (\d+)\] ([^:\[\]\n]+)(?::\s*'([^'\n]*)')?")


def find_os_error(error: Optional[BaseException]) -> Optional[Tuple[Optional[int], str, Optional[str]]]:
    """(errno, message, file name) of the OSError at the root of ``error``; None when there is none.

    Looks through the exception's cause and context, the exceptions it wraps (Beam's ``IOError(err)``
    and ``BeamIOError.exception_details``) and, for the ``RuntimeError`` Beam raises for a worker's
    failure, the ``[Errno N] text: 'path'`` in its message.
    """
    todo, seen, errnoless = [error], set(), None
    while todo:
        e = todo.pop(0)
        if e is None or id(e) in seen:
            continue
        seen.add(id(e))
        if isinstance(e, OSError) and e.errno is not None:
            return e.errno, e.strerror or str(e), e.filename
        details = getattr(e, "exception_details", None)
        todo += [e.__cause__, e.__context__] + [a for a in getattr(e, "args", ()) if isinstance(a, BaseException)]
        todo += list(details.values()) if isinstance(details, dict) else []
        match = _ERRNO_IN_TEXT.search(str(e))
        if match:
            return int(match.group(1)), match.group(2).strip(), match.group(3)
        if isinstance(e, OSError) and errnoless is None and not isinstance(e, KeyboardInterrupt):
            errnoless = (None, str(e).splitlines()[0] if str(e) else type(e).__name__, None)
    return errnoless


def _output_error(error: BaseException, out: str, plans: Dict[str, plan_lib.SplitPlan], in_pipeline: bool):
    """The OutputError for ``error`` when the output folder's file system is at fault; None otherwise."""
    found = find_os_error(error)
    if found is None:
        return None
    code, message, filename = found
    on_output = code in _WRITE_ERRNOS or (filename or "").startswith(out) or in_pipeline
    if not on_output:
        return None  # an input that cannot be read: the caller's one line names it
    what, advice = _OUTPUT_ADVICE.get(code, (message, "check the output's file system (mounted, reachable, allowed)"))
    try:  # the folder may be unreadable too: then say nothing of what it holds
        resumable = resume.has_plan(out)
        done, total, stored = resume.kept_so_far(plans) if plans else (0, 0, 0)
        kept = f"{done} of {total} shards are finished and kept in {out} ({stored} images stored)" if done else ""
    except Exception:  # a second failure of the same file system
        resumable, kept = False, ""
    return OutputError(f"{filename or out}: {what}: {advice}", resumable, kept)


class DownloadShardFn(beam.DoFn):
    """Downloads one shard (or retries its failures); counts every image's outcome in a Beam counter."""

    def __init__(
        self, fetch_settings: FetchSettings, image_settings: ImageSettings, gzip_level: int = DEFAULT_GZIP_LEVEL
    ):
        self._fetch_settings = fetch_settings
        self._image_settings = image_settings
        self._gzip_level = gzip_level
        self._counters: Dict[str, object] = {}
        self._bytes = Metrics.counter("imat_download", "bytes_stored")

    def _count(self, status: dict) -> None:
        name = status["status"]
        if name not in self._counters:
            self._counters[name] = Metrics.counter("imat_download", f"images_{name}")
        self._counters[name].inc()
        self._bytes.inc(status.get("stored_bytes", 0))

    def process(self, spec: ShardSpec):
        if committed_this_run(spec):  # Beam retries a bundle: its finished shards are not fetched again
            log.info("%s shard %d/%d: already done in this run", spec.split, spec.index + 1, spec.num_shards)
            return
        work = retry_shard if spec.retry else download_shard
        stats = work(spec, self._fetch_settings, self._image_settings, self._count, self._gzip_level)
        yield spec.split, dict(stats.counts)


class DownloadShards(beam.PTransform):
    """Downloads the given shards in parallel; outputs (split, counts by outcome) per shard."""

    def __init__(
        self,
        shards: List[ShardSpec],
        fetch_settings: FetchSettings,
        image_settings: ImageSettings,
        gzip_level: int = DEFAULT_GZIP_LEVEL,
    ):
        super().__init__()
        self._shards = shards
        self._fetch_settings = fetch_settings
        self._image_settings = image_settings
        self._gzip_level = gzip_level

    def expand(self, pbegin):
        return (
            pbegin
            # Create's own reshuffle is off: the one below spreads the shards over workers, and
            # each reshuffle costs the local runner a stage (about 0.05 s).
            | "PendingShards" >> beam.Create(self._shards, reshuffle=False)
            | "Spread" >> beam.Reshuffle()
            | "Download" >> beam.ParDo(DownloadShardFn(self._fetch_settings, self._image_settings, self._gzip_level))
        )


def summarise(out_dir: str, plans: Dict[str, plan_lib.SplitPlan], seconds: float, fetched_images: int) -> dict:
    """Reads every status file back and counts outcomes per split."""
    summary = {
        "output": out_dir,
        "splits": {},
        "seconds": round(seconds, 1),
        "images_fetched_this_run": fetched_images,
        "images_per_second": round(fetched_images / seconds, 1) if seconds > 0 else 0.0,
    }
    for name, p in plans.items():
        counts, downloaded, stored = Counter(), 0, 0
        for spec in p.shards:
            for status in read_statuses(spec.status_path):
                counts[status["status"]] += 1
                downloaded += status["bytes"]
                stored += status.get("stored_bytes", 0)
        for rejected in p.rejected:
            counts[rejected["status"]] += 1
        summary["splits"][name] = {
            "source": p.source,
            "shards": len(p.shards),
            "records": sum(counts.values()),
            "ok": counts["ok"],
            "outcomes": dict(sorted(counts.items())),
            "bytes_downloaded": downloaded,
            "bytes_stored": stored,
        }
    return summary


class _Progress:
    """Logs finished shards and the image rate while the pipeline runs (reads status files)."""

    def __init__(self, shards: List[ShardSpec], every_s: float):
        # Shards being retried already have a status file: only fresh ones show progress that way.
        self._shards, self._every_s = [s for s in shards if not s.retry], every_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="imat-progress", daemon=True)

    def _loop(self):
        start = time.monotonic()
        while not self._stop.wait(self._every_s):
            done = sum(FileSystems.exists(s.status_path) for s in self._shards)
            log.info("progress: %d/%d shards done after %.0f s", done, len(self._shards), time.monotonic() - start)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()


def _interrupted(error: Optional[BaseException]) -> bool:
    """Whether ``error`` is, or was raised while handling, a Ctrl-C (Beam re-raises it as a RuntimeError)."""
    seen = set()
    while error is not None and id(error) not in seen:
        if isinstance(error, KeyboardInterrupt):
            return True
        seen.add(id(error))
        error = error.__cause__ or error.__context__
    return False


class _NoInterruptTraceback(logging.Filter):
    """Drops the traceback Beam logs for a Ctrl-C or a file system error: the job reports each in one line."""

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        return not (error is not None and (_interrupted(error) or find_os_error(error) is not None))


def run(argv: Optional[List[str]] = None, prog: Optional[str] = None) -> dict:
    """Plans, downloads what is missing, writes and returns the summary.

    Args:
      argv: the command line's flags; unknown ones go to Beam.
      prog: the command's name in ``--help``.

    Raises:
      options.UserError, ManifestError, LabelMapError, PlanMismatchError: bad input, one line each.
      Interrupted: Ctrl-C during the download; the finished shards are kept.
      OutputError: the output's file system refused a write (read-only, full, quota, access...).
      TooFewStored: a split stored less than ``--min_stored_fraction`` of its records (after the summary is written).
    """
    args, inputs, beam_args = options_lib.parse_args(argv, prog, description=__doc__)
    fetch_settings, image_settings = options_lib.settings_of(args)
    output = resume.normalise_path(args.output).rstrip("/")
    options_lib.check_paths(inputs, args.label_map, output, args.span)
    # With --span N everything the job writes, plan record included, lives in span-N: each span
    # resumes on its own and never touches another span's folder.
    out = options_lib.output_dir(output, args.span)
    label_map = load_label_map(args.label_map) if args.label_map else None
    inputs = {split: resume.normalise_path(path) for split, path in inputs.items()}
    plans: Dict[str, plan_lib.SplitPlan] = {}
    stage = {"in_pipeline": False}
    try:
        summary = _download(args, inputs, beam_args, fetch_settings, image_settings, out, label_map, plans, stage)
    except (OSError, RuntimeError) as e:
        failure = _output_error(e, out, plans, stage["in_pipeline"])
        if failure is None:
            raise
        raise failure from None
    short = too_few_stored(summary, args.min_stored_fraction)
    if short:
        raise TooFewStored(short, summary)
    return summary


def _download(args, inputs, beam_args, fetch_settings, image_settings, out, label_map, plans, stage) -> dict:
    """``run``'s work once the flags are read: plan (filling ``plans``), download, summarise."""
    settings = options_lib.stored_settings(args)
    resuming = resume.check_settings(out, inputs, settings)
    resume.remove_stale_temp_files(out, list(inputs))
    for split, path in inputs.items():
        plans[split] = plan_lib.plan_split(split, path, out, args.images_per_shard, label_map, write=False)
    if resuming:
        resume.check_or_save_plans(out, inputs, settings, plans, resuming)
    pending, to_fetch = resume.pending_shards(plans, args.retry_failed)
    try:
        # Every run writes the plans of the shards it fetches, from the input JSON: the plans hold
        # the URLs as given, secrets included, so none outlives its run (plan.py).
        plan_lib.write_plans(plans, pending)
        for p in plans.values():
            p.texts = []  # held no longer than needed: at competition scale, hundreds of MB
        if not resuming:
            resume.check_or_save_plans(out, inputs, settings, plans, resuming)
        summary = _fetch(
            args, beam_args, fetch_settings, image_settings, out, plans, stage, pending, to_fetch, resuming
        )
    except BaseException:
        try:  # a failed or interrupted run leaves no plan behind either; the rerun writes them again
            plan_lib.remove_plans(out, list(inputs))
        except Exception as e:  # the output's file system failing again: the first error is the one to report
            log.warning("%s: could not delete the shard plans (%s); the next run into it deletes them", out, e)
        raise
    # A shard deletes its plan once its status file is in place: this removes any that a shard
    # stopped between the two left behind.
    plan_lib.remove_plans(out, list(inputs))
    return summary


def _fetch(args, beam_args, fetch_settings, image_settings, out, plans, stage, pending, to_fetch, resuming) -> dict:
    """Downloads the pending shards (their plans written), then writes and returns the summary."""
    total = sum(len(p.shards) for p in plans.values())
    log.info(
        "%s: %d of %d shards to download (%d images)%s",
        out,
        len(pending),
        total,
        to_fetch,
        " (resuming: the others are done)" if resuming and len(pending) < total else "",
    )
    start = time.monotonic()
    if pending:
        quiet, beam_log = _NoInterruptTraceback(), logging.getLogger("apache_beam.runners.common")
        beam_log.addFilter(quiet)
        # Left in place: asyncio reports a fetch task stopped by Ctrl-C ("Task exception was never
        # retrieved", with its traceback) when the task is collected, after this function returns.
        logging.getLogger("asyncio").addFilter(quiet)
        stage["in_pipeline"] = True
        try:
            with (
                _Progress(pending, args.progress_s),
                beam.Pipeline(options=PipelineOptions(beam_args or LOCAL_RUNNER_ARGS)) as p,
            ):
                _ = p | "DownloadShards" >> DownloadShards(pending, fetch_settings, image_settings, args.gzip_level)
        except BaseException as e:
            if _interrupted(e):
                raise Interrupted(out, *resume.kept_so_far(plans)) from None
            raise
        finally:
            beam_log.removeFilter(quiet)
        stage["in_pipeline"] = False
    summary = summarise(out, plans, time.monotonic() - start, to_fetch)
    with FileSystems.create(plan_lib.join(out, "summary.json"), compression_type=CompressionTypes.UNCOMPRESSED) as f:
        f.write(json.dumps(summary, indent=2).encode("utf-8"))
    return summary


# What to do when most of a split ends in one outcome; the status files give each image's reason.
_OUTCOME_ADVICE = {
    "blocked_address": "the URLs reach loopback, private or link-local addresses, which the guard refuses: "
    "if you trust them (the demo, tests, an intranet), rerun with --allow_private_networks or --allow_network CIDR",
    "timeout": "the servers did not answer in time: check the network or proxy, then rerun with --retry_failed "
    "(raise --deadline_s for slow hosts)",
    "connection_error": "the servers could not be reached: check the network, DNS or proxy, then rerun "
    "with --retry_failed",
    "http_error": "the servers refused the requests (the HTTP codes are in the status files): 429 and 5xx may pass "
    "later with --retry_failed; 403, 404 and 410 mean the links are dead",
    "not_image": "the URLs answer with something other than images (a login or error page?)",
    "opted_out": "the servers opt out of AI training (X-Robots-Tag); --ignore_opt_out only where you have the right",
    "too_large": "the images are over --max_bytes",
    "too_many_pixels": "the images are over --max_pixels",
    "bad_url": "the JSON's URLs are not http(s)",
    "unknown_label": "the JSON's label ids are not in --label_map: is it the label map of this competition?",
    "duplicate_id": "the JSON repeats image ids",
}


def too_few_stored(summary: dict, min_fraction: float) -> str:
    """One line on the splits that stored less than ``min_fraction`` of their records; '' when none did."""
    short = []
    for name, s in summary["splits"].items():
        # Nothing stored fails too, unless the check is off (0): a split of one dead link is still nothing.
        if s["records"] and s["ok"] >= min_fraction * s["records"] and (s["ok"] or not min_fraction):
            continue
        failures = {k: v for k, v in s["outcomes"].items() if k != "ok"}
        dominant = max(sorted(failures), key=failures.get) if failures else ""
        short.append((name, s, dominant))
    if not short:
        return ""
    parts = [
        f"{name}: {s['ok']} of {s['records']} images stored"
        + (f", {s['outcomes'][dominant]} ended in {dominant}" if dominant else "")
        for name, s, dominant in short
    ]
    dominant = short[0][2]
    advice = _OUTCOME_ADVICE.get(dominant, "see each image's reason in the status files")
    return (
        f"{'; '.join(parts)} (less than --min_stored_fraction {min_fraction:g}): {advice}; "
        f"details: {summary['output']}/_status/<split>/"
    )


def format_summary(summary: dict) -> str:
    """A few human lines of the summary."""
    lines = [
        f"Downloaded into {summary['output']} in {summary['seconds']} s: "
        f"{summary['images_fetched_this_run']} images fetched this run, {summary['images_per_second']} images/s"
    ]
    for name, s in summary["splits"].items():
        failures = {k: v for k, v in s["outcomes"].items() if k != "ok"}
        lines.append(
            f"  {name}: {s['ok']}/{s['records']} ok in {s['shards']} shards, "
            f"{s['bytes_stored'] / 1e6:.1f} MB stored; not stored: {failures or 'none'}"
        )
    return "\n".join(lines)


def _fail(prog: str, message: str, code: int) -> None:
    print(f"{prog}: error: {message}", file=sys.stderr)
    sys.exit(code)


def main(argv: Optional[List[str]] = None, prog: str = "imat download") -> None:
    """Runs the job from the command line; every failure a user can act on is one line on stderr.

    Exit codes: 2 bad input or flags, 3 a split stored too little (``--min_stored_fraction``),
    74 the output's file system refused a write, 130 Ctrl-C. The last two name the rerun that resumes.
    """
    argv = sys.argv[1:] if argv is None else list(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    resume_hint = f"rerun the same command to resume: {prog} {shlex.join(argv)}"
    try:
        summary = run(argv, prog)
    except (options_lib.UserError, ManifestError, LabelMapError, plan_lib.PlanMismatchError) as e:
        _fail(prog, str(e), 2)
    except (FileNotFoundError, NotADirectoryError, IsADirectoryError, PermissionError) as e:
        _fail(prog, f"{e.filename}: {e.strerror}", 2)
    except OutputError as e:
        then = resume_hint if e.resumable else f"then rerun the same command: {prog} {shlex.join(argv)}"
        _fail(prog, f"{e}; {e.kept + '; ' if e.kept else ''}{then}", EXIT_OUTPUT_ERROR)
    except TooFewStored as e:
        print(format_summary(e.summary))
        _fail(prog, str(e), EXIT_TOO_FEW_STORED)
    except Interrupted as e:
        _fail(
            prog,
            f"interrupted: {e.done} of {e.total} shards are finished and kept in {e.out_dir} "
            f"({e.stored} images stored); {resume_hint}",
            130,
        )
    except KeyboardInterrupt:
        _fail(prog, f"interrupted; {resume_hint}", 130)
    else:
        print(format_summary(summary))


if __name__ == "__main__":
    # This process runs the job alone: the objects its imports made are kept out of the collector's walks.
    process_gc.set_aside_import_objects()
    main(prog="python -m components.download.job")
