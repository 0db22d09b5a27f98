"""Batch inference over a split of TFRecords with Beam's RunInference: submission rows and, with labels, scores.

The exported model's ``serving_default`` signature (serialized tf.Examples in) runs in
batches on the workers (``ServingModelHandler``); each image gives a submission row from the
model's own decisions, and, where its true labels are known, the (true positive, false
positive, false negative) counts of every decision rule in its ``thresholds.json``, summed
across workers. Local with the FnApiRunner, or on Dataflow with Beam's flags.

Rules counted (``SUBMISSION`` is what the CSV holds, i.e. the served rule as exported):
  submission, per_label, global, fixed_0.5, baseline

An example the model cannot score (no image, not an image, cut short, a pixel bomb) fails
alone: its submission row is empty, it counts under ``unscorable`` (its labels as misses),
and ``<output>_errors.txt`` holds one line for it, ``image_id: reason``. The model names such
rows in its ``ok``/``error`` outputs; a batch that fails as a whole (damage only the decoder
finds, or a model exported without those outputs) is scored again example by example.
"""

import json
import logging
import os
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

import apache_beam as beam
import numpy as np
from apache_beam.ml.inference.base import ModelHandler, PredictionResult, RunInference

from trainer import rules
from imat_common import features
from imat_common import image_policy, serving
from imat_common.serving import THRESHOLDS_FILE

log = logging.getLogger(__name__)

CSV_HEADER = "image_id,label_id"
SUBMISSION = "submission"
SCORED, UNLABELLED, UNSCORABLE = "scored", "unlabelled", "unscorable"


def rule_thresholds(report: Mapping[str, Any]) -> Dict[str, np.ndarray]:
    """Threshold per label of each rule in a model's ``thresholds.json`` (format 2).

    Raises:
      ValueError: the report predates the calibration split (no rules to compare).
    """
    if report.get("format") != rules.REPORT_FORMAT:
        raise ValueError(
            f"the model's {THRESHOLDS_FILE} is not format {rules.REPORT_FORMAT} "
            "(trained before the calibration split): retrain it to compare the decision rules"
        )
    fitted = rules.FittedRules(
        np.asarray(report["per_label_thresholds"], np.float32),
        np.asarray(report["tuned"], bool),
        float(report["global_threshold"]),
    )
    return {rule: fitted.thresholds(rule) for rule in rules.RULES}


def csv_line(image_id: str, label_ids: Iterable[int]) -> str:
    """One submission row: the image id, then its label ids separated by spaces (none: empty)."""
    return f"{image_id},{' '.join(str(int(i)) for i in label_ids)}"


def example_counts(
    probabilities: np.ndarray,
    decided_ids: Sequence[int],
    truth_ids: Sequence[int],
    thresholds: Mapping[str, np.ndarray],
    baseline_ids: Sequence[int],
) -> Dict[str, List[int]]:
    """[tp, fp, fn] of one image under the submission's decisions, each rule, and the baseline."""
    num_labels = len(probabilities)
    truth = rules.baseline_decisions(truth_ids, num_labels)[None, :]
    out = {SUBMISSION: rules.counts(rules.baseline_decisions(decided_ids, num_labels)[None, :], truth)}
    for rule, t in thresholds.items():
        out[rule] = rules.counts((probabilities >= t)[None, :], truth)
    out[rules.BASELINE] = rules.counts(rules.baseline_decisions(baseline_ids, num_labels)[None, :], truth)
    return {rule: c.tolist() for rule, c in out.items()}


def sum_counts(dicts: Iterable[Mapping[str, Any]]) -> Dict[str, Any]:
    """Adds count dicts (lists element-wise, numbers plainly); the combiner across workers."""
    total: Dict[str, Any] = {}
    for d in dicts:
        for key, value in d.items():
            if isinstance(value, list):
                total[key] = [a + b for a, b in zip(total.get(key, [0] * len(value)), value)]
            else:
                total[key] = total.get(key, 0) + value
    return total


class ServingModelHandler(ModelHandler):
    """RunInference on the exported model's ``serving_default``: serialized tf.Example -> (id, probabilities, ids)."""

    def __init__(self, model_dir: str, batch_size: int = 64):
        super().__init__()
        self._model_dir, self._batch_size = model_dir, batch_size

    def load_model(self):
        import tensorflow as tf

        return tf.saved_model.load(self._model_dir)

    def run_inference(self, batch: Sequence[bytes], model, inference_args=None) -> Iterable[PredictionResult]:
        """(probabilities, decided ids, error) per example; a refused example has None, [] and the reason."""
        import tensorflow as tf

        signature = model.signatures[serving.SERVING_DEFAULT]
        call = lambda examples: {k: v.numpy() for k, v in signature(examples=tf.constant(examples)).items()}
        rows, errors = image_policy.score_rows(call, list(batch))
        return [
            PredictionResult(
                example,
                (None, [], error)
                if row is None
                else (row[serving.PROBABILITIES], [int(k) for k in row[serving.LABEL_IDS] if k], ""),
            )
            for example, row, error in zip(batch, rows, errors)
        ]

    def batch_elements_kwargs(self) -> Mapping[str, Any]:
        return {"min_batch_size": 1, "max_batch_size": self._batch_size}


def _image_id(serialized: bytes) -> str:
    import tensorflow as tf

    values = tf.train.Example.FromString(serialized).features.feature[features.IMAGE_ID_KEY].bytes_list.value
    if len(values) != 1:
        raise ValueError(
            f"an example has {len(values)} '{features.IMAGE_ID_KEY}' values, needs exactly 1 for its submission row"
        )
    return values[0].decode("utf-8")


def _scored(result: PredictionResult) -> Tuple[str, Optional[np.ndarray], List[int], str]:
    probabilities, decided, error = result.inference
    image_id = _image_id(result.example)
    if error:
        log.warning("%s: not scored: %s", image_id, error)
    return image_id, probabilities, decided, error


def _count(scored, labels: Mapping[str, Sequence[int]], thresholds, baseline_ids) -> Dict[str, Any]:
    image_id, probabilities, decided, error = scored
    if image_id not in labels:
        return {UNLABELLED: 1}
    if error:
        # Its empty submission row misses every label, and so does every rule (-inf is under any
        # threshold): counted as misses, not dropped, so a bad image cannot raise the score. The
        # baseline ignores pixels and still gets its fixed labels.
        nothing = np.full(len(next(iter(thresholds.values()))), -np.inf, np.float32)
        return {UNSCORABLE: 1, **example_counts(nothing, [], labels[image_id], thresholds, baseline_ids)}
    counts = example_counts(probabilities, decided, labels[image_id], thresholds, baseline_ids)
    return {SCORED: 1, **counts}


def errors_path(output_csv: str) -> str:
    """Where the job writes one line per example it could not score: ``<output>_errors.txt``."""
    return os.path.splitext(output_csv)[0] + "_errors.txt"


def score_split(
    pipeline: beam.Pipeline,
    file_pattern: str,
    model_dir: str,
    output_csv: str,
    report: Mapping[str, Any],
    labels: Optional[Mapping[str, Sequence[int]]] = None,
    counts_path: str = "",
    batch_size: int = 64,
) -> None:
    """Adds the job to ``pipeline``: the CSV at ``output_csv``, its errors at ``errors_path(output_csv)`` and,
    with ``labels``, summed counts at ``counts_path``.

    Args:
      pipeline: a Beam pipeline (its runner decides where this runs).
      file_pattern: gzip TFRecords of tf.Examples (the download job's ``<output>/test/*.tfrecord.gz``).
      model_dir: the exported (pushed) model.
      output_csv: the submission file (one shard, header ``image_id,label_id``).
      report: the model's ``thresholds.json``.
      labels: image id -> true label ids; None writes only the CSV.
      counts_path: where the summed counts go (one JSON line).
      batch_size: examples per model call.
    """
    scored = (
        pipeline
        | "Read" >> beam.io.ReadFromTFRecord(file_pattern)
        | "Infer" >> RunInference(ServingModelHandler(model_dir, batch_size))
        | "Unpack" >> beam.Map(_scored)
    )
    _ = (
        scored
        | "Row" >> beam.MapTuple(lambda image_id, _, decided, error: csv_line(image_id, decided))
        | "WriteCsv" >> beam.io.WriteToText(output_csv, num_shards=1, shard_name_template="", header=CSV_HEADER)
    )
    _ = (
        scored
        | "Refused" >> beam.Filter(lambda row: bool(row[3]))
        | "ErrorLine" >> beam.MapTuple(lambda image_id, _, decided, error: f"{image_id}: {error}")
        | "WriteErrors" >> beam.io.WriteToText(errors_path(output_csv), num_shards=1, shard_name_template="")
    )
    if labels is None:
        return
    thresholds = rule_thresholds(report)
    baseline_ids = list(report[rules.BASELINE]["label_ids"])
    _ = (
        scored
        | "Count" >> beam.Map(_count, labels=dict(labels), thresholds=thresholds, baseline_ids=baseline_ids)
        | "Sum" >> beam.CombineGlobally(sum_counts)
        | "Json" >> beam.Map(json.dumps)
        | "WriteCounts" >> beam.io.WriteToText(counts_path, num_shards=1, shard_name_template="")
    )
