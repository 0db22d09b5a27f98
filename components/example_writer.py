"""ImportExampleGen's executor, writing its splits as gzip TFRecords of stored blocks.

TFX's ExampleGen writes each split through Beam's gzip writer, always at zlib level 6. Our
examples are mostly JPEG bytes, which deflate hardly shrinks (about 5 % at 299 px: the tables
each JPEG repeats), while every reader pays to inflate them, the Trainer's input function on
every step: about a tenth of its CPU per image (docs/benchmarks.md, "Training input: CPU per
image"). The download job stores its shards at level 0 for the same reason (docs/download.md).

Level 0 still writes gzip files (``data_tfrecord-*.gz``, stored blocks, checksummed), so
StatisticsGen, Transform, the Trainer, the Evaluator and ``gzip -d`` read them unchanged, and
the artifact records the same ``tfrecords_gzip`` file format. Only where the records are
written differs from TFX's ``BaseExampleGenExecutor.Do``; the splits, their names, the
shuffle before writing and the artifact's properties are TFX's.
"""

import logging
import os
from typing import Any, Dict, List

import apache_beam as beam
from apache_beam import coders
from apache_beam.io.filebasedsink import FileBasedSink
from apache_beam.io.filesystem import CompressionTypes
from tfx.components.example_gen import utils, write_split
from tfx.components.example_gen.import_example_gen import executor as import_executor
from tfx.components.util import examples_utils
from tfx.proto import example_gen_pb2
from tfx.types import Artifact, artifact_utils, standard_component_specs
from tfx.utils import proto_utils

from components.download.tfrecord import GzipWriter, frame_record

# 0 stores (JPEGs do not compress); 6 is what TFX's own ExampleGen writes.
EXAMPLES_GZIP_LEVEL = 0


class GzipTFRecordSink(FileBasedSink):
    """Beam's TFRecord sink with the gzip level chosen, not fixed at zlib's default."""

    def __init__(self, file_path_prefix: str, level: int = EXAMPLES_GZIP_LEVEL, file_name_suffix: str = ".gz"):
        if not 0 <= level <= 9:
            raise ValueError(f"gzip level must be in 0..9, got {level}")
        # Uncompressed underneath: open() adds the gzip stream at the level chosen.
        super().__init__(
            file_path_prefix,
            coder=coders.BytesCoder(),
            file_name_suffix=file_name_suffix,
            mime_type="application/x-gzip",  # what Beam's own gzip sink gives a GCS object
            compression_type=CompressionTypes.UNCOMPRESSED,
        )
        self.level = level

    def open(self, temp_path: str) -> GzipWriter:
        return GzipWriter(super().open(temp_path), self.level)

    def write_encoded_record(self, file_handle: GzipWriter, encoded_value: bytes) -> None:
        file_handle.write(frame_record(encoded_value))


@beam.ptransform_fn
def WriteSplit(examples: beam.PCollection, output_split_path: str, level: int = EXAMPLES_GZIP_LEVEL):  # pylint: disable=invalid-name
    """TFX's ``write_split.WriteSplit`` for TFRecords: serialize, shuffle, write; at ``level``."""
    prefix = os.path.join(output_split_path, write_split.DEFAULT_TF_RECORD_FILE_NAME)
    return (
        examples
        | "MaybeSerialize" >> beam.ParDo(write_split.MaybeSerialize())
        | "Shuffle" >> beam.Reshuffle()
        | "Write" >> beam.io.Write(GzipTFRecordSink(prefix, level))
    )


class Executor(import_executor.Executor):
    """ImportExampleGen's executor; its splits are written by ``WriteSplit`` at ``EXAMPLES_GZIP_LEVEL``."""

    def Do(
        self,
        input_dict: Dict[str, List[Artifact]],
        output_dict: Dict[str, List[Artifact]],
        exec_properties: Dict[str, Any],
    ) -> None:
        self._log_startup(input_dict, output_dict, exec_properties)
        payload_format = exec_properties.get(standard_component_specs.OUTPUT_DATA_FORMAT_KEY)
        if payload_format == example_gen_pb2.PayloadFormat.FORMAT_PARQUET:
            raise ValueError("this ExampleGen writes TFRecords; Parquet output is TFX's own ExampleGen's")
        input_config = proto_utils.json_to_proto(
            exec_properties[standard_component_specs.INPUT_CONFIG_KEY], example_gen_pb2.Input()
        )
        output_config = proto_utils.json_to_proto(
            exec_properties[standard_component_specs.OUTPUT_CONFIG_KEY], example_gen_pb2.Output()
        )
        outputs = output_dict[standard_component_specs.EXAMPLES_KEY]
        artifact_utils.get_single_instance(outputs).split_names = artifact_utils.encode_split_names(
            utils.generate_output_split_names(input_config, output_config)
        )
        logging.info("Generating examples (gzip level %d).", EXAMPLES_GZIP_LEVEL)
        with self._make_beam_pipeline() as pipeline:
            for name, split in self.GenerateExamplesByBeam(pipeline, exec_properties).items():
                _ = split | f"WriteSplit[{name}]" >> WriteSplit(artifact_utils.get_split_uri(outputs, name))
        file_format = exec_properties.get(
            standard_component_specs.OUTPUT_FILE_FORMAT_KEY, example_gen_pb2.FILE_FORMAT_UNSPECIFIED
        )
        for artifact in outputs:
            if payload_format:
                examples_utils.set_payload_format(artifact, payload_format)
            if file_format:
                examples_utils.set_file_format(artifact, write_split.to_file_format_str(file_format))
        logging.info("Examples generated.")
