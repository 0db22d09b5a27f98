"""``ValidationGate``: the component between ExampleValidator and Transform that stops a bad run.

It passes the curated schema through (``validated_schema``), and Transform and the Trainer
read that output: they cannot start before the gate has passed, on any orchestrator. The
logic and the message are in ``components/validation.py``.

In ``create_pipeline``::

    gate = ValidationGate(statistics=statistics_gen.outputs["statistics"],
                          anomalies=example_validator.outputs["anomalies"],
                          schema=schema_importer.outputs["schema"], warn_only=int(config.data.warn_only))
    transform = Transform(..., schema=gate.outputs["validated_schema"])
"""

import os
from typing import Dict

import tensorflow as tf
from tensorflow_metadata.proto.v0 import anomalies_pb2
from tfx import v1 as tfx
from tfx.components.example_validator.executor import DEFAULT_FILE_NAME
from tfx.components.statistics_gen import stats_artifact_utils
from tfx.types import artifact_utils
from tfx.utils import io_utils

from components import validation

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


def gate(statistics, anomalies, schema, validated_schema, warn_only: bool) -> None:
    """The component's logic on artifacts: enforce, then copy the schema to the output."""
    schema_file = io_utils.get_only_uri_in_dir(schema.uri)
    schema_proto = io_utils.SchemaReader().read(schema_file)
    problems = validation.check_splits(read_anomalies(anomalies), example_counts(statistics), schema_proto, warn_only)
    validated_schema.set_int_custom_property("anomalies", len(problems))
    tf.io.gfile.copy(schema_file, os.path.join(validated_schema.uri, os.path.basename(schema_file)), overwrite=True)


@tfx.dsl.components.component
def ValidationGate(
    statistics: InputArtifact[standard_artifacts.ExampleStatistics],
    anomalies: InputArtifact[standard_artifacts.ExampleAnomalies],
    schema: InputArtifact[standard_artifacts.Schema],
    validated_schema: OutputArtifact[standard_artifacts.Schema],
    warn_only: Parameter[int],  # the pipeline passes PipelineConfig.data.warn_only
) -> None:
    """Stops the run when the examples break the schema; otherwise outputs the schema unchanged.

    Args:
      statistics: StatisticsGen's output (for the example count of each split).
      anomalies: ExampleValidator's output, validated against ``schema``.
      schema: the curated schema (ImportSchemaGen's output).
      validated_schema: the same schema, for Transform and the Trainer; its ``anomalies``
        custom property counts the problems let through with ``warn_only``.
      warn_only: 1 logs the problems and continues.
    """
    gate(statistics, anomalies, schema, validated_schema, bool(warn_only))
