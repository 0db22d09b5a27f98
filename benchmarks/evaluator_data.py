"""Generated eval data, a tiny exported model and both Evaluator configs, for the benchmark and its test.

``sliced_eval_config`` rebuilds the configuration the pipeline shipped before per-label
slice metrics moved to the overall slice (``pipeline.label_metrics``): the same metrics specs
plus ``SlicingSpec(feature_keys=["labels"])``, which made TFMA compute every per-label metric in
every per-label slice.
"""

import io
import os
from typing import Dict, List

import numpy as np

from components.download.tfrecord import frame_record, serialize_example
from imat_common import features

IMAGE_SIZE = 75  # InceptionV3's smallest input


def long_tailed_label_lists(
    num_examples: int, num_labels: int, labels_per_example: int = 7, seed: int = 0
) -> List[List[int]]:
    """Label id lists (1-based, sorted, unique): ~``labels_per_example`` each, Zipf-like label frequencies."""
    if not 0 < labels_per_example <= num_labels:
        raise ValueError(f"labels_per_example must be in [1, {num_labels}], got {labels_per_example}")
    rng = np.random.default_rng(seed)
    weights = 1.0 / np.arange(1, num_labels + 1)
    weights /= weights.sum()
    lists = []
    for _ in range(num_examples):
        size = int(np.clip(rng.poisson(labels_per_example), 1, num_labels))
        lists.append(sorted(int(k) + 1 for k in rng.choice(num_labels, size, replace=False, p=weights)))
    return lists


def _jpeg(rng: np.random.Generator, size: int = 24) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(buf, format="JPEG")
    return buf.getvalue()


def write_examples(path: str, label_lists: List[List[int]], seed: int = 0) -> List[Dict]:
    """Writes one uncompressed TFRecord of tf.Examples (tiny random JPEG, labels); returns the raw rows."""
    rng = np.random.default_rng(seed)
    rows = [{features.IMAGE_KEY: [_jpeg(rng)], features.LABELS_KEY: ids} for ids in label_lists]
    with open(path, "wb") as f:
        for i, row in enumerate(rows):
            f.write(
                frame_record(
                    serialize_example(
                        {
                            features.IMAGE_ID_KEY: str(i).encode(),
                            features.IMAGE_KEY: row[features.IMAGE_KEY][0],
                            features.LABELS_KEY: row[features.LABELS_KEY],
                        }
                    )
                )
            )
    return rows


def export_tiny_model(work: str, rows: List[Dict], num_labels: int, positive_rate: float = 0.03) -> str:
    """Transform on ``rows`` and an untrained InceptionV3 (weights=None, 75 px) exported as the Trainer does.

    Each label's threshold is set so that about ``positive_rate`` of ``rows`` get it decided,
    so decisions are a mix of 0s and 1s, as with a trained model.

    Returns:
      The serving model's folder.
    """
    import tensorflow as tf
    import tensorflow_transform as tft
    import tensorflow_transform.beam as tft_beam
    import tf_keras as keras
    from tensorflow_transform.tf_metadata import dataset_metadata, metadata_io, schema_utils

    from trainer import exporter, model as model_lib
    from trainer.preprocessing import IMAGE_FEATURE, preprocessing_fn

    raw_spec = {
        features.IMAGE_KEY: tf.io.FixedLenFeature([1], tf.string),
        features.LABELS_KEY: tf.io.VarLenFeature(tf.int64),
    }
    transform_dir = os.path.join(work, "transform")
    metadata = dataset_metadata.DatasetMetadata(schema_utils.schema_from_feature_spec(raw_spec))
    custom_config = {"num_labels": num_labels, "image_size": IMAGE_SIZE}
    with tft_beam.Context(temp_dir=os.path.join(transform_dir, "tmp"), force_tf_compat_v1=False):
        (transformed, _), transform_fn = (rows, metadata) | tft_beam.AnalyzeAndTransformDataset(
            lambda inputs: preprocessing_fn(inputs, custom_config), output_record_batches=False
        )
        _ = transform_fn | tft_beam.WriteTransformFn(transform_dir)
    metadata_io.write_metadata(metadata, os.path.join(transform_dir, tft.TFTransformOutput.RAW_METADATA_DIR))
    keras.utils.set_random_seed(0)
    model = model_lib.build_model(model_lib.ModelConfig(num_labels=num_labels, image_size=IMAGE_SIZE, weights="none"))
    images = np.stack([np.asarray(row[IMAGE_FEATURE]) for row in transformed])
    probabilities = model.predict(images, batch_size=64, verbose=0)
    thresholds = np.quantile(probabilities, 1.0 - positive_rate, axis=0).astype(np.float32)
    serving = os.path.join(work, "serving")
    exporter.export(model, tft.TFTransformOutput(transform_dir), thresholds, serving)
    return serving


def pipeline_eval_config(
    num_labels: int,
    labels_slices: bool = False,
    with_baseline: bool = False,
    confidence_intervals: bool = False,
    binarized: bool = False,
):
    """The pipeline's EvalConfig; without a baseline model, without its change threshold.

    Args:
      num_labels: width of the multi-hot vector.
      labels_slices: the configuration before LabelSliceMetrics: per-label slices, no label-slice
        metric, TFMA's binarized per-label metrics.
      binarized: the configuration before PerLabelMetrics and PerLabelAUC: TFMA's own per-label
        metrics (``binarize``, a combiner per label).
      with_baseline: keep the change threshold against the last blessed model (the caller gives one).
      confidence_intervals: the gate setting ``confidence_intervals``.
    """
    from pipeline.config import GateSettings, Locations, PipelineConfig
    from pipeline.pipeline import eval_config
    from trainer.settings import TrainerSettings

    config = eval_config(
        PipelineConfig(
            locations=Locations(),
            gate=GateSettings(confidence_intervals=confidence_intervals),
            trainer=TrainerSettings(num_labels=num_labels),
        )
    )
    if with_baseline:
        return config
    # No baseline here: a change threshold would make TFMA refuse to run.
    for spec in config.metrics_specs:
        for metric in spec.metrics:
            metric.threshold.ClearField("change_threshold")
    if labels_slices:
        return sliced_eval_config(binarized_eval_config(config, num_labels))
    return binarized_eval_config(config, num_labels) if binarized else config


def binarized_eval_config(config, num_labels: int):
    """``config`` with TFMA's binarized per-label metrics in place of PerLabelMetrics and PerLabelAUC."""
    import tensorflow_model_analysis as tfma

    from pipeline.per_label_metrics import PerLabelAUC, PerLabelMetrics
    from pipeline.pipeline import DECISIONS, PROBABILITIES

    old = type(config)()
    old.CopyFrom(config)
    auc_config = ""
    for spec in old.metrics_specs:
        auc_config = next((m.config for m in spec.metrics if m.class_name == PerLabelAUC.__name__), auc_config)
        kept = [m for m in spec.metrics if m.class_name not in (PerLabelMetrics.__name__, PerLabelAUC.__name__)]
        del spec.metrics[:]
        spec.metrics.extend(kept)
    kept = [spec for spec in old.metrics_specs if spec.metrics]
    del old.metrics_specs[:]
    old.metrics_specs.extend(kept)
    per_label = tfma.BinarizationOptions(class_ids={"values": list(range(num_labels))})
    old.metrics_specs.add(
        output_names=[DECISIONS],
        metrics=[tfma.MetricConfig(class_name=name) for name in ("Precision", "Recall", "F1Score")],
        binarize=per_label,
    )
    old.metrics_specs.add(
        output_names=[PROBABILITIES],
        metrics=[tfma.MetricConfig(class_name="AUC", config=auc_config)],
        binarize=per_label,
    )
    return old


def sliced_eval_config(config):
    """``config`` as the pipeline built it before: per-label slices computing every metric, no label-slice metric."""
    import tensorflow_model_analysis as tfma

    from pipeline.label_metrics import LabelSliceMetrics

    old = type(config)()
    old.CopyFrom(config)
    for spec in old.metrics_specs:
        kept = [m for m in spec.metrics if m.class_name != LabelSliceMetrics.__name__]
        del spec.metrics[:]
        spec.metrics.extend(kept)
    old.slicing_specs.append(tfma.SlicingSpec(feature_keys=[features.LABELS_KEY]))
    return old
