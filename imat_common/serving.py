"""Names of the exported model's interface, shared by the exporter and every reader.

Signatures (``trainer/exporter.py`` builds them; the ensemble's export has the same):
  serving_default     serialized tf.Examples -> the outputs below but the embedding
  predict_images      raw image bytes -> the same
  evaluate            serialized tf.Examples -> probabilities and decisions (TFMA)
  transform_features  serialized tf.Examples -> Transform's outputs, labels included
  embed_images        raw image bytes -> L2-normalised embedding
"""

import os

SERVING_DEFAULT, PREDICT_IMAGES, EVALUATE, TRANSFORM_FEATURES, EMBED_IMAGES = (
    "serving_default",
    "predict_images",
    "evaluate",
    "transform_features",
    "embed_images",
)
EXAMPLES, IMAGES = "examples", "images"  # the signatures' input names
PROBABILITIES, DECISIONS, LABEL_IDS, LABEL_NAMES, EMBEDDING = (
    "probabilities",
    "decisions",
    "label_ids",
    "label_names",
    "embedding",
)

# The Evaluator's per-label metrics (pipeline/label_metrics.py), under output ``decisions`` and
# sub key ``classId:k``: the images carrying label k+1, and micro metrics over them.
LABEL_SLICE_EXAMPLE_COUNT, LABEL_SLICE_MICRO_PRECISION, LABEL_SLICE_MICRO_RECALL, LABEL_SLICE_MICRO_F1 = (
    "label_slice_example_count",
    "label_slice_micro_precision",
    "label_slice_micro_recall",
    "label_slice_micro_f1",
)

ASSETS_EXTRA = "assets.extra"
THRESHOLDS_FILE = "thresholds.json"  # the decision rules and their scores (trainer/rules.py)


def thresholds_path(model_dir: str) -> str:
    """Where an exported model keeps its ``thresholds.json``."""
    return os.path.join(model_dir, ASSETS_EXTRA, THRESHOLDS_FILE)


def read_thresholds(model_dir: str) -> dict:
    """An exported model's ``thresholds.json`` (local or ``gs://``): its decision rules and scores,
    and an ensemble's members and weights (``trainer/rules.py``, ``trainer/ensemble_export.py``)."""
    import json

    from apache_beam.io.filesystems import FileSystems  # lazy: keeps this module light

    with FileSystems.open(thresholds_path(model_dir)) as f:
        return json.loads(f.read().decode("utf-8"))
