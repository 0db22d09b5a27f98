"""Drift between the newest span and the previous one, measured before anything trains.

ExampleGen (``components/calibration_split.py``) writes two slim splits when the data comes in
spans: ``drift_new`` (the newest span's train folder) and ``drift_previous`` (the train folder
of the span before it), each example reduced to its labels, its image's height and width and
its JPEG's size in bytes (``slim_example``). StatisticsGen describes them like any split, for
the price of a few integers per image, and the ValidationGate compares the two with TFDV's
drift comparators, whose thresholds are in the curated schema (``pipeline/schema.py``):

- ``labels``: L-infinity distance between the two label distributions (the largest change
  in any one label's share of the label occurrences);
- ``labels/<task>`` (one per task of the label map, in the drift splits only): the same
  distance within each task, each label's share of that task's occurrences, so that a change
  inside a small task (gender, say) is not diluted by the other tasks' labels;
- ``image/height``, ``image/width``, ``image/num_bytes``: approximate Jensen-Shannon
  divergence between the two histograms (a new studio, a new camera, darker photos).

Why slim splits rather than a resolver that finds the previous run's statistics in ML Metadata:
they work the same on every orchestrator (the Kubeflow V2 compiler accepts only TFX's own
resolver strategies), they compare spans, not runs (a rerun of the same span is not "the
previous data"), and they cost one pass over the previous span's records, no decoding.

This module holds the plain logic: no TFX import.
"""

import dataclasses
from typing import Dict, List, Mapping, Optional

from tensorflow.core.example import example_pb2
from tensorflow_metadata.proto.v0 import anomalies_pb2, schema_pb2, statistics_pb2

from imat_common import features

# The ValidationGate records each measured distance on its Schema output as ``drift:<feature>``.
PROPERTY_PREFIX = "drift:"
SKEW_PROPERTY_PREFIX = "skew:"

_KIND = {
    anomalies_pb2.DriftSkewInfo.Measurement.L_INFTY: "L-infinity distance",
    anomalies_pb2.DriftSkewInfo.Measurement.JENSEN_SHANNON_DIVERGENCE: "Jensen-Shannon divergence",
}


def slim_example(example: example_pb2.Example, tasks: Optional[Mapping[int, str]] = None) -> example_pb2.Example:
    """What drift is measured on: labels, height, width and the JPEG's size in bytes.

    Args:
      example: a download job's example.
      tasks: label id -> task name (the label map's); each task's label ids are also written
        as ``labels/<task>``. A label id the map lacks is left out there (the schema's domain
        check on the train split reports it).
    """
    source = example.features.feature
    slim = example_pb2.Example()
    for key in (features.LABELS_KEY, features.HEIGHT_KEY, features.WIDTH_KEY):
        if key in source:
            slim.features.feature[key].CopyFrom(source[key])
    if tasks and features.LABELS_KEY in source:
        for label_id in source[features.LABELS_KEY].int64_list.value:
            if label_id in tasks:
                slim.features.feature[features.task_labels_key(tasks[label_id])].int64_list.value.append(label_id)
    jpegs = source[features.IMAGE_KEY].bytes_list.value if features.IMAGE_KEY in source else []
    slim.features.feature[features.NUM_BYTES_KEY].int64_list.value.extend(len(jpeg) for jpeg in jpegs)
    return slim


@dataclasses.dataclass(frozen=True)
class Drift:
    """One feature's measured drift against its threshold."""

    feature: str
    kind: str
    value: float
    threshold: float
    detail: str = ""

    @property
    def exceeded(self) -> bool:
        return self.value > self.threshold

    def line(self, new_span: Optional[int], previous_span: Optional[int]) -> str:
        spans = f"span {new_span} against span {previous_span}" if new_span is not None else "the new data"
        detail = f" ({self.detail})" if self.detail else ""
        return (
            f"drift in '{self.feature}' between the train folders of {spans}: {self.kind} {self.value:.4g} "
            f"above the schema's threshold {self.threshold:g}{detail}"
        )


def thresholds(schema: schema_pb2.Schema) -> Dict[str, float]:
    """Feature name -> the threshold of its drift comparator in ``schema`` (features without one left out)."""
    found = {}
    for feature in schema.feature:
        comparator = feature.drift_comparator
        if comparator.HasField("infinity_norm"):
            found[feature.name] = comparator.infinity_norm.threshold
        elif comparator.HasField("jensen_shannon_divergence"):
            found[feature.name] = comparator.jensen_shannon_divergence.threshold
    return found


def _max_value(description: str) -> str:
    marker = "The feature value with maximum difference is: "
    return f"most changed value: {description.split(marker, 1)[1].strip()}" if marker in description else ""


def measure(
    new: statistics_pb2.DatasetFeatureStatisticsList,
    previous: statistics_pb2.DatasetFeatureStatisticsList,
    schema: schema_pb2.Schema,
) -> List[Drift]:
    """Every drift comparator of ``schema``, measured between two splits' statistics.

    Args:
      new: StatisticsGen's statistics of ``drift_new``.
      previous: those of ``drift_previous``.
      schema: the curated schema; its features' ``drift_comparator`` thresholds apply.

    Returns:
      One ``Drift`` per compared feature, exceeded or not, by feature name.
    """
    import tensorflow_data_validation as tfdv  # lazy: heavy, and only the gate needs it

    result = tfdv.validate_statistics(new, schema, previous_statistics=previous)
    drifts = []
    for info in result.drift_skew_info:
        name = "/".join(info.path.step)
        description = result.anomaly_info[name].description if name in result.anomaly_info else ""
        for m in info.drift_measurements:
            drifts.append(Drift(name, _KIND.get(m.type, str(m.type)), m.value, m.threshold, _max_value(description)))
    return sorted(drifts, key=lambda d: d.feature)


# Fewer eval images than this and the skew check is not made: the train split against a sample of
# this size stayed under the label threshold in every unchanged draw (docs/benchmarks.md, "Drift").
SKEW_MIN_EXAMPLES = 200


def skew_thresholds(schema: schema_pb2.Schema) -> Dict[str, float]:
    """Feature name -> the threshold of its skew comparator in ``schema`` (features without one left out)."""
    found = {}
    for feature in schema.feature:
        comparator = feature.skew_comparator
        if comparator.HasField("infinity_norm"):
            found[feature.name] = comparator.infinity_norm.threshold
        elif comparator.HasField("jensen_shannon_divergence"):
            found[feature.name] = comparator.jensen_shannon_divergence.threshold
    return found


def measure_skew(
    training: statistics_pb2.DatasetFeatureStatisticsList,
    serving: statistics_pb2.DatasetFeatureStatisticsList,
    schema: schema_pb2.Schema,
) -> List[Drift]:
    """Every skew comparator of ``schema``, measured between what the model trains on and what it is scored on.

    Args:
      training: StatisticsGen's statistics of the ``train`` split (the run's window of spans).
      serving: those of the ``eval`` split (the newest span's, what the gate scores).
      schema: the curated schema; its features' ``skew_comparator`` thresholds apply.
    """
    import tensorflow_data_validation as tfdv

    result = tfdv.validate_statistics(training, schema, serving_statistics=serving)
    skews = []
    for info in result.drift_skew_info:
        name = "/".join(info.path.step)
        description = result.anomaly_info[name].description if name in result.anomaly_info else ""
        for m in info.skew_measurements:
            skews.append(Drift(name, _KIND.get(m.type, str(m.type)), m.value, m.threshold, _max_value(description)))
    return sorted(skews, key=lambda d: d.feature)


def skew_lines(skews: List[Drift], train_spans: str, new_span: Optional[int]) -> List[str]:
    """One line per feature whose train/eval skew is above its threshold."""
    return [
        f"skew in '{d.feature}' between the train split (spans {train_spans}) and the eval split (span {new_span}): "
        f"{d.kind} {d.value:.4g} above the schema's threshold {d.threshold:g}" + (f" ({d.detail})" if d.detail else "")
        for d in skews
        if d.exceeded
    ]


def drift_lines(drifts: List[Drift], new_span: Optional[int], previous_span: Optional[int]) -> List[str]:
    """One line per feature whose drift is above its threshold."""
    return [d.line(new_span, previous_span) for d in drifts if d.exceeded]
