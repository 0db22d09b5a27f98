"""Beam job: download iMaterialist image URLs into sharded gzip TFRecords, resumably.

Plan on the launching machine (stream the JSON, refuse bad records, cut shards), then a
Beam pipeline downloads every shard without a status file. Rerun the same command after a
crash or Ctrl-C: finished shards are kept and only the rest are fetched.

Run locally, with no binary downloaded by Beam (the FnApiRunner; threads inside each
worker already keep both cores busy):

  imat download --input train=train.json --input validation=validation.json \\
      --label_map label_map.csv --output /tmp/imat-data

or, as a module: ``python -m components.download.job --input ... --output ...``.

Run on Dataflow (the JSON may be on GCS; workers install this project with --setup_file):

  imat download --input train=gs://bucket/train.json --label_map gs://bucket/label_map.csv \\
      --output gs://bucket/imat-data --runner=DataflowRunner --project=my-project \\
      --region=us-central1 --temp_location=gs://bucket/tmp --setup_file=./setup.py \\
      --machine_type=n2-standard-8 --max_num_workers=20

Flags this job does not know are passed to Beam as pipeline options. Image URLs may only
reach public addresses unless --allow_private_networks (or --allow_network CIDR) says otherwise.
"""

import json
import logging
import shlex
import sys
import threading
import time
from collections import Counter
from typing import Dict, List, Optional

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
from components.download.shard import ShardSpec, download_shard, read_statuses, retry_shard
from imat_common.features import LabelMapError, load_label_map

log = logging.getLogger(__name__)
LOCAL_RUNNER_ARGS = ["--runner=FnApiRunner"]


class Interrupted(KeyboardInterrupt):
    """Ctrl-C during the download, with what the finished shards kept."""

    def __init__(self, out_dir: str, done: int, total: int, stored: int):
        super().__init__()
        self.out_dir, self.done, self.total, self.stored = out_dir, done, total, stored


class DownloadShardFn(beam.DoFn):
    """Downloads one shard (or retries its failures); counts every image's outcome in a Beam counter."""

    def __init__(self, fetch_settings: FetchSettings, image_settings: ImageSettings):
        self._fetch_settings = fetch_settings
        self._image_settings = image_settings
        self._counters: Dict[str, object] = {}
        self._bytes = Metrics.counter("imat_download", "bytes_stored")

    def _count(self, status: dict) -> None:
        name = status["status"]
        if name not in self._counters:
            self._counters[name] = Metrics.counter("imat_download", f"images_{name}")
        self._counters[name].inc()
        self._bytes.inc(status.get("stored_bytes", 0))

    def process(self, spec: ShardSpec):
        work = retry_shard if spec.retry else download_shard
        stats = work(spec, self._fetch_settings, self._image_settings, on_image=self._count)
        yield spec.split, dict(stats.counts)


class DownloadShards(beam.PTransform):
    """Downloads the given shards in parallel; outputs (split, counts by outcome) per shard."""

    def __init__(self, shards: List[ShardSpec], fetch_settings: FetchSettings, image_settings: ImageSettings):
        super().__init__()
        self._shards = shards
        self._fetch_settings = fetch_settings
        self._image_settings = image_settings

    def expand(self, pbegin):
        return (
            pbegin
            | "PendingShards" >> beam.Create(self._shards)
            # Spreads shards over workers; Create alone may keep them in one bundle.
            | "Spread" >> beam.Reshuffle()
            | "Download" >> beam.ParDo(DownloadShardFn(self._fetch_settings, self._image_settings))
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
    """Drops the traceback Beam logs for a Ctrl-C: the job reports it in one line."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.exc_info and _interrupted(record.exc_info[1]))


def run(argv: Optional[List[str]] = None, prog: Optional[str] = None) -> dict:
    """Plans, downloads what is missing, writes and returns the summary.

    Args:
      argv: the command line's flags; unknown ones go to Beam.
      prog: the command's name in ``--help``.

    Raises:
      options.UserError, ManifestError, LabelMapError, PlanMismatchError: bad input, one line each.
      Interrupted: Ctrl-C during the download; the finished shards are kept.
    """
    args, inputs, beam_args = options_lib.parse_args(argv, prog, description=__doc__)
    fetch_settings, image_settings = options_lib.settings_of(args)
    out = resume.normalise_path(args.output).rstrip("/")
    options_lib.check_paths(inputs, args.label_map, out)
    label_map = load_label_map(args.label_map) if args.label_map else None
    inputs = {split: resume.normalise_path(path) for split, path in inputs.items()}
    settings = options_lib.stored_settings(args)
    resuming = resume.check_settings(out, inputs, settings)
    resume.remove_stale_temp_files(out, list(inputs))
    plans = {
        split: plan_lib.plan_split(split, path, out, args.images_per_shard, label_map, write=not resuming)
        for split, path in inputs.items()
    }
    resume.check_or_save_plans(out, inputs, settings, plans, resuming)
    pending, to_fetch = resume.pending_shards(plans, args.retry_failed)
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
        try:
            with (
                _Progress(pending, args.progress_s),
                beam.Pipeline(options=PipelineOptions(beam_args or LOCAL_RUNNER_ARGS)) as p,
            ):
                _ = p | "DownloadShards" >> DownloadShards(pending, fetch_settings, image_settings)
        except BaseException as e:
            if _interrupted(e):
                raise Interrupted(out, *resume.kept_so_far(plans)) from None
            raise
        finally:
            beam_log.removeFilter(quiet)
    summary = summarise(out, plans, time.monotonic() - start, to_fetch)
    with FileSystems.create(plan_lib.join(out, "summary.json"), compression_type=CompressionTypes.UNCOMPRESSED) as f:
        f.write(json.dumps(summary, indent=2).encode("utf-8"))
    return summary


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
    """Runs the job from the command line: user errors are one line and exit 2, Ctrl-C exits 130."""
    argv = sys.argv[1:] if argv is None else list(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    resume_hint = f"rerun the same command to resume: {prog} {shlex.join(argv)}"
    try:
        summary = run(argv, prog)
    except (options_lib.UserError, ManifestError, LabelMapError, plan_lib.PlanMismatchError) as e:
        _fail(prog, str(e), 2)
    except (FileNotFoundError, NotADirectoryError, IsADirectoryError, PermissionError) as e:
        _fail(prog, f"{e.filename}: {e.strerror}", 2)
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
    main(prog="python -m components.download.job")
