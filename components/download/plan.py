"""Turns the competition JSON into a plan of shards, and knows where every output lives.

Output folder layout (local or ``gs://``):
  <split>/part-00003-of-00010.tfrecord.gz   the images: gzip TFRecords of tf.train.Example
  _status/<split>/part-00003.jsonl          one status line per image of that shard (its "done" marker)
  _status/<split>/rejected.jsonl            records refused before download (duplicates, unknown labels...)
  _plan/<split>/part-00003.jsonl            what the shard fetches
  _plan/plan.json                           the plan's settings and fingerprint, to resume safely
  summary.json                              counts by outcome, bytes, images/s
"""
import dataclasses
import hashlib
import json
import logging
from typing import Dict, List, Optional

from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems

from components.download.records import BadRecord, ImageRecord, iter_images, read_annotations
from components.download.shard import ShardSpec
from trainer.features import LabelMap

log = logging.getLogger(__name__)


class PlanMismatchError(RuntimeError):
    """The output folder holds a run with other inputs or settings."""


def join(*parts: str) -> str:
    return FileSystems.join(*parts)


def shard_spec(out_dir: str, split: str, index: int, num_shards: int, num_images: int = 0) -> ShardSpec:
    return ShardSpec(
        split=split, index=index, num_shards=num_shards, num_images=num_images,
        plan_path=join(out_dir, "_plan", split, f"part-{index:05d}.jsonl"),
        output_path=join(out_dir, split, f"part-{index:05d}-of-{num_shards:05d}.tfrecord.gz"),
        status_path=join(out_dir, "_status", split, f"part-{index:05d}.jsonl"),
    )


def rejected_path(out_dir: str, split: str) -> str:
    return join(out_dir, "_status", split, "rejected.jsonl")


def _write_text(path: str, text: str) -> None:
    with FileSystems.create(path, compression_type=CompressionTypes.UNCOMPRESSED) as f:
        f.write(text.encode("utf-8"))


@dataclasses.dataclass
class SplitPlan:
    split: str
    source: str
    shards: List[ShardSpec]
    num_images: int
    rejected: List[dict]
    fingerprint: str


def plan_split(split: str, source: str, out_dir: str, images_per_shard: int,
               label_map: Optional[LabelMap], write: bool = True) -> SplitPlan:
    """Reads one split's JSON, refuses what cannot be fetched, and writes its shard plans.

    Records are kept in file order; a duplicate image id keeps its first record. Each
    refused record becomes a status line (``bad_record``, ``bad_url``, ``duplicate_id``,
    ``unknown_label``) naming the file, the record and the reason. With ``write`` False
    nothing is written: a rerun uses that to check its plan against the earlier one's.

    Raises:
      ManifestError: the JSON cannot be parsed, with file and position.
    """
    rejected: List[dict] = []

    def reject(bad: BadRecord, labels=()):
        rejected.append({"image_id": bad.image_id, "status": bad.status, "reason": bad.reason, "labels": list(labels)})

    opener = lambda: FileSystems.open(source, compression_type=CompressionTypes.AUTO)  # noqa: E731
    labels = read_annotations(opener, source, reject)
    known = set(label_map.ids) if label_map else None
    seen = set()
    pending: List[ImageRecord] = []
    shards: List[ShardSpec] = []
    digest = hashlib.sha256()
    lines: List[str] = []

    def flush():
        # num_shards is unknown until the end, so plan files are named without it.
        spec = shard_spec(out_dir, split, len(shards), 0, len(lines))
        if write:
            _write_text(spec.plan_path, "".join(lines))
        shards.append(spec)
        lines.clear()

    num_images = 0
    for item in iter_images(opener, source, labels):
        if isinstance(item, BadRecord):
            reject(item)
            continue
        if item.image_id in seen:
            reject(BadRecord(item.image_id, f"{source}: imageId {item.image_id} appears again; the first record is kept",
                             status="duplicate_id"), item.labels)
            continue
        seen.add(item.image_id)
        unknown = [l for l in item.labels if known is not None and l not in known]
        if unknown:
            reject(BadRecord(item.image_id, f"{source}: imageId {item.image_id} has label ids {unknown} "
                                            f"that the label map does not list", status="unknown_label"), item.labels)
            continue
        line = json.dumps({"id": item.image_id, "urls": list(item.urls), "labels": list(item.labels)}) + "\n"
        digest.update(line.encode("utf-8"))
        lines.append(line)
        num_images += 1
        if len(lines) == images_per_shard:
            flush()
    if lines:
        flush()
    unlabelled = seen - set(labels)
    if labels and unlabelled:
        log.warning("%s: %d images have no annotation; they are kept with no labels", source, len(unlabelled))
    orphans = len(set(labels) - seen)
    if orphans:
        log.warning("%s: %d annotations name an imageId that has no image record", source, orphans)
    specs = [shard_spec(out_dir, split, s.index, len(shards), s.num_images) for s in shards]
    return SplitPlan(split, source, specs, num_images, rejected, digest.hexdigest())


def save_or_check_plan(out_dir: str, plans: Dict[str, SplitPlan], settings: dict) -> bool:
    """Records the plan, or checks it matches the one already in ``out_dir``.

    Returns:
      True when resuming an earlier run with the same plan.

    Raises:
      PlanMismatchError: the folder holds a run of other inputs or output settings.
    """
    record = {"settings": settings,
              "splits": {name: {"source": p.source, "num_images": p.num_images, "num_shards": len(p.shards),
                                "fingerprint": p.fingerprint} for name, p in plans.items()}}
    path = join(out_dir, "_plan", "plan.json")
    if FileSystems.exists(path):
        with FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED) as f:
            earlier = json.loads(f.read().decode("utf-8"))
        if earlier != record:
            raise PlanMismatchError(
                f"{out_dir} holds a download of other inputs or settings ({path} differs); "
                f"use a new --output folder, or delete that one to start over")
        return True
    for name, p in plans.items():
        _write_text(rejected_path(out_dir, name), "".join(json.dumps(r, sort_keys=True) + "\n" for r in p.rejected))
    _write_text(path, json.dumps(record, indent=2, sort_keys=True))
    return False


def pending_shards(plans: Dict[str, SplitPlan]) -> List[ShardSpec]:
    """Shards without a status file: never started, or interrupted."""
    specs = [s for p in plans.values() for s in p.shards]
    return [s for s in specs if not FileSystems.exists(s.status_path)]
