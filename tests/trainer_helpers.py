"""Tiny trainer inputs shared by the trainer tests: JPEG rows and a Transform output built with tft_beam."""
import io
import os
from typing import Dict, List

import tensorflow as tf
import tensorflow_transform as tft
import tensorflow_transform.beam as tft_beam
from PIL import Image
from tensorflow_transform.tf_metadata import dataset_metadata, metadata_io, schema_utils

from trainer import features
from trainer.preprocessing import preprocessing_fn

RAW_SPEC = {features.IMAGE_KEY: tf.io.FixedLenFeature([1], tf.string),
            features.LABELS_KEY: tf.io.VarLenFeature(tf.int64)}


def jpeg(im: Image.Image) -> bytes:
    """The image as JPEG bytes."""
    buf = io.BytesIO()
    im.save(buf, format="JPEG", quality=92)
    return buf.getvalue()


def transform(rows: List[Dict], out: str, num_labels: int, image_size: int):
    """Analyses ``rows`` (raw feature dicts) with ``preprocessing_fn`` and writes the transform graph to ``out``.

    Returns:
      (transformed rows, ``tft.TFTransformOutput`` of ``out``).
    """
    metadata = dataset_metadata.DatasetMetadata(schema_utils.schema_from_feature_spec(RAW_SPEC))
    with tft_beam.Context(temp_dir=os.path.join(out, "tmp"), force_tf_compat_v1=False):
        fn = lambda inputs: preprocessing_fn(inputs, {"num_labels": num_labels, "image_size": image_size})  # noqa: E731
        (transformed, _), transform_fn = (rows, metadata) | tft_beam.AnalyzeAndTransformDataset(
            fn, output_record_batches=False)
        _ = transform_fn | tft_beam.WriteTransformFn(out)
    metadata_io.write_metadata(metadata, os.path.join(out, tft.TFTransformOutput.RAW_METADATA_DIR))
    return transformed, tft.TFTransformOutput(out)


def write_examples(rows: List[Dict], path: str) -> None:
    """Writes raw feature dicts as a gzip TFRecord file of tf.Examples."""
    with tf.io.TFRecordWriter(path, options="GZIP") as writer:
        for row in rows:
            writer.write(tf.train.Example(features=tf.train.Features(feature={
                features.IMAGE_KEY: tf.train.Feature(bytes_list=tf.train.BytesList(value=row[features.IMAGE_KEY])),
                features.LABELS_KEY: tf.train.Feature(int64_list=tf.train.Int64List(value=row[features.LABELS_KEY])),
            })).SerializeToString())
