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

With spans (``imat_common/spans.py``, ``train_spans`` >= 1): the patterns carry ``{SPAN}``,
which TFX's driver resolves to the newest span on disk (recorded as the artifact's ``span``).
``calibration`` and ``eval`` come from the newest span only, so the gate scores the new data;
``train`` reads the newest ``train_spans`` spans, recorded as the artifact's ``train_spans``
property ("1,2,3"); and the slim ``drift_new`` / ``drift_previous`` splits hold the newest
and the previous span's train folders for the drift check (``components/drift.py``), with
each task's labels as ``labels/<task>`` when the label map is given.
"""

import hashlib
import logging
import os
from typing import Any, Dict, List, Tuple

import apache_beam as beam
from google.protobuf import struct_pb2
from tfx.components.example_gen.component import FileBasedExampleGen
from tfx.dsl.components.base import executor_spec
from tfx.proto import example_gen_pb2, range_config_pb2
from tfx.types import standard_component_specs

from tfx.dsl.io import fileio
from tfx.utils import proto_utils

from components import drift, example_writer
from imat_common import features, spans
from imat_common.splits import CALIBRATION, DRIFT_NEW, DRIFT_PREVIOUS, EVAL, TRAIN

_PERCENT_KEY = "calibration_percent"
_TRAIN_SPANS_KEY = "train_spans"  # 0: no spans; K >= 1: train on the newest K
_LABEL_MAP_KEY = "label_map"  # with spans: the drift splits carry each task's labels (labels/<task>)
TRAIN_SPANS_PROPERTY = "train_spans"  # on the Examples artifact: the spans train read, "1,2,3"
PREVIOUS_SPAN_PROPERTY = "previous_span"  # the span drift was measured against; absent for the first


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


def _settings(exec_properties: Dict[str, Any]) -> Tuple[int, int, str]:
    """(calibration_percent, train_spans, label_map) from the component's custom config."""
    custom = proto_utils.json_to_proto(
        exec_properties[standard_component_specs.CUSTOM_CONFIG_KEY], example_gen_pb2.CustomConfig()
    )
    struct = struct_pb2.Struct()
    custom.custom_config.Unpack(struct)
    percent = int(struct[_PERCENT_KEY])
    if not 0 < percent < 100:
        raise ValueError(f"{_PERCENT_KEY} must be in 1..99, got {percent}")
    train_spans = int(struct[_TRAIN_SPANS_KEY]) if _TRAIN_SPANS_KEY in struct else 0
    label_map = str(struct[_LABEL_MAP_KEY]) if _LABEL_MAP_KEY in struct else ""
    return percent, train_spans, label_map


def label_tasks(label_map: str) -> Dict[int, str]:
    """Label id -> task name of a label map file (local or remote); empty for no file."""
    if not label_map:
        return {}
    return {label.label_id: label.task for label in features.load_label_map(label_map).labels}


def span_pattern(resolved: str, newest: int, span: int) -> str:
    """``resolved`` (a pattern the driver resolved to span ``newest``) for span ``span`` instead."""
    prefix = spans.folder(newest) + "/"
    if not resolved.startswith(prefix):
        raise ValueError(f"pattern {resolved!r} does not start with {prefix!r}")
    return spans.folder(span) + "/" + resolved[len(prefix) :]


def _spans_on_disk(input_base: str) -> List[int]:
    return spans.numbers(fileio.listdir(input_base))


def _matching(input_base: str, pattern: str, what: str) -> str:
    path = os.path.join(input_base, pattern)
    if not fileio.glob(path):
        raise ValueError(f"{what}: no file matches {path}; every span needs the folders the run reads")
    return pattern


class Executor(example_writer.Executor):
    """ImportExampleGen's executor with ``calibration`` and ``eval`` partitioned by image id, and spans.

    Its splits are written as stored-block gzip (``components/example_writer.py``).
    """

    def Do(self, input_dict, output_dict, exec_properties) -> None:
        self._read_spans: Dict[str, str] = {}
        super().Do(input_dict, output_dict, exec_properties)
        for examples in output_dict[standard_component_specs.EXAMPLES_KEY]:
            for name, value in self._read_spans.items():
                examples.set_string_custom_property(name, value)

    def GenerateExamplesByBeam(
        self, pipeline: beam.Pipeline, exec_properties: Dict[str, Any]
    ) -> Dict[str, beam.pvalue.PCollection]:
        percent, train_spans, label_map = _settings(exec_properties)
        input_config = proto_utils.json_to_proto(
            exec_properties[standard_component_specs.INPUT_CONFIG_KEY], example_gen_pb2.Input()
        )
        patterns = {split.name: split.pattern for split in input_config.splits}
        read = self.GetInputSourceToExamplePTransform()
        input_base = exec_properties[standard_component_specs.INPUT_BASE_KEY]

        def records(label: str, pattern: str) -> beam.pvalue.PCollection:
            # The one definition of reading a folder, as ImportExampleGen reads it.
            return pipeline | f"InputToRecord[{label}]" >> read(exec_properties, pattern)  # pylint: disable=no-value-for-parameter

        splits = {name: records(name, patterns[name]) for name in (TRAIN, CALIBRATION, EVAL)}
        for name, wanted in ((CALIBRATION, True), (EVAL, False)):
            splits[name] = splits[name] | f"Partition[{name}]" >> beam.Filter(
                lambda example, split, keep: in_calibration(image_id_of(example, split), percent) == keep,
                split=name,
                keep=wanted,
            )
        if train_spans:
            newest = int(exec_properties["span"])
            tasks = label_tasks(label_map)
            splits.update(self._spans(records, patterns, input_base, newest, train_spans, splits, tasks))
        return splits

    def _spans(self, records, patterns, input_base, newest, train_spans, splits, tasks):
        """The older spans of the train window, and the two drift splits."""
        present = _spans_on_disk(input_base)
        window = spans.window(present, newest, train_spans)
        previous = spans.previous(present, newest)
        newest_train = splits[TRAIN]
        older = [
            records(
                f"{TRAIN}-{spans.folder(s)}", _matching(input_base, span_pattern(patterns[TRAIN], newest, s), TRAIN)
            )
            for s in window[:-1]
        ]
        train = (newest_train, *older) | f"Window[{TRAIN}]" >> beam.Flatten() if older else newest_train
        slim = lambda examples, name: examples | f"Slim[{name}]" >> beam.Map(drift.slim_example, tasks)
        if previous is None:
            # The first span: an empty split, so the run's splits are the same whatever the data.
            previous_records = newest_train.pipeline | f"NoPrevious[{DRIFT_PREVIOUS}]" >> beam.Create([])
        else:
            pattern = _matching(input_base, span_pattern(patterns[TRAIN], newest, previous), DRIFT_PREVIOUS)
            previous_records = records(f"{DRIFT_PREVIOUS}-{spans.folder(previous)}", pattern)
        self._read_spans[TRAIN_SPANS_PROPERTY] = ",".join(str(s) for s in window)
        if previous is not None:
            self._read_spans[PREVIOUS_SPAN_PROPERTY] = str(previous)
        logging.info(
            "span %d: train reads spans %s; drift against %s",
            newest,
            window,
            f"span {previous}" if previous is not None else "nothing (the first span)",
        )
        return {
            TRAIN: train,
            DRIFT_NEW: slim(newest_train, DRIFT_NEW),
            DRIFT_PREVIOUS: slim(previous_records, DRIFT_PREVIOUS),
        }


def calibration_example_gen(
    input_base: str,
    train_pattern: str,
    holdout_pattern: str,
    calibration_percent: int,
    train_spans: int = 0,
    span: int = -1,
    label_map: str = "",
) -> FileBasedExampleGen:
    """ExampleGen with splits ``train``, ``calibration`` and ``eval``, under the id ``ImportExampleGen``.

    Args:
      input_base: the download job's ``--output``.
      train_pattern: the train files, relative to ``input_base`` (relative to a span's folder with spans).
      holdout_pattern: the files cut into calibration and eval (the competition's validation split).
      calibration_percent: the share of holdout images (by hash of the image id) used for calibration.
      train_spans: 0: ``input_base`` holds the split folders; K >= 1: it holds ``span-N`` folders,
        the newest span is read, train reads the newest K, and the drift splits are added.
      span: with ``train_spans``, the span to read instead of the newest (-1).
      label_map: with ``train_spans``, the label map whose tasks split the drift splits' labels
        into ``labels/<task>`` features (read when the component runs); "": no per-task features.
    """
    if not 0 < calibration_percent < 100:
        raise ValueError(f"calibration_percent must be in 1..99, got {calibration_percent}")
    if train_spans < 0:
        raise ValueError(f"train_spans must be 0 (no spans) or at least 1, got {train_spans}")
    custom = example_gen_pb2.CustomConfig()
    settings = struct_pb2.Struct()
    settings.update({_PERCENT_KEY: calibration_percent, _TRAIN_SPANS_KEY: train_spans})
    if train_spans and label_map:
        settings.update({_LABEL_MAP_KEY: label_map})
    custom.custom_config.Pack(settings)
    split_patterns = [(TRAIN, train_pattern), (CALIBRATION, holdout_pattern), (EVAL, holdout_pattern)]
    if train_spans:
        # The drift splits are named here so that ExampleGen records them; the executor reads them itself.
        train_pattern = spans.pattern(train_pattern)
        split_patterns = [(name, spans.pattern(pattern)) for name, pattern in split_patterns]
        split_patterns += [(DRIFT_NEW, train_pattern), (DRIFT_PREVIOUS, train_pattern)]
    return FileBasedExampleGen(
        input_base=input_base,
        input_config=example_gen_pb2.Input(
            splits=[example_gen_pb2.Input.Split(name=name, pattern=pattern) for name, pattern in split_patterns]
        ),
        custom_config=custom,
        custom_executor_spec=executor_spec.BeamExecutorSpec(Executor),
        range_config=(
            range_config_pb2.RangeConfig(
                static_range=range_config_pb2.StaticRange(start_span_number=span, end_span_number=span)
            )
            if train_spans and span >= 0
            else None
        ),
    ).with_id("ImportExampleGen")
