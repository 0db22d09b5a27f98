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

from typing import Dict, Iterable, List, Optional

import apache_beam as beam
import numpy as np
from tensorflow_model_analysis.metrics import metric_types, metric_util
from tensorflow_model_analysis.proto import config_pb2

from imat_common.serving import (
    LABEL_SLICE_EXAMPLE_COUNT,
    LABEL_SLICE_MICRO_F1,
    LABEL_SLICE_MICRO_PRECISION,
    LABEL_SLICE_MICRO_RECALL,
)
from pipeline.per_label_metrics import computation_key

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
    computations = []
    for model_name in model_names or [""]:
        for output_name in output_names or [""]:
            computations.append(
                metric_types.MetricComputation(
                    # Tells the candidate's from the baseline's, which TFMA would merge as equal.
                    keys=[computation_key(name, model_name, output_name)],
                    preprocessors=None,  # TFMA's standard labels / predictions / weights
                    combiner=_LabelSliceCombiner(name, eval_config, model_name, output_name),
                )
            )
    return computations


class _LabelSliceCombiner(beam.CombineFn):
    """Accumulates [count, tp, fp, fn] per label over the examples that carry it."""

    def __init__(self, name: str, eval_config: Optional[config_pb2.EvalConfig], model_name: str, output_name: str):
        self._name = name
        self._eval_config = eval_config
        self._model_name = model_name
        self._output_name = output_name

    def create_accumulator(self) -> Optional[np.ndarray]:
        return None  # a (labels, 4) array once the first example gives the width

    def add_input(self, accumulator: Optional[np.ndarray], element: metric_types.StandardMetricInputs) -> np.ndarray:
        for label, prediction, _ in metric_util.to_label_prediction_example_weight(
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
                    f"{self._name}: labels have {label.size} values and predictions "
                    f"{prediction.size} for output '{self._output_name}'; the labels must be "
                    "a dense multi-hot vector as wide as the predictions"
                )
            positive = prediction > DECISION_THRESHOLD
            # Labels weigh as in TFMA's confusion matrices (fractional labels split the weight).
            counts = np.array(
                [1.0, np.sum(label * positive), np.sum((1.0 - label) * positive), np.sum(label * ~positive)]
            )
            if accumulator is None:
                accumulator = np.zeros((label.size, 4))
            elif accumulator.shape[0] != label.size:
                raise ValueError(f"{self._name}: label vectors of widths {accumulator.shape[0]} and {label.size}")
            accumulator[label > 0] += counts
        return accumulator

    def merge_accumulators(self, accumulators: Iterable[Optional[np.ndarray]]) -> Optional[np.ndarray]:
        result = None
        for accumulator in accumulators:
            if accumulator is None:
                continue
            if result is None:
                result = accumulator.copy()
            elif result.shape != accumulator.shape:
                raise ValueError(f"{self._name}: label vectors of widths {result.shape[0]} and {accumulator.shape[0]}")
            else:
                result += accumulator
        return result

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
                output[
                    metric_types.MetricKey(
                        name=metric,
                        model_name=self._model_name,
                        output_name=self._output_name,
                        sub_key=metric_types.SubKey(class_id=class_id),
                    )
                ] = float(value)
        return output


def _ratio(numerator: float, denominator: float) -> float:
    return numerator / denominator if denominator > 0 else float("nan")
