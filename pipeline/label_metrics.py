"""A TFMA metric: per label k, the example count and micro-averaged metrics of the images that carry k.

These are the numbers a per-label slice (``SlicingSpec(feature_keys=["labels"])``) gave, computed on
the overall slice instead. TFMA 0.47 computes every metric in every slice (a ``MetricsSpec`` cannot be
restricted to some slices), so per-label slices also re-computed every per-label metric: each example
fed 1 + (its labels) slices x all labels' metrics. Here each example adds its decision counts to the
rows of the labels it carries, one vectorised step, so the cost is linear in examples x labels.

Output, under the overall slice and output ``decisions``, sub key ``classId:k`` (label id k+1):
``label_slice_example_count``, ``label_slice_micro_precision``, ``label_slice_micro_recall`` and
``label_slice_micro_f1``, unweighted, with TFMA's definitions (a decision counts as positive above 0.5; an
undefined ratio is NaN).
"""

from typing import Dict, List, Optional

import numpy as np
from tensorflow_model_analysis.metrics import metric_types
from tensorflow_model_analysis.proto import config_pb2

from imat_common.serving import (
    LABEL_SLICE_EXAMPLE_COUNT,
    LABEL_SLICE_MICRO_F1,
    LABEL_SLICE_MICRO_PRECISION,
    LABEL_SLICE_MICRO_RECALL,
)
from pipeline.per_label_metrics import VectorCombiner, computations

LABEL_SLICE_METRICS_NAME = "label_slice_metrics"
DECISION_THRESHOLD = 0.5  # TFMA's default threshold for precision, recall and F1


class LabelSliceMetrics(metric_types.Metric):
    """Per label k: example count, micro precision, recall and F1 over the images carrying k.

    Use in a ``MetricsSpec`` without ``binarize`` or ``aggregate``; it reads each output's whole
    multi-hot label and prediction vectors.
    """

    def __init__(self, name: str = LABEL_SLICE_METRICS_NAME):
        super().__init__(_label_slice_metrics, name=name)


metric_types.register_metric(LabelSliceMetrics)


def _label_slice_metrics(
    name: str = LABEL_SLICE_METRICS_NAME,
    eval_config: Optional[config_pb2.EvalConfig] = None,
    model_names: Optional[List[str]] = None,
    output_names: Optional[List[str]] = None,
) -> metric_types.MetricComputations:
    return computations(_LabelSliceCombiner, name, eval_config, model_names, output_names)


class _LabelSliceCombiner(VectorCombiner):
    """Accumulates [count, tp, fp, fn] per label over the examples that carry it."""

    def add_input(self, accumulator: Optional[np.ndarray], element: metric_types.StandardMetricInputs) -> np.ndarray:
        for label, prediction, _ in self._vectors(element):
            positive = prediction > DECISION_THRESHOLD
            # Labels weigh as in TFMA's confusion matrices (fractional labels split the weight).
            counts = np.array(
                [1.0, np.sum(label * positive), np.sum((1.0 - label) * positive), np.sum(label * ~positive)]
            )
            accumulator = self._add(accumulator, np.outer(label > 0, counts))
        return accumulator

    def extract_output(self, accumulator: Optional[np.ndarray]) -> Dict[metric_types.MetricKey, float]:
        output = {}
        for class_id, (count, tp, fp, fn) in enumerate(accumulator if accumulator is not None else []):
            values = {
                LABEL_SLICE_EXAMPLE_COUNT: count,
                LABEL_SLICE_MICRO_PRECISION: _ratio(tp, tp + fp),
                LABEL_SLICE_MICRO_RECALL: _ratio(tp, tp + fn),
                LABEL_SLICE_MICRO_F1: _ratio(2 * tp, 2 * tp + fp + fn),
            }
            for metric, value in values.items():
                output[self._key(metric, class_id)] = float(value)
        return output


def _ratio(numerator: float, denominator: float) -> float:
    return numerator / denominator if denominator > 0 else float("nan")
