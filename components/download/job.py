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

Flags this job does not know are passed to Beam as pipeline options.
"""
import argparse
import dataclasses
import json
import logging
import threading
import time
from collections import Counter
from typing import Dict, List, Optional

import apache_beam as beam
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems
from apache_beam.metrics import Metrics
from apache_beam.options.pipeline_options import PipelineOptions

from components.download import plan as plan_lib
from components.download.fetch import DEFAULT_USER_AGENT, FetchSettings
from components.download.images import ImageSettings
from components.download.shard import ShardSpec, download_shard
from trainer.features import load_label_map

log = logging.getLogger(__name__)
LOCAL_RUNNER_ARGS = ["--runner=FnApiRunner"]


class DownloadShardFn(beam.DoFn):
    """Downloads one shard; counts every image's outcome in a Beam counter."""

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
        stats = download_shard(spec, self._fetch_settings, self._image_settings, on_image=self._count)
        yield spec.split, dict(stats.counts)


class DownloadShards(beam.PTransform):
    """Downloads the given shards in parallel; outputs (split, counts by outcome) per shard."""

    def __init__(self, shards: List[ShardSpec], fetch_settings: FetchSettings, image_settings: ImageSettings):
        super().__init__()
        self._shards = shards
        self._fetch_settings = fetch_settings
        self._image_settings = image_settings

    def expand(self, pbegin):
        return (pbegin
                | "PendingShards" >> beam.Create(self._shards)
                # Spreads shards over workers; Create alone may keep them in one bundle.
                | "Spread" >> beam.Reshuffle()
                | "Download" >> beam.ParDo(DownloadShardFn(self._fetch_settings, self._image_settings)))


def summarise(out_dir: str, plans: Dict[str, plan_lib.SplitPlan], seconds: float, fetched_images: int) -> dict:
    """Reads every status file back and counts outcomes per split."""
    summary = {"output": out_dir, "splits": {}, "seconds": round(seconds, 1), "images_fetched_this_run": fetched_images,
               "images_per_second": round(fetched_images / seconds, 1) if seconds > 0 else 0.0}
    for name, p in plans.items():
        counts, downloaded, stored = Counter(), 0, 0
        for spec in p.shards:
            with FileSystems.open(spec.status_path, compression_type=CompressionTypes.UNCOMPRESSED) as f:
                for line in f.read().decode("utf-8").splitlines():
                    status = json.loads(line)
                    counts[status["status"]] += 1
                    downloaded += status["bytes"]
                    stored += status.get("stored_bytes", 0)
        for rejected in p.rejected:
            counts[rejected["status"]] += 1
        summary["splits"][name] = {"source": p.source, "shards": len(p.shards), "records": sum(counts.values()),
                                   "ok": counts["ok"], "outcomes": dict(sorted(counts.items())),
                                   "bytes_downloaded": downloaded, "bytes_stored": stored}
    return summary


class _Progress:
    """Logs finished shards and the image rate while the pipeline runs (reads status files)."""

    def __init__(self, shards: List[ShardSpec], every_s: float):
        self._shards, self._every_s = shards, every_s
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


def parse_args(argv: Optional[List[str]]):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--input", action="append", required=True, metavar="SPLIT=PATH",
                        help="a split's competition JSON, e.g. train=train.json; repeat per split")
    parser.add_argument("--output", required=True, help="output folder (local or gs://)")
    parser.add_argument("--label_map", help="label_map.csv; labels it does not list are refused and counted")
    parser.add_argument("--images_per_shard", type=int, default=1000)
    parser.add_argument("--max_size", type=int, default=ImageSettings.max_size,
                        help="longer side of stored images, in pixels (never upscaled)")
    parser.add_argument("--jpeg_quality", type=int, default=ImageSettings.jpeg_quality)
    parser.add_argument("--keep_original", action="store_true", help="store fetched JPEGs unchanged")
    parser.add_argument("--max_pixels", type=int, default=ImageSettings.max_pixels)
    parser.add_argument("--deadline_s", type=float, default=FetchSettings.deadline_s)
    parser.add_argument("--attempt_timeout_s", type=float, default=FetchSettings.attempt_timeout_s)
    parser.add_argument("--max_bytes", type=int, default=FetchSettings.max_bytes)
    parser.add_argument("--max_redirects", type=int, default=FetchSettings.max_redirects)
    parser.add_argument("--retries", type=int, default=FetchSettings.retries)
    parser.add_argument("--backoff_s", type=float, default=FetchSettings.backoff_s)
    parser.add_argument("--concurrency", type=int, default=FetchSettings.concurrency,
                        help="requests in flight per worker process")
    parser.add_argument("--per_host", type=int, default=FetchSettings.per_host,
                        help="requests in flight per host per worker process")
    parser.add_argument("--user_agent", default=DEFAULT_USER_AGENT)
    parser.add_argument("--ignore_opt_out", action="store_true",
                        help="fetch images whose server says X-Robots-Tag: noai or noimageai")
    parser.add_argument("--progress_s", type=float, default=10.0, help="seconds between progress lines")
    args, beam_args = parser.parse_known_args(argv)
    inputs = {}
    for item in args.input:
        split, sep, path = item.partition("=")
        if not sep or not split or not path:
            parser.error(f"--input takes SPLIT=PATH, got {item!r}")
        if split in inputs:
            parser.error(f"--input names split {split!r} twice")
        inputs[split] = path
    if args.images_per_shard < 1:
        parser.error("--images_per_shard must be at least 1")
    return args, inputs, beam_args


def run(argv: Optional[List[str]] = None) -> dict:
    """Plans, downloads what is missing, writes and returns the summary."""
    args, inputs, beam_args = parse_args(argv)
    image_settings = ImageSettings(max_size=args.max_size, jpeg_quality=args.jpeg_quality,
                                   keep_original=args.keep_original, max_pixels=args.max_pixels)
    fetch_settings = FetchSettings(
        deadline_s=args.deadline_s, attempt_timeout_s=args.attempt_timeout_s, max_bytes=args.max_bytes,
        max_redirects=args.max_redirects, retries=args.retries, backoff_s=args.backoff_s,
        concurrency=args.concurrency, per_host=args.per_host, user_agent=args.user_agent,
        respect_opt_out=not args.ignore_opt_out)
    label_map = load_label_map(args.label_map) if args.label_map else None
    out = args.output.rstrip("/")
    resuming = FileSystems.exists(plan_lib.join(out, "_plan", "plan.json"))
    plans = {split: plan_lib.plan_split(split, path, out, args.images_per_shard, label_map, write=not resuming)
             for split, path in inputs.items()}
    settings = {"images_per_shard": args.images_per_shard, "image": dataclasses.asdict(image_settings),
                "label_map": args.label_map or ""}
    plan_lib.save_or_check_plan(out, plans, settings)
    pending = plan_lib.pending_shards(plans)
    total = sum(len(p.shards) for p in plans.values())
    log.info("%s: %d of %d shards to download%s", out, len(pending), total,
             " (resuming: the others are done)" if resuming and len(pending) < total else "")
    start = time.monotonic()
    if pending:
        options = PipelineOptions(beam_args or LOCAL_RUNNER_ARGS)
        with _Progress(pending, args.progress_s), beam.Pipeline(options=options) as p:
            _ = p | "DownloadShards" >> DownloadShards(pending, fetch_settings, image_settings)
    fetched = sum(s.num_images for s in pending)
    summary = summarise(out, plans, time.monotonic() - start, fetched)
    with FileSystems.create(plan_lib.join(out, "summary.json"), compression_type=CompressionTypes.UNCOMPRESSED) as f:
        f.write(json.dumps(summary, indent=2).encode("utf-8"))
    return summary


def format_summary(summary: dict) -> str:
    """A few human lines of the summary."""
    lines = [f"Downloaded into {summary['output']} in {summary['seconds']} s: "
             f"{summary['images_fetched_this_run']} images fetched this run, {summary['images_per_second']} images/s"]
    for name, s in summary["splits"].items():
        failures = {k: v for k, v in s["outcomes"].items() if k != "ok"}
        lines.append(f"  {name}: {s['ok']}/{s['records']} ok in {s['shards']} shards, "
                     f"{s['bytes_stored'] / 1e6:.1f} MB stored; not stored: {failures or 'none'}")
    return "\n".join(lines)


def main(argv: Optional[List[str]] = None) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    print(format_summary(run(argv)))


if __name__ == "__main__":
    main()
