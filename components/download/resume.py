"""Resuming into an output folder: the same inputs and settings, no stale temporary files,
and which shards are left to do.

``_plan/plan.json`` records the inputs (absolute paths), every setting that changes what
is stored, and each split's plan fingerprint. A rerun into the folder must match it, so
one folder never mixes two policies; a refusal names each setting that changed. It holds no
URL: a fingerprint is a SHA-256 of a split's shard plans, so a changed URL (a new signature
included) is seen without the URL being kept. The shard plans themselves live only while a run
is under way (``plan.py``).
"""

import dataclasses
import json
import logging
import os
from typing import Dict, List, Optional, Tuple

from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems

from components.download import fetch as fetch_lib
from components.download.plan import PlanMismatchError, SplitPlan, join, rejected_path, write_text
from components.download.shard import ShardSpec, read_statuses

log = logging.getLogger(__name__)
# 3: shard plans are written by every run for its pending shards and deleted when done; a
# folder of version 2 (plans kept) resumes the same way. Earlier code cannot resume a version 3
# folder (it expects the plans on disk), so it refuses it.
PLAN_VERSION = 3
RESUMABLE_VERSIONS = (2, 3)


def normalise_path(path: str) -> str:
    """An absolute local path, so ``train.json`` and ``./train.json`` are one input; URLs unchanged."""
    return path if "://" in path else os.path.abspath(os.path.expanduser(path))


def _record_path(out_dir: str) -> str:
    return join(out_dir, "_plan", "plan.json")


def _load(out_dir: str) -> Optional[dict]:
    path = _record_path(out_dir)
    if not FileSystems.exists(path):
        return None
    with FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED) as f:
        return json.loads(f.read().decode("utf-8"))


def _refuse(out_dir: str, differences: List[str]) -> PlanMismatchError:
    return PlanMismatchError(
        f"{out_dir} holds a download with other inputs or settings: {'; '.join(differences)}. "
        f"Rerun with the first run's values, or use a new --output folder"
    )


def has_plan(out_dir: str) -> bool:
    """Whether the folder holds a run's plan record, so that a rerun resumes rather than starts over."""
    return FileSystems.exists(_record_path(out_dir))


def check_settings(out_dir: str, inputs: Dict[str, str], settings: Dict[str, object]) -> bool:
    """Compares inputs and settings with the folder's earlier run, before any planning.

    Args:
      out_dir: the output folder.
      inputs: split -> normalised path of its JSON.
      settings: flag name -> value, for every setting that changes what is stored.

    Returns:
      True when the folder holds an earlier run with the same inputs and settings.

    Raises:
      PlanMismatchError: naming each input or setting that differs, with both values.
    """
    earlier = _load(out_dir)
    if earlier is None:
        return False
    if earlier.get("version") not in RESUMABLE_VERSIONS:
        raise PlanMismatchError(
            f"{_record_path(out_dir)} was written by an earlier version of this job; "
            f"use a new --output folder, or delete {out_dir} to start over"
        )
    settings = json.loads(json.dumps(settings))  # tuples become lists, as they were stored
    differences = []
    for split in sorted(set(earlier["inputs"]) | set(inputs)):
        then, now = earlier["inputs"].get(split, "(not given)"), inputs.get(split, "(not given)")
        if then != now:
            differences.append(f"--input {split} was {then}, now {now}")
    for name in sorted(set(earlier["settings"]) | set(settings)):
        then, now = earlier["settings"].get(name, "(not recorded)"), settings.get(name, "(not recorded)")
        if then != now:
            differences.append(f"--{name} was {json.dumps(then)}, now {json.dumps(now)}")
    if differences:
        raise _refuse(out_dir, differences)
    return True


def check_or_save_plans(
    out_dir: str, inputs: Dict[str, str], settings: Dict[str, object], plans: Dict[str, SplitPlan], resuming: bool
) -> None:
    """Saves a new run's plan record and refusals, or checks a rerun's plans are the same.

    Raises:
      PlanMismatchError: a split's JSON now gives another plan (its file changed).
    """
    splits = {
        name: {"num_images": p.num_images, "num_shards": len(p.shards), "fingerprint": p.fingerprint}
        for name, p in plans.items()
    }
    if resuming:
        earlier = _load(out_dir)["splits"]
        changed = [
            f"--input {name}={plans[name].source} now gives another plan ({earlier[name]['num_images']} "
            f"images in {earlier[name]['num_shards']} shards then, {s['num_images']} in {s['num_shards']} now; "
            f"the file or the label map changed)"
            for name, s in splits.items()
            if earlier[name] != s
        ]
        if changed:
            raise _refuse(out_dir, changed)
        return
    for name, p in plans.items():
        write_text(rejected_path(out_dir, name), "".join(json.dumps(r, sort_keys=True) + "\n" for r in p.rejected))
    record = {"version": PLAN_VERSION, "inputs": inputs, "settings": settings, "splits": splits}
    write_text(_record_path(out_dir), json.dumps(record, indent=2, sort_keys=True))


def remove_stale_temp_files(out_dir: str, splits: List[str]) -> int:
    """Deletes the files interrupted runs left half-written in ``_tmp/``; returns how many."""
    patterns = [join(out_dir, "_tmp", split, "*") for split in splits]
    stale = [m.path for result in FileSystems.match(patterns) for m in result.metadata_list]
    if stale:
        FileSystems.delete(stale)
        log.info("removed %d temporary files left by an interrupted run", len(stale))
    return len(stale)


def pending_shards(plans: Dict[str, SplitPlan], retry_failed: bool = False) -> Tuple[List[ShardSpec], int]:
    """What is left to do: the shards and how many images they fetch.

    The shards without a status file (never started, or interrupted), and with
    ``retry_failed`` the finished shards where some image ended in a retryable outcome.
    """
    pending, images = [], 0
    for spec in (s for p in plans.values() for s in p.shards):
        if not FileSystems.exists(spec.status_path):
            pending.append(spec)
            images += spec.num_images
        elif retry_failed:
            again = sum(fetch_lib.is_retryable(s) for s in read_statuses(spec.status_path))
            if again:
                pending.append(dataclasses.replace(spec, retry=True))
                images += again
    return pending, images


def kept_so_far(plans: Dict[str, SplitPlan]) -> Tuple[int, int, int]:
    """(finished shards, all shards, images stored in the finished ones), from the status files."""
    done = stored = total = 0
    for spec in (s for p in plans.values() for s in p.shards):
        total += 1
        if FileSystems.exists(spec.status_path):
            done += 1
            stored += sum(s["status"] == "ok" for s in read_statuses(spec.status_path))
    return done, total, stored
