"""Downloads one shard of the plan into a gzip TFRecord file and a status file.

A shard is the unit of resumption. Its TFRecord file is written under a temporary name
and renamed into place, then its status file is renamed into place; the status file is the
shard's "done" marker. A rerun skips shards with a status file and redoes the rest, so
nothing good is lost and nothing is written twice, even if a crash or Beam's retry of a
bundle interrupts a shard half way.
"""
import asyncio
import concurrent.futures
import dataclasses
import hashlib
import json
import logging
import os
import threading
import time
import uuid
from collections import Counter
from typing import Callable, Dict, List, Optional
from urllib.parse import urlsplit

from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems

from components.download import fetch as fetch_lib
from components.download.images import ImageError, ImageSettings, process_image
from components.download.records import ImageRecord
from components.download.tfrecord import frame_record, serialize_example
from trainer import features

log = logging.getLogger(__name__)

# Pillow releases the GIL while decoding, resizing and encoding, so threads use every core.
_CPU_POOL: Optional[concurrent.futures.ThreadPoolExecutor] = None
_CPU_POOL_LOCK = threading.Lock()


def _cpu_pool() -> concurrent.futures.ThreadPoolExecutor:
    global _CPU_POOL
    with _CPU_POOL_LOCK:
        if _CPU_POOL is None:
            _CPU_POOL = concurrent.futures.ThreadPoolExecutor(max_workers=os.cpu_count() or 2,
                                                              thread_name_prefix="imat-image")
        return _CPU_POOL


@dataclasses.dataclass(frozen=True)
class ShardSpec:
    split: str
    index: int
    num_shards: int
    plan_path: str  # JSON lines: {"id", "urls", "labels"}
    output_path: str  # gzip TFRecord
    status_path: str  # JSON lines, one per image; its presence marks the shard done
    num_images: int = 0


@dataclasses.dataclass
class ShardStats:
    counts: Counter = dataclasses.field(default_factory=Counter)
    bytes_downloaded: int = 0
    bytes_stored: int = 0
    seconds: float = 0.0


def read_plan(path: str) -> List[ImageRecord]:
    with FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED) as f:
        return [ImageRecord(d["id"], tuple(d["urls"]), tuple(d["labels"]))
                for d in (json.loads(line) for line in f.read().decode("utf-8").splitlines() if line)]


def to_example(record: ImageRecord, jpeg: bytes, width: int, height: int, url: str) -> bytes:
    return serialize_example({
        features.IMAGE_ID_KEY: record.image_id.encode("utf-8"),
        features.IMAGE_KEY: jpeg,
        features.HEIGHT_KEY: height,
        features.WIDTH_KEY: width,
        features.SHA256_KEY: hashlib.sha256(jpeg).hexdigest().encode("ascii"),
        features.URL_KEY: url.encode("utf-8"),
        features.LABELS_KEY: list(record.labels),
    })


class _Limiter:
    """Bounds requests in flight per worker and per host before an image's deadline starts."""

    def __init__(self, settings: fetch_lib.FetchSettings):
        self._all = asyncio.Semaphore(settings.concurrency)
        self._per_host: Dict[str, asyncio.Semaphore] = {}
        self._per_host_limit = settings.per_host

    def host(self, url: str) -> asyncio.Semaphore:
        netloc = urlsplit(url).netloc.lower()
        if netloc not in self._per_host:
            self._per_host[netloc] = asyncio.Semaphore(self._per_host_limit)
        return self._per_host[netloc]


async def _download_one(session, limiter: _Limiter, record: ImageRecord, fetch_settings, image_settings):
    """Returns (status dict, serialized example or None)."""
    loop = asyncio.get_running_loop()
    result = None
    async with limiter._all:
        for url in record.urls:  # later URLs are fallbacks for earlier ones
            async with limiter.host(url):
                result = await fetch_lib.fetch(session, url, fetch_settings)
            if result.status == "ok":
                break
    status = {"image_id": record.image_id, "url": result.final_url or record.urls[-1], "labels": list(record.labels),
              "status": result.status, "reason": result.reason, "http_status": result.http_status,
              "attempts": result.attempts, "bytes": len(result.body)}
    if result.status != "ok":
        return status, None
    try:
        stored = await loop.run_in_executor(_cpu_pool(), process_image, result.body, image_settings)
    except ImageError as e:
        status.update(status=e.status, reason=str(e))
        return status, None
    example = to_example(record, stored.jpeg, stored.width, stored.height, result.final_url)
    status.update(stored_bytes=len(stored.jpeg), width=stored.width, height=stored.height)
    return status, example


def _temp_path(path: str) -> str:
    head, tail = path.rsplit("/", 1)
    return f"{head}/.tmp-{uuid.uuid4().hex[:8]}-{tail}"


def download_shard(spec: ShardSpec, fetch_settings: fetch_lib.FetchSettings, image_settings: ImageSettings,
                   on_image: Optional[Callable[[dict], None]] = None, progress_every_s: float = 10.0) -> ShardStats:
    """Downloads every image of a shard and writes the shard's files.

    Args:
      spec: which shard, and where its plan and outputs live.
      fetch_settings: HTTP limits and retry policy.
      image_settings: resize, quality and safety limits.
      on_image: called with each image's status dict (e.g. to count outcomes).
      progress_every_s: how often to log progress.

    Returns:
      Counts by outcome, bytes and time for this shard.
    """
    records = read_plan(spec.plan_path)
    stats = ShardStats()
    start = time.monotonic()
    statuses: List[dict] = []
    tmp_output = _temp_path(spec.output_path)

    async def run(out):
        limiter = _Limiter(fetch_settings)
        last_log = time.monotonic()
        async with fetch_lib.make_session(fetch_settings) as session:
            tasks = [asyncio.ensure_future(_download_one(session, limiter, r, fetch_settings, image_settings))
                     for r in records]
            for done in asyncio.as_completed(tasks):
                status, example = await done
                if example is not None:
                    out.write(frame_record(example))
                statuses.append(status)
                stats.counts[status["status"]] += 1
                stats.bytes_downloaded += status["bytes"]
                stats.bytes_stored += status.get("stored_bytes", 0)
                if on_image:
                    on_image(status)
                if time.monotonic() - last_log >= progress_every_s:
                    last_log = time.monotonic()
                    rate = len(statuses) / (last_log - start)
                    log.info("%s shard %d/%d: %d/%d images done (%d ok), %.1f images/s", spec.split, spec.index + 1,
                             spec.num_shards, len(statuses), len(records), stats.counts["ok"], rate)

    with FileSystems.create(tmp_output, compression_type=CompressionTypes.GZIP) as out:
        asyncio.run(run(out))
    FileSystems.rename([tmp_output], [spec.output_path])
    tmp_status = _temp_path(spec.status_path)
    with FileSystems.create(tmp_status, compression_type=CompressionTypes.UNCOMPRESSED) as f:
        f.write("".join(json.dumps(s, sort_keys=True) + "\n" for s in statuses).encode("utf-8"))
    FileSystems.rename([tmp_status], [spec.status_path])
    stats.seconds = time.monotonic() - start
    log.info("%s shard %d/%d written: %d images, %s, %.1f images/s", spec.split, spec.index + 1, spec.num_shards,
             len(records), dict(stats.counts), len(records) / max(stats.seconds, 1e-9))
    return stats
