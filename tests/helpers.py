"""Pieces the test modules share: image bytes, the download job's fast settings and output readers,
and tiny trainer inputs (JPEG rows, a Transform output built with tft_beam, TFRecords of them).

TensorFlow is imported inside the functions that use it: the fixtures' fault server imports this
module in every test session, and most tests need no TensorFlow.
"""

import glob
import importlib.util
import io
import json
import os
import random
import subprocess
import sys
from typing import Dict, List

import pytest
from PIL import Image

from imat_common import features

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def needs(module: str, extra: str):
    """A mark for tests that need ``module`` from the project's optional ``extra``.

    Without it they are skipped with the reason and the install command, except under ``CI=true``,
    where the extras are part of the install: there the test runs, and fails if it cannot import.
    """
    missing = importlib.util.find_spec(module) is None and os.environ.get("CI") != "true"
    return pytest.mark.skipif(missing, reason=f"needs {module}: pip install -e '.[{extra}]' (required when CI=true)")


def import_extra(module: str, extra: str):
    """Imports ``module`` for a test module, skipping the module without it (failing under ``CI=true``).

    For test modules that import an extra's package at the top, where a mark comes too late.
    """
    if os.environ.get("CI") == "true":
        return importlib.import_module(module)
    return pytest.importorskip(module, reason=f"needs {module}: pip install -e '.[{extra}]' (required when CI=true)")


KUBEFLOW = needs("kfp", "kubeflow")
SIMILAR = [needs("faiss", "similar"), needs("hnswlib", "similar")]


# Image bytes


def jpeg_bytes(width: int, height: int, color=(200, 30, 40), quality: int = 92) -> bytes:
    im = Image.new("RGB", (width, height), color)
    # A gradient so a wrong resize or channel order would show in pixel checks.
    for x in range(0, width, max(1, width // 8)):
        im.paste((x * 255 // width, 80, 160), (x, 0, x + 2, height))
    buf = io.BytesIO()
    im.save(buf, format="JPEG", quality=quality)
    return buf.getvalue()


def png_rgba_bytes(width: int, height: int) -> bytes:
    im = Image.new("RGBA", (width, height), (0, 0, 255, 0))
    im.paste((0, 0, 255, 255), (width // 4, height // 4, 3 * width // 4, 3 * height // 4))
    buf = io.BytesIO()
    im.save(buf, format="PNG")
    return buf.getvalue()


def bomb_png(side: int) -> bytes:
    """A tiny file that claims ``side * side`` pixels."""
    buf = io.BytesIO()
    Image.new("1", (side, side)).save(buf, format="PNG", optimize=True)
    return buf.getvalue()


def jpeg(im: Image.Image) -> bytes:
    """The image as JPEG bytes."""
    buf = io.BytesIO()
    im.save(buf, format="JPEG", quality=92)
    return buf.getvalue()


# The download job

# Small limits so faults resolve in about a second; the guard stays on.
FAST_GUARDED = [
    "--max_size=100",
    "--deadline_s=2.5",
    "--attempt_timeout_s=1",
    "--retries=1",
    "--backoff_s=0.05",
    "--max_bytes=1000000",
    "--max_pixels=1000000",
    "--progress_s=1",
]
# The fault server listens on loopback, which the guard refuses unless told otherwise.
FAST = FAST_GUARDED + ["--allow_private_networks"]


def write_json(path, urls: Dict[str, str], labels: Dict[str, List[int]] = None) -> str:
    """Writes a competition JSON of image id -> URL (and id -> label ids, when given); returns its path."""
    doc = {"images": [{"imageId": i, "url": u} for i, u in urls.items()]}
    if labels is not None:
        doc["annotations"] = [{"imageId": i, "labelId": [str(k) for k in ls]} for i, ls in labels.items()]
    with open(path, "w") as f:
        json.dump(doc, f)
    return str(path)


def read_examples(out_dir, split):
    """Every tf.Example the pipeline would read: the pattern ``<split>/*.tfrecord.gz``, dotfiles included."""
    import tensorflow as tf

    files = sorted(tf.io.gfile.glob(os.path.join(out_dir, split, "*.tfrecord.gz")))
    return [
        tf.train.Example.FromString(record.numpy())
        for record in tf.data.TFRecordDataset(files, compression_type="GZIP")
    ]


def example_ids(examples) -> List[str]:
    return sorted(e.features.feature[features.IMAGE_ID_KEY].bytes_list.value[0].decode() for e in examples)


def statuses(out_dir, split) -> Dict[str, dict]:
    """image id -> its status line (a duplicate's under "<id>/dup")."""
    rows = []
    for path in sorted(glob.glob(os.path.join(out_dir, "_status", split, "*.jsonl"))):
        with open(path) as f:
            rows += [json.loads(line) for line in f if line.strip()]
    return {r["image_id"] + ("/dup" if r["status"] == "duplicate_id" else ""): r for r in rows}


# The trainer


def raw_spec() -> dict:
    """The feature spec of the raw examples: the JPEG bytes and the label ids."""
    import tensorflow as tf

    return {
        features.IMAGE_KEY: tf.io.FixedLenFeature([1], tf.string),
        features.LABELS_KEY: tf.io.VarLenFeature(tf.int64),
    }


def transform(rows: List[Dict], out: str, num_labels: int, image_size: int):
    """Analyses ``rows`` (raw feature dicts) with ``preprocessing_fn`` and writes the transform graph to ``out``.

    Returns:
      (transformed rows, ``tft.TFTransformOutput`` of ``out``).
    """
    import tensorflow_transform as tft
    import tensorflow_transform.beam as tft_beam
    from tensorflow_transform.tf_metadata import dataset_metadata, metadata_io, schema_utils

    from trainer.preprocessing import preprocessing_fn

    metadata = dataset_metadata.DatasetMetadata(schema_utils.schema_from_feature_spec(raw_spec()))
    with tft_beam.Context(temp_dir=os.path.join(out, "tmp"), force_tf_compat_v1=False):
        fn = lambda inputs: preprocessing_fn(inputs, {"num_labels": num_labels, "image_size": image_size})
        (transformed, _), transform_fn = (rows, metadata) | tft_beam.AnalyzeAndTransformDataset(
            fn, output_record_batches=False
        )
        _ = transform_fn | tft_beam.WriteTransformFn(out)
    metadata_io.write_metadata(metadata, os.path.join(out, tft.TFTransformOutput.RAW_METADATA_DIR))
    return transformed, tft.TFTransformOutput(out)


def write_examples(rows: List[Dict], path: str) -> None:
    """Writes raw feature dicts as a gzip TFRecord file of tf.Examples."""
    import tensorflow as tf

    with tf.io.TFRecordWriter(path, options="GZIP") as writer:
        for row in rows:
            writer.write(
                tf.train.Example(
                    features=tf.train.Features(
                        feature={
                            features.IMAGE_KEY: tf.train.Feature(
                                bytes_list=tf.train.BytesList(value=row[features.IMAGE_KEY])
                            ),
                            features.LABELS_KEY: tf.train.Feature(
                                int64_list=tf.train.Int64List(value=row[features.LABELS_KEY])
                            ),
                        }
                    )
                ).SerializeToString()
            )


def demo_splits(root: str, tft_dir: str, counts: Dict[str, int], image_size: int, seed: int = 7, train_files: int = 1):
    """Demo garments (labels visible in the pixels) as the Trainer sees them: ``Split-<name>`` folders
    of gzip TFRecords and the transform graph of the train split.

    Args:
      counts: images per split, in order, e.g. {"train": 24, "calibration": 8, "eval": 8}.
      image_size: the side Transform resizes to; the JPEGs are drawn at 90 px.
      train_files: the train split's files (examples dealt round-robin), one per worker.

    Returns:
      (train file patterns, eval file patterns: every other split), as ``FnArgs`` takes them.
    """
    from cli import demo_data

    num_labels = max(label.label_id for label in demo_data.label_table())
    rng = random.Random(seed)
    rows = {}
    for split, count in counts.items():
        rows[split] = []
        for _ in range(count):
            im, labels = demo_data.render(rng, 90)
            rows[split].append({features.IMAGE_KEY: [jpeg(im)], features.LABELS_KEY: labels})
    for split, split_rows in rows.items():
        folder = os.path.join(root, f"Split-{split}")
        os.makedirs(folder)
        parts = train_files if split == "train" else 1
        for i in range(parts):
            write_examples(split_rows[i::parts], os.path.join(folder, f"data_tfrecord-{i:05d}-of-{parts:05d}.gz"))
    transform(rows["train"], tft_dir, num_labels, image_size)
    return [os.path.join(root, "Split-train", "*")], [
        os.path.join(root, f"Split-{s}", "*") for s in counts if s != "train"
    ]


# The node ids of the single-Trainer pipeline, as the local runner records them.
COMPONENTS = frozenset(
    {
        "ImportExampleGen",
        "StatisticsGen",
        "SchemaGen",
        "ImportSchemaGen",
        "ExampleValidator",
        "ValidationGate",
        "Transform",
        "Trainer",
        "latest_blessed_model_resolver",
        "Evaluator",
        "Pusher",
        "SimilarityIndexer",
    }
)


def garment_rows(span: int, n: int, shift=None, size: int = 48) -> List[Dict]:
    """``n`` demo garments as the download job stores them, ids ``<span>-<i>``, drawn from the span's seed."""
    from cli import demo_data

    rng = random.Random(1000 * span)
    rows = []
    for i in range(n):
        image, labels = demo_data.render(rng, size, shift)
        rows.append(
            {
                features.IMAGE_ID_KEY: f"{span}-{i}".encode(),
                features.IMAGE_KEY: jpeg(image),
                features.HEIGHT_KEY: size,
                features.WIDTH_KEY: size,
                features.SHA256_KEY: b"0" * 64,
                features.URL_KEY: f"http://x/{span}/{i}.jpg".encode(),
                features.LABELS_KEY: labels,
            }
        )
    return rows


def write_span(data: str, span: int, train: int, validation: int, shift=None) -> Dict[str, List[Dict]]:
    """A span's train and validation folders, as ``imat download --span`` writes them; returns the rows."""
    import gzip

    from components.download.tfrecord import serialize_example, write_records

    written = {"train": garment_rows(span, train, shift), "validation": garment_rows(span + 500, validation, shift)}
    for split, rows in written.items():
        path = os.path.join(data, f"span-{span}", split, "part-0.tfrecord.gz")
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with gzip.open(path, "wb") as f:
            write_records(f, [serialize_example(r) for r in rows])
    return written


def run_front(config, transform: bool = True) -> Dict[str, str]:
    """The pipeline's front (ExampleGen to Transform, or to the ValidationGate) with the local runner.

    Returns:
      component -> state of the run; a stopped run raises the gate's error instead.
    """
    from tfx import v1 as tfx

    from cli import runs
    from imat_common.workdir import metadata_path
    from pipeline import local_runner
    from pipeline.pipeline import data_components

    components = data_components(config)
    if not transform:
        components.pop("transform")
    tfx.orchestration.LocalDagRunner().run(
        tfx.dsl.Pipeline(
            pipeline_name="front",
            pipeline_root=config.locations.pipeline_root,
            components=list(components.values()),
            metadata_connection_config=local_runner.metadata_config(config),
            beam_pipeline_args=list(config.run.beam_pipeline_args),
        )
    )
    return {e.component: e.state for e in runs.last_run(metadata_path(config.locations.pipeline_root))}


def download_fails(capsys, argv, code) -> str:
    """Runs the download job's command line; returns its last stderr line after checking the exit code
    and that no traceback was printed."""
    from components.download import job

    with pytest.raises(SystemExit) as exit_info:
        job.main(argv)
    assert exit_info.value.code == code
    # The loopback server prints nothing for a client that hangs up (LoopbackServer.handle_error):
    # whatever traceback is left is a real one.
    err = capsys.readouterr().err
    assert "Traceback" not in err and "RuntimeError" not in err, err
    return err.strip().splitlines()[-1]


def imat_download_help(report: str, before: str = "", own_process: bool = True) -> List[str]:
    """Runs ``imat download --help`` in a fresh interpreter; returns the words of ``report`` once it exits.

    Args:
      report: Python expressions, comma-separated, evaluated after the command's SystemExit (``e``).
      before: code run first, before ``cli.main`` is imported.
      own_process: as the ``imat`` script runs (``main()`` reads the process's command line), or
        called in-process as ``main(["download", "--help"])``.
    """
    call = "main.main()" if own_process else "main.main(['download', '--help'])"
    code = (
        f"import sys\n{before}\n"
        "sys.argv = ['imat', 'download', '--help']\n"
        "from cli import main\n"
        "try:\n"
        f"    {call}\n"
        "except SystemExit as e:\n"
        f"    print('RESULT', {report})\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    results = [line.split()[1:] for line in out.stdout.splitlines() if line.startswith("RESULT ")]
    assert len(results) == 1, out.stdout[-2000:] + out.stderr[-2000:]
    return results[0]
