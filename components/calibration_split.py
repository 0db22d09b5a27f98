"""ImportExampleGen, extended: the validation folder becomes a calibration split and an eval split.

The Trainer tunes its decision thresholds on ``calibration`` and the Evaluator scores (and
gates on) ``eval``, so the gate's micro-F1 is out of sample. Both splits are written by
ExampleGen and recorded in ML Metadata like ``train``. ImportExampleGen can hash-partition
only a single input; here ``train`` keeps its own folder, so this executor reads the holdout
folder for both splits and keeps in each the examples whose image id falls in its buckets:
``sha256(image_id) % 100 < calibration_percent`` is calibration, the rest is eval (the hash
ExampleGen's own output splits use). Deterministic: an image stays in its split from run to
run and as the folder grows.

In ``create_pipeline``::

    example_gen = calibration_example_gen(config.locations.data_root, "train/*.tfrecord.gz",
                                          "validation/*.tfrecord.gz", config.data.calibration_percent)
"""

import hashlib
from typing import Any, Dict

import apache_beam as beam
from google.protobuf import struct_pb2
from tfx.components.example_gen.component import FileBasedExampleGen
from tfx.components.example_gen.import_example_gen import executor as import_executor
from tfx.dsl.components.base import executor_spec
from tfx.proto import example_gen_pb2
from tfx.types import standard_component_specs

from imat_common.splits import CALIBRATION, EVAL, TRAIN
from tfx.utils import proto_utils

from imat_common import features

_PERCENT_KEY = "calibration_percent"


def bucket(image_id: bytes) -> int:
    """The image's bucket in 0..99."""
    return int(hashlib.sha256(image_id).hexdigest(), 16) % 100


def in_calibration(image_id: bytes, calibration_percent: int) -> bool:
    return bucket(image_id) < calibration_percent


def image_id_of(example, split: str) -> bytes:
    """The ``image_id`` of a tf.train.Example.

    Raises:
      ValueError: the example has no single image id (it could land in either split).
    """
    values = example.features.feature[features.IMAGE_ID_KEY].bytes_list.value
    if len(values) != 1:
        raise ValueError(
            f"an example read for split '{split}' has {len(values)} '{features.IMAGE_ID_KEY}' values, "
            f"needs exactly 1 to be assigned to calibration or eval: {str(example)[:200]!r}"
        )
    return values[0]


def _settings(exec_properties: Dict[str, Any]) -> int:
    custom = proto_utils.json_to_proto(
        exec_properties[standard_component_specs.CUSTOM_CONFIG_KEY], example_gen_pb2.CustomConfig()
    )
    struct = struct_pb2.Struct()
    custom.custom_config.Unpack(struct)
    percent = int(struct[_PERCENT_KEY])
    if not 0 < percent < 100:
        raise ValueError(f"{_PERCENT_KEY} must be in 1..99, got {percent}")
    return percent


class Executor(import_executor.Executor):
    """ImportExampleGen's executor with the ``calibration`` and ``eval`` splits partitioned by image id."""

    def GenerateExamplesByBeam(
        self, pipeline: beam.Pipeline, exec_properties: Dict[str, Any]
    ) -> Dict[str, beam.pvalue.PCollection]:
        splits = super().GenerateExamplesByBeam(pipeline, exec_properties)
        percent = _settings(exec_properties)
        for name, wanted in ((CALIBRATION, True), (EVAL, False)):
            splits[name] = splits[name] | f"Partition[{name}]" >> beam.Filter(
                lambda example, split, keep: in_calibration(image_id_of(example, split), percent) == keep,
                split=name,
                keep=wanted,
            )
        return splits


def calibration_example_gen(
    input_base: str, train_pattern: str, holdout_pattern: str, calibration_percent: int
) -> FileBasedExampleGen:
    """ExampleGen with splits ``train``, ``calibration`` and ``eval``, under the id ``ImportExampleGen``.

    Args:
      input_base: the download job's ``--output``.
      train_pattern: the train files, relative to ``input_base``.
      holdout_pattern: the files cut into calibration and eval (the competition's validation split).
      calibration_percent: the share of holdout images (by hash of the image id) used for calibration.
    """
    if not 0 < calibration_percent < 100:
        raise ValueError(f"calibration_percent must be in 1..99, got {calibration_percent}")
    custom = example_gen_pb2.CustomConfig()
    settings = struct_pb2.Struct()
    settings.update({_PERCENT_KEY: calibration_percent})
    custom.custom_config.Pack(settings)
    return FileBasedExampleGen(
        input_base=input_base,
        input_config=example_gen_pb2.Input(
            splits=[
                example_gen_pb2.Input.Split(name=TRAIN, pattern=train_pattern),
                example_gen_pb2.Input.Split(name=CALIBRATION, pattern=holdout_pattern),
                example_gen_pb2.Input.Split(name=EVAL, pattern=holdout_pattern),
            ]
        ),
        custom_config=custom,
        custom_executor_spec=executor_spec.BeamExecutorSpec(Executor),
    ).with_id("ImportExampleGen")
