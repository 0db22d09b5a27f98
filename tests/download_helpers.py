"""Shared pieces of the download job's tests: fast settings, a JSON writer, readers of the output."""
import glob
import json
import os
from typing import Dict, List

import tensorflow as tf

from trainer import features

# Small limits so faults resolve in about a second; the guard stays on.
FAST_GUARDED = ["--max_size=100", "--deadline_s=2.5", "--attempt_timeout_s=1", "--retries=1", "--backoff_s=0.05",
                "--max_bytes=1000000", "--max_pixels=1000000", "--progress_s=1"]
# The fault server listens on loopback, which the guard refuses unless told otherwise.
FAST = FAST_GUARDED + ["--allow_private_networks"]


def write_json(path, urls: Dict[str, str], labels: Dict[str, List[int]] = None) -> str:
    """Writes a competition JSON of image id -> URL (and id -> label ids, when given); returns its path."""
    doc = {"images": [{"imageId": i, "url": u} for i, u in urls.items()]}
    if labels is not None:
        doc["annotations"] = [{"imageId": i, "labelId": [str(k) for k in ls]} for i, ls in labels.items()]
    with open(path, "w") as f:
        json.dump(doc, f)
    return str(path)


def read_examples(out_dir, split):
    """Every tf.Example the pipeline would read: the pattern ``<split>/*.tfrecord.gz``, dotfiles included."""
    files = sorted(tf.io.gfile.glob(os.path.join(out_dir, split, "*.tfrecord.gz")))
    return [tf.train.Example.FromString(record.numpy())
            for record in tf.data.TFRecordDataset(files, compression_type="GZIP")]


def example_ids(examples) -> List[str]:
    return sorted(e.features.feature[features.IMAGE_ID_KEY].bytes_list.value[0].decode() for e in examples)


def statuses(out_dir, split) -> Dict[str, dict]:
    """image id -> its status line (a duplicate's under "<id>/dup")."""
    rows = []
    for path in sorted(glob.glob(os.path.join(out_dir, "_status", split, "*.jsonl"))):
        with open(path) as f:
            rows += [json.loads(line) for line in f if line.strip()]
    return {r["image_id"] + ("/dup" if r["status"] == "duplicate_id" else ""): r for r in rows}
