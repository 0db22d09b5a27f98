"""``ValidationGate``: the component between ExampleValidator and Transform that stops a bad run.

It passes the curated schema through (``validated_schema``), and Transform and the Trainer
read that output: they cannot start before the gate has passed, on any orchestrator. The
logic and the message are in ``components/validation.py``; with spans it also stops on drift
between the newest span and the previous one, and on skew between the train split (the window)
and the eval split (the newest span) (``components/drift.py``), and records each measured
distance on ``validated_schema`` (``drift:<feature>``, ``skew:<feature>``) for ``imat report``.

In ``create_pipeline``::

    gate = ValidationGate(statistics=statistics_gen.outputs["statistics"],
                          anomalies=example_validator.outputs["anomalies"],
                          schema=schema_importer.outputs["schema"], warn_only=int(config.data.warn_only))
    transform = Transform(..., schema=gate.outputs["validated_schema"])
"""

import logging
import os
from typing import Dict, List, Optional

import tensorflow as tf
from tensorflow_metadata.proto.v0 import anomalies_pb2
from tfx import v1 as tfx
from tfx.components.example_validator.executor import DEFAULT_FILE_NAME
from tfx.components.statistics_gen import stats_artifact_utils
from tfx.types import artifact_utils
from tfx.utils import io_utils

from components import drift, validation
from components.calibration_split import PREVIOUS_SPAN_PROPERTY, TRAIN_SPANS_PROPERTY
from imat_common.splits import DRIFT_NEW, DRIFT_PREVIOUS, DRIFT_SPLITS, EVAL, TRAIN

log = logging.getLogger(__name__)

InputArtifact, OutputArtifact = tfx.dsl.components.InputArtifact, tfx.dsl.components.OutputArtifact
Parameter = tfx.dsl.components.Parameter
standard_artifacts = tfx.types.standard_artifacts


def read_anomalies(anomalies) -> Dict[str, anomalies_pb2.Anomalies]:
    """Split name -> ExampleValidator's Anomalies proto of that split."""
    result = {}
    for split in artifact_utils.decode_split_names(anomalies.split_names):
        path = os.path.join(artifact_utils.get_split_uri([anomalies], split), DEFAULT_FILE_NAME)
        result[split] = anomalies_pb2.Anomalies.FromString(io_utils.read_bytes_file(path))
    return result


def example_counts(statistics) -> Dict[str, int]:
    """Split name -> number of examples, from StatisticsGen's output."""
    counts = {}
    for split in artifact_utils.decode_split_names(statistics.split_names):
        view = stats_artifact_utils.load_statistics(statistics, split).proto()
        counts[split] = sum(dataset.num_examples for dataset in view.datasets)
    return counts


def drift_problems(
    statistics, schema_proto, new_span: Optional[int], previous_span: Optional[int], validated_schema
) -> List[str]:
    """The drift lines of a run on spans (none without spans or on the first span).

    Each measured distance is recorded on ``validated_schema`` as ``drift:<feature>``.
    """
    names = artifact_utils.decode_split_names(statistics.split_names)
    if not set(DRIFT_SPLITS) <= set(names):
        return []
    if previous_span is None:
        log.info("span %s is the first: no previous span to measure drift against", new_span)
        return []
    if not drift.thresholds(schema_proto):
        # A schema written before spans: without this line the run would go on unchecked.
        return [
            "the data comes in spans but the schema has no drift thresholds: regenerate it with "
            "`imat schema --label_map CSV --output schema.pbtxt`"
        ]
    load = lambda split: stats_artifact_utils.load_statistics(statistics, split).proto()
    drifts = drift.measure(load(DRIFT_NEW), load(DRIFT_PREVIOUS), schema_proto)
    for d in drifts:
        validated_schema.set_float_custom_property(drift.PROPERTY_PREFIX + d.feature, d.value)
        log.info(
            "drift in %s against span %s: %s %.4f (threshold %g)",
            d.feature,
            previous_span,
            d.kind,
            d.value,
            d.threshold,
        )
    return drift.drift_lines(drifts, new_span, previous_span)


def skew_problems(statistics, schema_proto, train_spans: str, new_span: Optional[int], validated_schema) -> List[str]:
    """The skew lines of a run on spans: its train split (the window) against its eval split (the newest span).

    Not measured without spans, without skew thresholds in the schema, or on an eval split of
    fewer than ``drift.SKEW_MIN_EXAMPLES`` images (too few to tell skew from chance). Each
    measured distance is recorded on ``validated_schema`` as ``skew:<feature>``.
    """
    names = artifact_utils.decode_split_names(statistics.split_names)
    if not set(DRIFT_SPLITS) <= set(names) or not drift.skew_thresholds(schema_proto):
        return []
    load = lambda split: stats_artifact_utils.load_statistics(statistics, split).proto()
    serving = load(EVAL)
    eval_images = sum(dataset.num_examples for dataset in serving.datasets)
    if eval_images < drift.SKEW_MIN_EXAMPLES:
        log.info(
            "skew between train and eval not measured: the eval split has %d images, fewer than %d",
            eval_images,
            drift.SKEW_MIN_EXAMPLES,
        )
        return []
    skews = drift.measure_skew(load(TRAIN), serving, schema_proto)
    for d in skews:
        validated_schema.set_float_custom_property(drift.SKEW_PROPERTY_PREFIX + d.feature, d.value)
        log.info("skew in %s, train against eval: %s %.4f (threshold %g)", d.feature, d.kind, d.value, d.threshold)
    return drift.skew_lines(skews, train_spans, new_span)


def gate(statistics, anomalies, schema, validated_schema, warn_only: bool, examples=None) -> None:
    """The component's logic on artifacts: enforce, then copy the schema to the output."""
    schema_file = io_utils.get_only_uri_in_dir(schema.uri)
    schema_proto = io_utils.SchemaReader().read(schema_file)
    counts = {split: n for split, n in example_counts(statistics).items() if split not in DRIFT_SPLITS}
    read = examples.get_string_custom_property(TRAIN_SPANS_PROPERTY) if examples is not None else ""
    previous = examples.get_string_custom_property(PREVIOUS_SPAN_PROPERTY) if examples is not None else ""
    new_span = int(read.split(",")[-1]) if read else None  # the window ends with the span read
    extra = drift_problems(statistics, schema_proto, new_span, int(previous) if previous else None, validated_schema)
    extra += skew_problems(statistics, schema_proto, read, new_span, validated_schema)
    problems = validation.check_splits(read_anomalies(anomalies), counts, schema_proto, warn_only, extra=extra)
    validated_schema.set_int_custom_property("anomalies", len(problems))
    tf.io.gfile.copy(schema_file, os.path.join(validated_schema.uri, os.path.basename(schema_file)), overwrite=True)


@tfx.dsl.components.component
def ValidationGate(
    statistics: InputArtifact[standard_artifacts.ExampleStatistics],
    anomalies: InputArtifact[standard_artifacts.ExampleAnomalies],
    schema: InputArtifact[standard_artifacts.Schema],
    validated_schema: OutputArtifact[standard_artifacts.Schema],
    warn_only: Parameter[int],  # the pipeline passes PipelineConfig.data.warn_only
    examples: InputArtifact[standard_artifacts.Examples] = None,
) -> None:
    """Stops the run when the examples break the schema or drifted; otherwise outputs the schema unchanged.

    Args:
      statistics: StatisticsGen's output (the example count of each split, and the drift splits).
      anomalies: ExampleValidator's output, validated against ``schema``.
      schema: the curated schema (ImportSchemaGen's output), with the drift thresholds.
      validated_schema: the same schema, for Transform and the Trainer; its ``anomalies``
        custom property counts the problems let through with ``warn_only``.
      warn_only: 1 logs the problems and continues.
      examples: ExampleGen's output, for the span drift was measured against.
    """
    gate(statistics, anomalies, schema, validated_schema, bool(warn_only), examples)
