"""TFMA metrics: each label's precision, recall, F1 and AUC, all labels in one vectorised combiner.

TFMA's own per-label metrics (``MetricsSpec.binarize`` with one class id per label) run one
combiner per label and metric family: every example went through 2 x labels Python combiners
(precision/recall/F1 share a confusion matrix, AUC has its own histogram), about three quarters
of the Evaluator's CPU beyond the forward pass at 228 labels (measured: docs/benchmarks.md,
"Evaluator: per-label metrics in one combiner"). These add one example to every label's counts in
a few numpy operations, and write the keys TFMA's binarized metrics write (``precision``,
``recall``, ``f1_score`` and ``auc`` under sub key ``classId:k``), so the report, the baseline
diffs and the intervals read them unchanged.

Definitions are TFMA's: a prediction is positive when above the threshold (0.5 for the
decisions); an undefined ratio is NaN; AUC is the ROC curve's trapezoidal area over
``num_thresholds`` thresholds evenly spaced in [0, 1] with -1e-7 and 1 + 1e-7 at the ends.
AUC counts probabilities as TFMA's histogram does: truncated to 10,000 buckets first, so the
values equal TFMA's. One difference: where a label has no positive or no negative example,
TFMA's AUC is 0 (a sum of undefined terms), and here NaN.
"""

from typing import Dict, Iterable, List, Optional, Tuple

import apache_beam as beam
import numpy as np
from tensorflow_model_analysis.metrics import metric_types, metric_util
from tensorflow_model_analysis.proto import config_pb2

PER_LABEL_METRICS_NAME = "per_label_metrics"
PER_LABEL_AUC_NAME = "per_label_auc"
DEFAULT_THRESHOLD = 0.5  # TFMA's threshold for precision, recall and F1
DEFAULT_NUM_THRESHOLDS = 200
_EPSILON = 1e-7  # TFMA's fence posts below 0 and above 1
_HISTOGRAM_BUCKETS = 10_000  # calibration_histogram.DEFAULT_NUM_BUCKETS


def auc_thresholds(num_thresholds: int) -> np.ndarray:
    """TFMA's thresholds for AUC at ``num_thresholds`` (``binary_confusion_matrices._interpolated_thresholds``)."""
    if num_thresholds < 2:
        raise ValueError(f"num_thresholds must be at least 2, got {num_thresholds}")
    inner = [(i + 1) / (num_thresholds - 1) for i in range(num_thresholds - 2)]
    return np.asarray([-_EPSILON, *inner, 1.0 + _EPSILON])


def threshold_intervals(predictions: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    """For each prediction, how many of ``thresholds`` (``auc_thresholds``) it counts as positive at.

    TFMA's histogram path, vectorised: a prediction is truncated to the left edge of its 1/10,000
    bucket (below 0: minus infinity, from 1: plus infinity), then is positive at the first
    threshold always, at the last never, and at threshold j between when at least
    ``thresholds[j] + 1e-7``.
    """
    index = predictions * _HISTOGRAM_BUCKETS + 1
    bucket = np.where(index < 0, 0, np.where(index >= _HISTOGRAM_BUCKETS + 1, _HISTOGRAM_BUCKETS + 1, index))
    bucket = np.trunc(bucket)
    edge = np.where(
        bucket == 0, -np.inf, np.where(bucket >= _HISTOGRAM_BUCKETS + 1, np.inf, (bucket - 1) / _HISTOGRAM_BUCKETS)
    )
    inner = thresholds[1:-1] + _EPSILON
    return 1 + np.searchsorted(inner, edge, side="right")


def roc_auc(positives_above: np.ndarray, negatives_above: np.ndarray) -> np.ndarray:
    """Per label, the ROC AUC from the positive and negative weight above each threshold.

    Args:
      positives_above, negatives_above: [labels, thresholds], non-increasing along thresholds
        (true and false positives at each threshold, the lowest threshold first).

    Returns:
      [labels]; NaN for a label with no positives or no negatives (TFMA's ``nansum`` of NaNs is 0;
      here an AUC that cannot be defined says so).
    """
    positives, negatives = positives_above[:, :1], negatives_above[:, :1]
    with np.errstate(invalid="ignore", divide="ignore"):
        recall = positives_above / positives
        fp_rate = negatives_above / negatives
    area = np.sum((fp_rate[:, :-1] - fp_rate[:, 1:]) * (recall[:, :-1] + recall[:, 1:]) / 2.0, axis=1)
    return np.where((positives[:, 0] > 0) & (negatives[:, 0] > 0), area, np.nan)


def _ratio(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(denominator > 0, numerator / denominator, np.nan)


class VectorCombiner(beam.CombineFn):
    """Shared plumbing of per-label combiners (also ``pipeline.label_metrics``): reads each example's
    whole label and prediction vectors, checked, and sums numpy arrays."""

    def __init__(self, name: str, eval_config: Optional[config_pb2.EvalConfig], model_name: str, output_name: str):
        self._name = name
        self._eval_config = eval_config
        self._model_name = model_name
        self._output_name = output_name

    def _vectors(self, element: metric_types.StandardMetricInputs) -> Iterable[Tuple[np.ndarray, np.ndarray, float]]:
        for label, prediction, weight in metric_util.to_label_prediction_example_weight(
            element,
            eval_config=self._eval_config,
            model_name=self._model_name,
            output_name=self._output_name,
            flatten=False,
            squeeze=False,
        ):
            label = np.asarray(label, np.float64).reshape(-1)
            prediction = np.asarray(prediction, np.float64).reshape(-1)
            if label.shape != prediction.shape:
                raise ValueError(
                    f"{self._name}: labels have {label.size} values and predictions {prediction.size} for "
                    f"output '{self._output_name}'; the labels must be a dense multi-hot vector as wide as "
                    "the predictions"
                )
            # TFMA refuses these too; here they would count silently wrong.
            if label.size and (label.min() < 0.0 or label.max() > 1.0):
                raise ValueError(
                    f"{self._name}: labels of output '{self._output_name}' outside [0, 1] "
                    f"(from {label.min()} to {label.max()}); they must be a multi-hot vector"
                )
            if np.isnan(prediction).any():
                raise ValueError(
                    f"{self._name}: output '{self._output_name}' predicted NaN for label(s) "
                    f"{np.flatnonzero(np.isnan(prediction)).tolist()[:10]}"
                )
            yield label, prediction, float(np.asarray(weight).reshape(-1)[0])

    def create_accumulator(self) -> Optional[np.ndarray]:
        return None  # shaped by the first example: the label count is known only then

    def _width(self, accumulator: np.ndarray) -> int:
        return accumulator.shape[0]

    def _add(self, accumulator: Optional[np.ndarray], counts: np.ndarray) -> np.ndarray:
        """``accumulator`` + ``counts``, in place; the first one is kept as it is."""
        if accumulator is None:
            return counts
        if accumulator.shape != counts.shape:
            raise ValueError(
                f"{self._name}: label vectors of widths {self._width(accumulator)} and {self._width(counts)}"
            )
        accumulator += counts
        return accumulator

    def merge_accumulators(self, accumulators: Iterable[Optional[np.ndarray]]) -> Optional[np.ndarray]:
        result = None
        for accumulator in accumulators:
            if accumulator is not None:
                result = accumulator.copy() if result is None else self._add(result, accumulator)
        return result

    def _key(self, name: str, class_id: int) -> metric_types.MetricKey:
        # TFMA's binarized metrics' keys, so readers of those find these.
        return metric_types.MetricKey(
            name=name,
            model_name=self._model_name,
            output_name=self._output_name,
            sub_key=metric_types.SubKey(class_id=class_id),
            example_weighted=False,
        )


class _ConfusionCombiner(VectorCombiner):
    """Accumulates [labels, 3]: true positives, false positives, false negatives at the threshold."""

    def __init__(self, threshold: float, **kwargs):
        super().__init__(**kwargs)
        self._threshold = threshold

    def add_input(self, accumulator, element):
        for label, prediction, weight in self._vectors(element):
            positive = prediction > self._threshold
            counts = np.stack([label * positive, (1.0 - label) * positive, label * ~positive], axis=1) * weight
            accumulator = self._add(accumulator, counts)
        return accumulator

    def extract_output(self, accumulator) -> Dict[metric_types.MetricKey, float]:
        if accumulator is None:
            return {}
        tp, fp, fn = accumulator.T
        values = {
            "precision": _ratio(tp, tp + fp),
            "recall": _ratio(tp, tp + fn),
            "f1_score": _ratio(2 * tp, 2 * tp + fp + fn),
        }
        return {
            self._key(name, k): float(column[k]) for name, column in values.items() for k in range(accumulator.shape[0])
        }


class _AUCCombiner(VectorCombiner):
    """Accumulates [2, labels, thresholds + 1]: positive and negative weight per label in each threshold interval."""

    def __init__(self, num_thresholds: int, **kwargs):
        super().__init__(**kwargs)
        self._thresholds = auc_thresholds(num_thresholds)

    def _width(self, accumulator: np.ndarray) -> int:
        return accumulator.shape[1]

    def add_input(self, accumulator, element):
        for label, prediction, weight in self._vectors(element):
            if accumulator is None:
                accumulator = np.zeros((2, label.size, self._thresholds.size + 1))
            elif accumulator.shape[1] != label.size:
                raise ValueError(f"{self._name}: label vectors of widths {accumulator.shape[1]} and {label.size}")
            # Interval i: positive at thresholds 0..i-1.
            interval = threshold_intervals(prediction, self._thresholds)
            rows = np.arange(label.size)  # one interval per label: no repeated index in the update
            accumulator[0, rows, interval] += label * weight
            accumulator[1, rows, interval] += (1.0 - label) * weight
        return accumulator

    def extract_output(self, accumulator) -> Dict[metric_types.MetricKey, float]:
        if accumulator is None:
            return {}
        # Weight above threshold j: the intervals after j, summed from the top.
        above = np.cumsum(accumulator[:, :, ::-1], axis=2)[:, :, ::-1][:, :, 1:]
        aucs = roc_auc(above[0], above[1])
        return {self._key("auc", k): float(aucs[k]) for k in range(aucs.size)}


def computation_key(name: str, model_name: str, output_name: str) -> metric_types.MetricKey:
    """The key that tells one model's and output's computation from another's; never an output itself.

    TFMA runs one of several computations equal in combiner class, keys and preprocessors: without
    a key naming the model, the baseline model's would be dropped as a copy of the candidate's,
    and with it every per-label diff. The outputs, one key per label, are known only once the
    first example gives the width.
    """
    return metric_types.MetricKey(name=name, model_name=model_name, output_name=output_name, example_weighted=False)


def computations(combiner_class, name, eval_config, model_names, output_names, **kwargs) -> List:
    """One ``combiner_class`` computation per model and output, each under its ``computation_key``."""
    return [
        metric_types.MetricComputation(
            keys=[computation_key(name, model_name, output_name)],
            preprocessors=None,  # TFMA's standard labels, predictions and weights
            combiner=combiner_class(
                name=name, eval_config=eval_config, model_name=model_name, output_name=output_name, **kwargs
            ),
        )
        for model_name in model_names or [""]
        for output_name in output_names or [""]
    ]


def _per_label_metrics(
    name: str = PER_LABEL_METRICS_NAME,
    threshold: float = DEFAULT_THRESHOLD,
    eval_config: Optional[config_pb2.EvalConfig] = None,
    model_names: Optional[List[str]] = None,
    output_names: Optional[List[str]] = None,
) -> metric_types.MetricComputations:
    return computations(_ConfusionCombiner, name, eval_config, model_names, output_names, threshold=threshold)


def _per_label_auc(
    name: str = PER_LABEL_AUC_NAME,
    num_thresholds: int = DEFAULT_NUM_THRESHOLDS,
    eval_config: Optional[config_pb2.EvalConfig] = None,
    model_names: Optional[List[str]] = None,
    output_names: Optional[List[str]] = None,
) -> metric_types.MetricComputations:
    return computations(_AUCCombiner, name, eval_config, model_names, output_names, num_thresholds=num_thresholds)


class PerLabelMetrics(metric_types.Metric):
    """Each label's ``precision``, ``recall`` and ``f1_score`` at ``threshold``, under ``classId:k``.

    Use in a ``MetricsSpec`` without ``binarize`` or ``aggregate``: it reads each output's whole
    label and prediction vectors.
    """

    def __init__(self, name: str = PER_LABEL_METRICS_NAME, threshold: float = DEFAULT_THRESHOLD):
        super().__init__(_per_label_metrics, name=name, threshold=threshold)


class PerLabelAUC(metric_types.Metric):
    """Each label's ROC ``auc`` over ``num_thresholds`` thresholds, under ``classId:k``.

    Use in a ``MetricsSpec`` without ``binarize`` or ``aggregate``, on probabilities.
    """

    def __init__(self, name: str = PER_LABEL_AUC_NAME, num_thresholds: int = DEFAULT_NUM_THRESHOLDS):
        if num_thresholds < 2:
            raise ValueError(f"num_thresholds must be at least 2, got {num_thresholds}")
        super().__init__(_per_label_auc, name=name, num_thresholds=num_thresholds)


metric_types.register_metric(PerLabelMetrics)
metric_types.register_metric(PerLabelAUC)
