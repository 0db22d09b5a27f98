"""Downloads one shard of the plan into a gzip TFRecord file and a status file.

A shard is the unit of resumption. Its TFRecord file is written in the output's ``_tmp/``
folder, under a name no ``*.tfrecord.gz`` pattern matches, and renamed into the split folder
only when complete; then its status file, the shard's "done" marker, is renamed into place.
A reader of ``<split>/*.tfrecord.gz`` therefore never sees a partial shard: locally a rename
is atomic, and on GCS a rename is a copy, which makes the object appear whole or not at all.
A rerun skips shards with a status file and redoes the rest, so nothing good is lost and
nothing is written twice, even if a crash or Beam's retry of a bundle interrupts a shard.

A shard's plan holds full URLs (secrets included), so the shard deletes it once its status
file is in place. Beam retrying a bundle then meets shards that are done and have no plan:
``committed_this_run`` tells the worker to skip them.
"""

import dataclasses
import json
import logging
import time
import uuid
from collections import Counter
from typing import Callable, List, Optional

from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems

from components.download import fetch as fetch_lib
from components.download.batch import fetch_all
from components.download.images import ImageSettings
from components.download.records import ImageRecord
from components.download.tfrecord import DEFAULT_GZIP_LEVEL, GzipWriter, bytes_feature, frame_record, read_framed
from imat_common import features

log = logging.getLogger(__name__)
TEMP_SUFFIX = ".partial"
PROGRESS_EVERY_S = 10.0


@dataclasses.dataclass(frozen=True)
class ShardSpec:
    split: str
    index: int
    num_shards: int
    plan_path: str  # JSON lines: {"id", "urls", "labels"}; deleted once the shard is done
    output_path: str  # gzip TFRecord
    status_path: str  # JSON lines, one per image; its presence marks the shard done
    temp_dir: str  # where files are written before they are renamed into place
    num_images: int = 0
    retry: bool = False  # done, but re-fetch its images with retryable outcomes (--retry_failed)


@dataclasses.dataclass
class ShardStats:
    counts: Counter = dataclasses.field(default_factory=Counter)
    bytes_downloaded: int = 0
    bytes_stored: int = 0
    seconds: float = 0.0


def read_plan(path: str) -> List[ImageRecord]:
    """The image records of one shard's plan file."""
    with FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED) as f:
        return [
            ImageRecord(d["id"], tuple(d["urls"]), tuple(d["labels"]))
            for d in (json.loads(line) for line in f.read().decode("utf-8").splitlines() if line)
        ]


def read_statuses(path: str) -> List[dict]:
    """The status lines of a finished shard."""
    with FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED) as f:
        return [json.loads(line) for line in f.read().decode("utf-8").splitlines() if line]


def committed_this_run(spec: ShardSpec) -> bool:
    """Whether an earlier attempt in this run (Beam retrying a bundle) already finished the shard.

    A fresh shard is finished once its status file exists. A shard being retried had one before
    the run started; the run wrote its plan, which the retry deletes after its status file.
    """
    if spec.retry:
        return not FileSystems.exists(spec.plan_path)
    return FileSystems.exists(spec.status_path)


def forget_plan(spec: ShardSpec) -> None:
    """Deletes a finished shard's plan, the one file of the shard with full URLs."""
    try:
        FileSystems.delete([spec.plan_path])
    except IOError:  # BeamIOError too: already gone (another attempt at the shard deleted it)
        if FileSystems.exists(spec.plan_path):
            raise


def temp_path(spec: ShardSpec, final_path: str) -> str:
    """A unique temporary name in the temp folder: two attempts at one shard never share a file."""
    return f"{spec.temp_dir}/{final_path.rsplit('/', 1)[-1]}.{uuid.uuid4().hex[:8]}{TEMP_SUFFIX}"


def _rename(source: str, destination: str) -> None:
    """Renames into place, making the destination's folder first (a local rename needs it; GCS has none)."""
    folder = destination.rsplit("/", 1)[0]
    if not FileSystems.exists(folder):
        try:
            FileSystems.mkdirs(folder)
        except IOError:
            pass  # another shard made it meanwhile
    FileSystems.rename([source], [destination])


def _write_shard(
    spec: ShardSpec,
    records: List[ImageRecord],
    fetch_settings,
    image_settings,
    on_image: Optional[Callable[[dict], None]],
    copy: Callable[[object], None] = lambda out: None,
    kept_statuses: List[dict] = (),
    gzip_level: int = DEFAULT_GZIP_LEVEL,
) -> ShardStats:
    stats, statuses, start = ShardStats(), list(kept_statuses), time.monotonic()
    last_log = [start]

    def on_result(status: dict, example: Optional[bytes]) -> None:
        if example is not None:
            out.write(frame_record(example))
        statuses.append(status)
        stats.counts[status["status"]] += 1
        stats.bytes_downloaded += status["bytes"]
        stats.bytes_stored += status.get("stored_bytes", 0)
        if on_image:
            on_image(status)
        now = time.monotonic()
        if now - last_log[0] >= PROGRESS_EVERY_S:
            last_log[0] = now
            done = sum(stats.counts.values())
            log.info(
                "%s shard %d/%d: %d/%d images done (%d ok), %.1f images/s",
                spec.split,
                spec.index + 1,
                spec.num_shards,
                done,
                len(records),
                stats.counts["ok"],
                done / (now - start),
            )

    tmp_output = temp_path(spec, spec.output_path)
    with FileSystems.create(tmp_output, compression_type=CompressionTypes.UNCOMPRESSED) as raw:
        out = GzipWriter(raw, gzip_level)
        copy(out)
        fetch_all(records, fetch_settings, image_settings, on_result)
        out.finish()
    _rename(tmp_output, spec.output_path)
    tmp_status = temp_path(spec, spec.status_path)
    with FileSystems.create(tmp_status, compression_type=CompressionTypes.UNCOMPRESSED) as f:
        f.write("".join(json.dumps(s, sort_keys=True) + "\n" for s in statuses).encode("utf-8"))
    _rename(tmp_status, spec.status_path)
    forget_plan(spec)
    stats.seconds = time.monotonic() - start
    log.info(
        "%s shard %d/%d written: %d images fetched, %s, %.1f images/s",
        spec.split,
        spec.index + 1,
        spec.num_shards,
        len(records),
        dict(stats.counts),
        len(records) / max(stats.seconds, 1e-9),
    )
    return stats


def download_shard(
    spec: ShardSpec,
    fetch_settings: fetch_lib.FetchSettings,
    image_settings: ImageSettings,
    on_image: Optional[Callable[[dict], None]] = None,
    gzip_level: int = DEFAULT_GZIP_LEVEL,
) -> ShardStats:
    """Downloads every image of a shard and writes the shard's files.

    Args:
      spec: which shard, and where its plan and outputs live.
      fetch_settings: HTTP limits and retry policy.
      image_settings: resize, quality and safety limits.
      on_image: called with each image's status dict (e.g. to count outcomes).
      gzip_level: zlib level of the shard's gzip TFRecord file (0 stores, 9 squeezes most).

    Returns:
      Counts by outcome, bytes and time for this shard.
    """
    return _write_shard(
        spec, read_plan(spec.plan_path), fetch_settings, image_settings, on_image, gzip_level=gzip_level
    )


def retry_shard(
    spec: ShardSpec,
    fetch_settings: fetch_lib.FetchSettings,
    image_settings: ImageSettings,
    on_image: Optional[Callable[[dict], None]] = None,
    gzip_level: int = DEFAULT_GZIP_LEVEL,
) -> ShardStats:
    """Fetches again the images of a finished shard whose outcome was retryable; keeps the rest.

    The new TFRecord file holds the shard's stored images except those being retried, then
    the retried ones that now succeed. Records are matched by image id, not by the status
    file, so a retry interrupted between its two renames is safe to run again.
    """
    if not FileSystems.exists(spec.output_path):
        log.warning("%s has a status file but no TFRecord file: downloading the whole shard", spec.output_path)
        return download_shard(spec, fetch_settings, image_settings, on_image, gzip_level)
    statuses = read_statuses(spec.status_path)
    again = {s["image_id"] for s in statuses if fetch_lib.is_retryable(s)}
    records = [r for r in read_plan(spec.plan_path) if r.image_id in again]

    def copy(out) -> None:
        with FileSystems.open(spec.output_path, compression_type=CompressionTypes.GZIP) as old:
            for framed, data in read_framed(old):
                image_id = (bytes_feature(data, features.IMAGE_ID_KEY) or b"").decode("utf-8")
                if image_id not in again:
                    out.write(framed)

    kept = [s for s in statuses if s["image_id"] not in again]
    return _write_shard(spec, records, fetch_settings, image_settings, on_image, copy, kept, gzip_level)
