"""After training: score the calibration and eval splits, choose the decision rule, write ``thresholds.json``.

The Trainer's ``eval_files`` hold both splits (``EvalArgs(splits=["calibration", "eval"])``);
``decision_report`` fits and chooses on calibration only, and the eval split is scored for the
report (the Evaluator gates on it). The report's fields are in ``trainer/rules.py``.
"""

import json
import logging
import os
from typing import List, Optional, Sequence, Tuple

import numpy as np
import tensorflow as tf

from trainer import data, rules, trivial_baseline
from imat_common import serving, splits
from imat_common.features import LabelMap
from trainer.settings import TrainerSettings

log = logging.getLogger(__name__)


def split_files(file_patterns: Sequence[str], split: str) -> List[str]:
    """The patterns of one split among the Trainer's ``eval_files`` (``<examples>/Split-<name>/*``).

    Raises:
      ValueError: no pattern belongs to ``split``.
    """
    chosen = [p for p in file_patterns if splits.split_of(p) == split]
    if not chosen:
        raise ValueError(
            f"the Trainer got no '{split}' split among {list(file_patterns)}: its EvalArgs must "
            f"list the splits '{splits.CALIBRATION}' and '{splits.EVAL}'"
        )
    return chosen


def inference_fn(model):
    """The model in inference mode, traced once for any batch size (tracing InceptionV3 takes seconds)."""
    size = model.input_shape[1]
    return tf.function(
        lambda images: model(images, training=False), input_signature=[tf.TensorSpec([None, size, size, 3], tf.float32)]
    )


def predict_eval(infer, dataset, steps: int) -> Tuple[np.ndarray, np.ndarray]:
    """Probabilities and labels over ``steps`` batches (0: all) of a finite dataset; ``infer`` from ``inference_fn``."""
    probabilities, labels = [], []
    for images, batch_labels in dataset.take(steps) if steps else dataset:
        probabilities.append(infer(images).numpy())
        labels.append(batch_labels.numpy())
    return np.concatenate(probabilities).astype(np.float32), np.concatenate(labels)


def calibrate(model, fn_args, tf_transform_output, settings: TrainerSettings, label_map: Optional[LabelMap]) -> dict:
    """Scores both splits with the trained model and returns the ``thresholds.json`` report."""
    batch_size, steps = settings.eval_batch_size, int(fn_args.eval_steps or 0)
    scored, infer = {}, inference_fn(model)
    for split in splits.HELD_OUT:
        dataset = data.input_fn(split_files(fn_args.eval_files, split), tf_transform_output, batch_size, training=False)
        scored[split] = predict_eval(infer, dataset, steps)
    baseline = trivial_baseline.most_frequent_per_task(
        trivial_baseline.read_frequencies(tf_transform_output), label_map
    )
    report = rules.decision_report(
        scored[splits.CALIBRATION], scored[splits.EVAL], settings.min_positives, settings.calibration_folds, baseline
    )
    for line in rules.format_report(report):
        log.info("%s", line)
    return report


def write_report(report: dict, serving_model_dir: str) -> str:
    """Writes ``assets.extra/thresholds.json`` into the exported model; returns its path."""
    path = serving.thresholds_path(serving_model_dir)
    tf.io.gfile.makedirs(os.path.dirname(path))
    with tf.io.gfile.GFile(path, "w") as f:
        f.write(json.dumps(report, indent=1, allow_nan=False))
    return path
