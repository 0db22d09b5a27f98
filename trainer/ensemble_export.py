"""One SavedModel that runs every member model and combines them: what the Ensembler exports.

The members are the Trainers' own exports (``trainer/exporter.py``), loaded and called
through their signatures, so each keeps its Transform layer and input scaling. The exported
model has the members' signatures (serving_default, predict_images, evaluate,
transform_features, embed_images), so the Evaluator, the Pusher, ``imat predict``, batch
scoring and the similar-product index take it as they take one model. Its probabilities
are the combination (``trainer/ensemble.py``); its decisions use thresholds tuned on the
combination's calibration predictions. Embeddings and ``transform_features`` are the first
member's (every member shares the pipeline's Transform graph).
"""

import logging
from typing import List, Sequence, Tuple

import numpy as np
import tensorflow as tf

from trainer import calibration, ensemble, exporter, rules
from trainer.preprocessing import LABELS_FEATURE
from imat_common import serving, splits
from imat_common.serving import read_thresholds

log = logging.getLogger(__name__)


class EnsembleModule(tf.Module):
    """The members, the combination's parameters, thresholds and label names."""

    def __init__(self, members: Sequence, combination: ensemble.Combination, thresholds: np.ndarray):
        super().__init__()
        self.members = list(members)
        self.weights = tf.Variable(np.asarray(combination.weights, np.float32), trainable=False, name="weights")
        self.stacked = combination.method == ensemble.STACKER
        if self.stacked:
            s = combination.stacker
            self.stacker = [
                tf.Variable(np.asarray(v, np.float32), trainable=False)
                for v in (s.hidden_kernel, s.hidden_bias, s.output_kernel, s.output_bias)
            ]
        self.thresholds = tf.Variable(np.asarray(thresholds, np.float32), trainable=False, name="thresholds")
        self.label_names = tf.Variable(members[0].label_names.numpy(), trainable=False, name="label_names")

    def _combine(self, probabilities: List[tf.Tensor]) -> tf.Tensor:
        stacked = tf.stack([tf.cast(p, tf.float32) for p in probabilities])  # [members, batch, labels]
        if not self.stacked:
            return tf.tensordot(self.weights, stacked, axes=1)
        w1, b1, w2, b2 = self.stacker
        inputs = tf.reshape(tf.transpose(stacked, [1, 0, 2]), [tf.shape(stacked)[1], -1])
        mean = tf.clip_by_value(tf.reduce_mean(stacked, axis=0), 1e-6, 1 - 1e-6)
        base = tf.math.log(mean) - tf.math.log1p(-mean)
        return tf.sigmoid(base + tf.nn.relu(inputs @ w1 + b1) @ w2 + b2)

    def _members(self, signature: str, **inputs) -> tf.Tensor:
        return self._combine([m.signatures[signature](**inputs)[serving.PROBABILITIES] for m in self.members])

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="examples")])
    def serve_examples(self, examples):
        return exporter.decide(self._members(serving.EVALUATE, examples=examples), self.thresholds, self.label_names)

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="images")])
    def serve_images(self, images):
        return exporter.decide(self._members(serving.PREDICT_IMAGES, images=images), self.thresholds, self.label_names)

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="examples")])
    def evaluate(self, examples):
        outputs = exporter.decide(self._members(serving.EVALUATE, examples=examples), self.thresholds, self.label_names)
        return {serving.PROBABILITIES: outputs[serving.PROBABILITIES], serving.DECISIONS: outputs[serving.DECISIONS]}

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="examples")])
    def transform_features(self, examples):
        return self.members[0].signatures[serving.TRANSFORM_FEATURES](examples=examples)

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="images")])
    def embed_images(self, images):
        return self.members[0].signatures[serving.EMBED_IMAGES](images=images)

    def signatures(self):
        return exporter.signatures_of(self)


def examples_files(examples_uri: str, split: str) -> List[str]:
    """ExampleGen's files of one split.

    Raises:
      FileNotFoundError: the split has no files.
    """
    files = sorted(tf.io.gfile.glob(splits.split_pattern(examples_uri, split)))
    if not files:
        raise FileNotFoundError(f"no examples of split '{split}' under {examples_uri}")
    return files


def score(models: Sequence, files: Sequence[str], batch_size: int) -> Tuple[np.ndarray, np.ndarray]:
    """(probabilities [members, examples, labels], multi-hot labels [examples, labels]) of every example in ``files``.

    Labels come from the first member's ``transform_features`` (the pipeline's Transform graph).
    """
    probabilities, labels = [[] for _ in models], []
    for batch in tf.data.TFRecordDataset(list(files), compression_type="GZIP").batch(batch_size):
        for i, model in enumerate(models):
            probabilities[i].append(model.signatures[serving.EVALUATE](examples=batch)[serving.PROBABILITIES].numpy())
        labels.append(models[0].signatures[serving.TRANSFORM_FEATURES](examples=batch)[LABELS_FEATURE].numpy())
    return np.stack([np.concatenate(p) for p in probabilities]), np.concatenate(labels)


def combine_and_export(
    member_dirs: Sequence[str],
    examples_uri: str,
    output_dir: str,
    method: str,
    min_positives: int,
    folds: int,
    batch_size: int,
    seed: int,
) -> dict:
    """Scores the members on calibration and eval, fits ``method`` on calibration, exports the ensemble.

    Args:
      member_dirs: the members' exported SavedModels (a Trainer's ``Format-Serving``).
      examples_uri: ExampleGen's output, with the splits ``calibration`` and ``eval``.
      output_dir: where the ensemble's SavedModel goes (with ``assets.extra/thresholds.json``).
      method: "weights" (hill climbing) or "stacker".
      min_positives, folds: as in ``rules.decision_report``.

    Returns:
      The ``thresholds.json`` report, with an ``ensemble`` entry: members, method, weights and
      each member's micro-F1 (its own served rule, from its report) beside the ensemble's.
    """
    models = [tf.saved_model.load(d) for d in member_dirs]
    scored = {}
    for split in splits.HELD_OUT:
        scored[split] = score(models, examples_files(examples_uri, split), batch_size)
        log.info("scored %d %s examples with %d members", scored[split][1].shape[0], split, len(models))
    reports = [read_thresholds(d) for d in member_dirs]
    combination = ensemble.fit_combination(
        method,
        scored[splits.CALIBRATION],
        scored[splits.EVAL],
        min_positives,
        folds,
        reports[0].get(rules.BASELINE, {}).get("label_ids", ()),
        seed,
    )
    report = dict(combination.report)
    report["ensemble"] = {
        "method": method,
        "members": list(member_dirs),
        "weights": combination.weights,
        "member_micro_f1": [r["micro_f1"][r["served_rule"]] for r in reports],
    }
    for line in rules.format_report(report):
        log.info("%s", line)
    module = EnsembleModule(models, combination, np.asarray(report["thresholds"], np.float32))
    tf.saved_model.save(module, output_dir, signatures=module.signatures())
    calibration.write_report(report, output_dir)
    return report
