"""The curated schema: the data contract, generated from the label map and imported by the pipeline.

SchemaGen re-guesses a schema from each run's statistics: when every example has the same
number of labels it calls ``labels`` fixed-length, Transform then gets a dense tensor, and a
label id outside the label map passes unnoticed. So the contract is written here, from the
label map (195 or 228 labels need no hand edit), reviewed, and imported with ImportSchemaGen;
SchemaGen's inferred schema stays in the DAG as a statistic to compare against.

The contract, for every split the pipeline reads:
  image_id        bytes, one per example, required
  image/encoded   bytes (JPEG), one per example, required
  image/height    int >= 1, one per example, required; image/width likewise
  image/sha256    bytes, one per example, required; image/url likewise
  labels          int64 list of variable length (at least one id), every id in 1..num_labels
  and at least one example per split.

And how far the newest span may drift from the previous one before a run stops
(``components/drift.py``): ``labels`` by L-infinity distance of the label distribution
(``label_drift``), ``image/height``, ``image/width`` and ``image/num_bytes`` (the JPEG's size, a
feature of the drift splits only) by Jensen-Shannon divergence (``image_drift``), and each
task's labels, ``labels/<task>`` (features of the drift splits only), by L-infinity distance
within the task (``task_drift``). The same label and image thresholds bound the skew between a
run's train split (its window of spans) and its eval split (the newest span's), the data the gate
scores the model on. The thresholds were chosen by
``benchmarks/drift_benchmark.py`` (docs/benchmarks.md, "Drift").

``imat schema`` (cli/schema.py) writes it and checks a file against a label map.
"""

import hashlib
import os
from typing import List

from tensorflow_metadata.proto.v0 import schema_pb2

from imat_common import features
from imat_common.features import LabelMap

SCHEMA_FILE = "schema.pbtxt"
# Above the same-distribution noise of spans of a few hundred train images, below a real shift
# (measured: docs/benchmarks.md, "Drift").
LABEL_DRIFT = 0.03
IMAGE_DRIFT = 0.07
TASK_DRIFT = 0.15
_SINGLE_BYTES = {
    features.IMAGE_ID_KEY: "the competition image id, unique within a split",
    features.IMAGE_KEY: "the image, RGB JPEG as the download job stores it",
    features.SHA256_KEY: "hex SHA-256 of the stored JPEG",
    features.URL_KEY: "the URL the image was fetched from",
}
_SINGLE_INTS = {features.HEIGHT_KEY: "pixels of the stored JPEG", features.WIDTH_KEY: "pixels of the stored JPEG"}


def _required_single(schema: schema_pb2.Schema, name: str, kind: int, comment: str) -> schema_pb2.Feature:
    feature = schema.feature.add(name=name, type=kind)
    feature.presence.min_fraction = 1.0
    feature.presence.min_count = 1
    feature.shape.dim.add(size=1)
    feature.annotation.comment.append(comment)
    return feature


def build_schema(
    label_map: LabelMap,
    label_drift: float = LABEL_DRIFT,
    image_drift: float = IMAGE_DRIFT,
    task_drift: float = TASK_DRIFT,
) -> schema_pb2.Schema:
    """The curated schema of the download job's examples for ``label_map``.

    Args:
      label_map: the labels; ``labels`` gets the domain 1..``label_map.num_labels``.
      label_drift: the largest L-infinity distance between two spans' label distributions.
      image_drift: the largest Jensen-Shannon divergence of image height, width and JPEG size.
      task_drift: the largest L-infinity distance between two spans' label distributions within
        one task (``labels/<task>``).

    Returns:
      A Schema proto (deterministic: the same label map always gives the same text).
    """
    schema = schema_pb2.Schema()
    for name in features.RAW_FEATURE_KEYS:
        if name in _SINGLE_BYTES:
            _required_single(schema, name, schema_pb2.BYTES, _SINGLE_BYTES[name])
        elif name in _SINGLE_INTS:
            feature = _required_single(schema, name, schema_pb2.INT, _SINGLE_INTS[name])
            feature.int_domain.min = 1
            feature.drift_comparator.jensen_shannon_divergence.threshold = image_drift
            feature.skew_comparator.jensen_shannon_divergence.threshold = image_drift
    # No presence constraint: only the drift splits carry it.
    num_bytes = schema.feature.add(name=features.NUM_BYTES_KEY, type=schema_pb2.INT)
    num_bytes.drift_comparator.jensen_shannon_divergence.threshold = image_drift
    num_bytes.annotation.comment.append("bytes of the stored JPEG; in the drift splits only")
    labels = schema.feature.add(name=features.LABELS_KEY, type=schema_pb2.INT)
    # No shape: a variable-length feature, parsed as a SparseTensor however many labels each
    # example happens to have.
    labels.presence.min_fraction = 1.0
    labels.presence.min_count = 1
    labels.value_count.min = 1
    labels.int_domain.min = 1
    labels.int_domain.max = label_map.num_labels
    # Categorical: statistics count each label id (the drift comparator needs the counts), and
    # the domain above is still enforced.
    labels.int_domain.is_categorical = True
    labels.drift_comparator.infinity_norm.threshold = label_drift
    # The same distance between the train split and the newest span's eval split (skew).
    labels.skew_comparator.infinity_norm.threshold = label_drift
    labels.annotation.comment.append(
        f"label ids of the label map ({len(label_map.labels)} labels, highest id {label_map.num_labels})"
    )
    tasks = {}
    for label in label_map.labels:
        tasks.setdefault(label.task, []).append(label.label_id)
    for task, ids in tasks.items():
        # Like image/num_bytes, no presence constraint: only the drift splits carry it.
        task_labels = schema.feature.add(name=features.task_labels_key(task), type=schema_pb2.INT)
        task_labels.int_domain.min, task_labels.int_domain.max = min(ids), max(ids)
        task_labels.int_domain.is_categorical = True
        task_labels.drift_comparator.infinity_norm.threshold = task_drift
        task_labels.annotation.comment.append(
            f"label ids of task {task!r} ({len(ids)} labels); in the drift splits only"
        )
    schema.dataset_constraints.min_examples_count = 1
    return schema


def schema_text(schema: schema_pb2.Schema) -> str:
    from google.protobuf import text_format

    return text_format.MessageToString(schema)


def read_schema(path: str) -> schema_pb2.Schema:
    """Reads a text-format schema file (local or ``gs://``).

    Raises:
      ValueError: naming the file when it is not a text-format Schema.
    """
    import tensorflow as tf
    from google.protobuf import text_format

    with tf.io.gfile.GFile(path) as f:
        text = f.read()
    try:
        return text_format.Parse(text, schema_pb2.Schema())
    except text_format.ParseError as e:
        raise ValueError(f"{path}: not a text-format tensorflow_metadata Schema: {e}") from None


def stage_schema(schema: schema_pb2.Schema, folder: str) -> str:
    """Writes the schema under ``folder/<digest of its text>/schema.pbtxt`` and returns that path.

    ImportSchemaGen's cache key is the file's path, not its contents: an edited schema at
    the same path would be silently reused from the cache. A path per content cannot be.
    """
    text = schema_text(schema)
    path = os.path.join(folder, hashlib.sha256(text.encode()).hexdigest()[:16], SCHEMA_FILE)
    if not os.path.exists(path):
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path + ".tmp", "w") as f:
            f.write(text)
        os.replace(path + ".tmp", path)
    return path


def differences(curated: schema_pb2.Schema, other: schema_pb2.Schema) -> List[str]:
    """How ``other`` (e.g. SchemaGen's inferred schema) differs from the contract, one line per feature."""
    mine = {f.name: f for f in curated.feature}
    theirs = {f.name: f for f in other.feature}
    lines = []
    for name in sorted(set(mine) | set(theirs)):
        if name not in theirs:
            if mine[name].HasField("presence"):  # an optional feature (the drift splits' JPEG size) may be absent
                lines.append(f"{name}: in the contract, absent from the other schema")
        elif name not in mine:
            lines.append(f"{name}: not in the contract")
        else:
            a, b = mine[name], theirs[name]
            shape = lambda f: [d.size for d in f.shape.dim] if f.HasField("shape") else "variable"
            if a.type != b.type:
                lines.append(
                    f"{name}: type {schema_pb2.FeatureType.Name(b.type)}, "
                    f"contract {schema_pb2.FeatureType.Name(a.type)}"
                )
            if shape(a) != shape(b):
                lines.append(f"{name}: shape {shape(b)}, contract {shape(a)}")
    return lines
