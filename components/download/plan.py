"""Turns the competition JSON into a plan of shards, and knows where every output lives.

Output folder layout (local or ``gs://``):
  <split>/part-00003-of-00010.tfrecord.gz   the images: gzip TFRecords of tf.train.Example
  _status/<split>/part-00003.jsonl          one status line per image of that shard (its "done" marker)
  _status/<split>/rejected.jsonl            records refused before download (duplicates, unknown labels...)
  _plan/<split>/part-00003.jsonl            what the shard fetches: only while a run is under way
  _plan/plan.json                           the inputs, settings and plan fingerprints, to resume safely
  _tmp/<split>/                             files being written, renamed into place when complete
  summary.json                              counts by outcome, bytes, images/s

Shard order: competition files list images in catalogue order (often by product id, which
clusters categories and colours), so records are spread across shards in the order of a
salted SHA-256 of their image id. Every shard then holds a sample of the whole split, and
the order is the same on every run, which keeps resuming exact.

Shard plans hold the URLs as the input JSON gives them, secrets (user info, signed query
parameters) included, because the workers fetch from them. So none outlives its run: every
run writes the plans of the shards it has left to do (the input JSON gives the same plan each
time), a shard deletes its plan once its status file is in place, and the run deletes whatever
plans remain when it ends, however it ends. Only a run killed outright (SIGKILL, a lost
machine) leaves plans behind, until the next run into the folder. ``plan.json`` holds only
SHA-256 fingerprints of the plans, never a URL.
"""

import dataclasses
import hashlib
import json
import logging
from typing import Dict, List, Optional

from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems

from components.download.records import BadRecord, iter_images, read_annotations
from components.download.redact import redact_text
from components.download.shard import ShardSpec
from imat_common.features import LabelMap

log = logging.getLogger(__name__)
# Changing the salt reorders every plan: a folder planned with another salt refuses to resume.
SHARD_ORDER_SALT = b"imat-shard-order-v1:"


class PlanMismatchError(RuntimeError):
    """The output folder holds a run with other inputs or settings."""


def join(*parts: str) -> str:
    return FileSystems.join(*parts)


def shard_spec(out_dir: str, split: str, index: int, num_shards: int, num_images: int = 0) -> ShardSpec:
    """Where shard ``index`` of ``split`` keeps its plan, images, status and temporary files."""
    return ShardSpec(
        split=split,
        index=index,
        num_shards=num_shards,
        num_images=num_images,
        plan_path=join(out_dir, "_plan", split, f"part-{index:05d}.jsonl"),
        output_path=join(out_dir, split, f"part-{index:05d}-of-{num_shards:05d}.tfrecord.gz"),
        status_path=join(out_dir, "_status", split, f"part-{index:05d}.jsonl"),
        temp_dir=join(out_dir, "_tmp", split),
    )


def rejected_path(out_dir: str, split: str) -> str:
    """Where a split's records refused before download are listed."""
    return join(out_dir, "_status", split, "rejected.jsonl")


def write_text(path: str, text: str) -> None:
    """Writes UTF-8 text to a local or gs:// path."""
    with FileSystems.create(path, compression_type=CompressionTypes.UNCOMPRESSED) as f:
        f.write(text.encode("utf-8"))


def shard_order_key(image_id: str) -> bytes:
    """The sort key that spreads records across shards: a salted SHA-256 of the image id."""
    return hashlib.sha256(SHARD_ORDER_SALT + image_id.encode("utf-8")).digest()


@dataclasses.dataclass
class SplitPlan:
    split: str
    source: str
    shards: List[ShardSpec]
    num_images: int
    rejected: List[dict]
    fingerprint: str
    # Each shard's plan file text (JSON lines, full URLs), written only for the shards a run fetches.
    texts: List[str] = dataclasses.field(default_factory=list, repr=False)


def plan_split(
    split: str, source: str, out_dir: str, images_per_shard: int, label_map: Optional[LabelMap], write: bool = True
) -> SplitPlan:
    """Reads one split's JSON, refuses what cannot be fetched, and cuts it into shard plans.

    A duplicate image id keeps its first record. Each refused record becomes a status line
    (``bad_record``, ``bad_annotation``, ``bad_url``, ``duplicate_id``, ``unknown_label``)
    naming the file, the record and the reason. The accepted records are ordered by
    ``shard_order_key`` and cut into shards; until then they are held in memory (the
    competition's size fits on the launching machine; measured: docs/benchmarks.md, "Competition
    scale"). With ``write`` True every shard's plan file is written; the job passes False, checks
    the plan against an earlier run's, and then writes only the pending shards' plans
    (``write_plans``).

    Raises:
      ManifestError: the JSON cannot be parsed, with file and position.
    """
    rejected: List[dict] = []

    def reject(bad: BadRecord, labels=()):
        # A refused record's reason may quote its URL: written without user info or signatures.
        reason = redact_text(bad.reason)
        rejected.append({"image_id": bad.image_id, "status": bad.status, "reason": reason, "labels": list(labels)})

    opener = lambda: FileSystems.open(source, compression_type=CompressionTypes.AUTO)
    labels = read_annotations(opener, source, reject)
    known = set(label_map.ids) if label_map else None
    seen = set()
    keyed: List[tuple] = []
    for item in iter_images(opener, source, labels):
        if isinstance(item, BadRecord):
            reject(item)
            continue
        if item.image_id in seen:
            reject(
                BadRecord(
                    item.image_id,
                    f"{source}: imageId {item.image_id} appears again; the first record is kept",
                    status="duplicate_id",
                ),
                item.labels,
            )
            continue
        seen.add(item.image_id)
        unknown = [k for k in item.labels if known is not None and k not in known]
        if unknown:
            reject(
                BadRecord(
                    item.image_id,
                    f"{source}: imageId {item.image_id} has label ids {unknown} that the label map does not list",
                    status="unknown_label",
                ),
                item.labels,
            )
            continue
        line = json.dumps({"id": item.image_id, "urls": list(item.urls), "labels": list(item.labels)}) + "\n"
        keyed.append((shard_order_key(item.image_id), line))
    keyed.sort()  # ids are unique here, so keys are too: the order is total
    lines = [line for _, line in keyed]
    del keyed
    digest = hashlib.sha256()
    num_shards = -(-len(lines) // images_per_shard)
    specs, texts = [], []
    for index in range(num_shards):
        chunk = lines[index * images_per_shard : (index + 1) * images_per_shard]
        text = "".join(chunk)
        digest.update(text.encode("utf-8"))
        spec = shard_spec(out_dir, split, index, num_shards, len(chunk))
        if write:
            write_text(spec.plan_path, text)
        specs.append(spec)
        texts.append(text)
    unlabelled = [i for i in seen if i not in labels]
    if labels and unlabelled:
        log.warning("%s: %d images have no annotation; they are kept with no labels", source, len(unlabelled))
    orphans = sum(1 for i, ids in labels.items() if ids is not None and i not in seen)
    if orphans:
        log.warning("%s: %d annotations name an imageId that has no image record", source, orphans)
    return SplitPlan(split, source, specs, len(lines), rejected, digest.hexdigest(), texts)


def write_plans(plans: Dict[str, SplitPlan], shards: List[ShardSpec]) -> None:
    """Writes the plan files of ``shards`` (those a run fetches) from their splits' plans."""
    for spec in shards:
        write_text(spec.plan_path, plans[spec.split].texts[spec.index])


def remove_plans(out_dir: str, splits: List[str]) -> int:
    """Deletes every shard plan file of ``splits`` (they hold full URLs); returns how many."""
    patterns = [join(out_dir, "_plan", split, "part-*.jsonl") for split in splits]
    found = [m.path for result in FileSystems.match(patterns) for m in result.metadata_list]
    if found:
        FileSystems.delete(found)
    return len(found)
