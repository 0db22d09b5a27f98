"""Beam job: embed a catalogue of TFRecords with a model's ``embed_images`` signature and index it.

Reads tf.Examples (the download job's or ExampleGen's), embeds each image with the pushed
model (the same Transform graph as classification, in the model), builds the approximate
nearest-neighbour index and writes it with the items' ids, URLs, labels and thumbnails.
Records that cannot be used are counted (``imat_similar/<reason>`` counters) and logged,
never fatal; the summary lists them. Item ids are ``<split>/<image_id>``: the competition's
image ids repeat across splits.

  imat index --workdir imat-demo        # newest pushed model, imat-demo/data/<split>/*.tfrecord.gz,
                                        # writes imat-demo/similar/<model version>
  imat index --model serving/1700000000 --examples train='data/train/*.tfrecord.gz' \\
      --output similar/1700000000 --backend faiss-ivfpq --shards 64

The backend is "auto" unless named: HNSW below ``backends.COMPRESSED_FROM`` items, the compressed
IVF-PQ from there on, which many workers build (``sharded_build.py``) instead of one. ``--m`` and
``--nprobe`` set the compressed index's code size and cells scanned per query; they are checked
against the model's embedding width before anything is embedded.

Flags this job does not know are passed to Beam (``--runner=DataflowRunner ...``); the model,
the files and the output may then be on ``gs://``.
"""

import argparse
import dataclasses
import glob
import json
import logging
import os
import time
import uuid
from typing import Dict, List, Optional

import apache_beam as beam
import numpy as np
from apache_beam.io.filesystems import FileSystems
from apache_beam.metrics import Metrics
from apache_beam.metrics.metric import MetricsFilter
from apache_beam.options.pipeline_options import PipelineOptions

from components.similar import compressed
from components.similar.backends import AUTO_BACKEND, BACKENDS, COMPRESSED_FROM, LARGE_BACKEND, choose_backend
from components.similar.index import (
    DEFAULT_BACKEND,
    EmptyCatalogueError,
    MANIFEST,
    NORM_TOLERANCE,
    SimilarError,
    model_info,
    read_bytes,
)
from components.similar.sharded_build import DEFAULT_SHARDS, NAMESPACE
from components.similar.write_index import WriteIndex
from imat_common import features, serving
from imat_common.workdir import DEFAULT_WORKDIR, Workdir, model_or_newest

log = logging.getLogger(__name__)
EMBED_SIGNATURE, EMBED_INPUT, EMBED_OUTPUT = serving.EMBED_IMAGES, serving.IMAGES, serving.EMBEDDING
LOCAL_RUNNER_ARGS = ["--runner=FnApiRunner"]
SUMMARY = "build_summary.json"


@dataclasses.dataclass(frozen=True)
class IndexSettings:
    model_dir: str  # a SavedModel with the embed_images signature
    catalogue: Dict[str, str]  # split name -> file pattern of (gzip) TFRecords of tf.Examples
    output: str  # the index folder
    backend: str = DEFAULT_BACKEND  # "auto": by the catalogue's size (backends.choose_backend)
    batch_size: int = 64  # images per model call; as imat submission
    thumbnail_size: int = 96  # longer side of the stored thumbnails; 0 stores none
    label_map: str = ""  # label_map.csv, so results print label names and tasks
    model_version: str = ""  # Pusher's version of the model; "" takes the folder's name when it is a number
    shards: int = DEFAULT_SHARDS  # parts the compressed index is encoded in, one worker each
    # The compressed backend's parameters given (m, nprobe, ...; compressed.FaissIVFPQBackend); the
    # others keep its defaults. Only with the backend "auto" or "faiss-ivfpq".
    params: Dict[str, int] = dataclasses.field(default_factory=dict)


def _counter(name: str):
    return Metrics.counter(NAMESPACE, name)


class ParseItemFn(beam.DoFn):
    """Serialized tf.Example -> item dict (id, url, labels, jpeg); unusable records are counted."""

    def __init__(self, split: str):
        self._split = split
        self._read, self._unparseable = _counter("records_read"), _counter("records_unparseable")
        self._no_id, self._no_image = _counter("records_without_id"), _counter("records_without_image")

    def process(self, record: bytes):
        # Importing the proto module loads TensorFlow too; this DoFn runs where the model does anyway.
        from tensorflow.core.example import example_pb2

        self._read.inc()
        try:
            feature = example_pb2.Example.FromString(record).features.feature
        except Exception as e:  # protobuf raises its own DecodeError; any failure means the same here
            self._unparseable.inc()
            log.warning("%s: a record is not a tf.Example (%s); skipped", self._split, e)
            return
        image_id = feature[features.IMAGE_ID_KEY].bytes_list.value
        image = feature[features.IMAGE_KEY].bytes_list.value
        if not image_id or not image_id[0]:
            self._no_id.inc()
            log.warning("%s: a record without %s; skipped", self._split, features.IMAGE_ID_KEY)
            return
        item_id = f"{self._split}/{image_id[0].decode('utf-8', 'replace')}"
        if not image or not image[0]:
            self._no_image.inc()
            log.warning("%s: no %s; skipped", item_id, features.IMAGE_KEY)
            return
        url = feature[features.URL_KEY].bytes_list.value
        yield {
            "id": item_id,
            "url": url[0].decode("utf-8", "replace") if url else "",
            "labels": tuple(int(v) for v in feature[features.LABELS_KEY].int64_list.value),
            "jpeg": image[0],
        }


class EmbedBatchFn(beam.DoFn):
    """Embeds a batch of items with the model; the model is loaded once per worker.

    A batch with an undecodable image fails as a whole in TensorFlow: it is then embedded
    item by item, so only the bad image is dropped (counted and logged with its id).
    """

    def __init__(self, model_dir: str, thumbnail_size: int):
        self._model_dir, self._thumbnail_size = model_dir, thumbnail_size
        self._embedded, self._undecodable = _counter("items_embedded"), _counter("images_undecodable")
        self._no_thumbnail, self._degenerate = _counter("thumbnails_failed"), _counter("embeddings_degenerate")

    def setup(self):
        import tensorflow as tf

        self._tf = tf
        self._embed = tf.saved_model.load(self._model_dir).signatures[EMBED_SIGNATURE]

    def _vectors(self, jpegs: List[bytes]):
        return self._embed(**{EMBED_INPUT: self._tf.constant(jpegs)})[EMBED_OUTPUT].numpy()

    def process(self, batch: List[dict]):
        try:
            vectors = list(self._vectors([item["jpeg"] for item in batch]))
        except self._tf.errors.OpError:
            vectors = []
            for item in batch:
                try:
                    vectors.append(self._vectors([item["jpeg"]])[0])
                except self._tf.errors.OpError as e:
                    vectors.append(None)
                    self._undecodable.inc()
                    log.warning(
                        "%s: image not decodable by the model (%s); skipped", item["id"], e.message.splitlines()[0]
                    )
        for item, vector in zip(batch, vectors):
            if vector is not None and not is_unit(vector):
                # An all-zero feature map normalises to zeros: it has no direction to compare.
                self._degenerate.inc()
                log.warning(
                    "%s: the model's embedding is not a unit vector (norm %s); skipped",
                    item["id"],
                    np.linalg.norm(vector),
                )
            elif vector is not None:
                self._embedded.inc()
                yield {
                    **{k: v for k, v in item.items() if k != "jpeg"},
                    "vector": vector,
                    "thumbnail": self._thumbnail(item),
                }

    def _thumbnail(self, item: dict) -> bytes:
        from components.download.images import ImageError, ImageSettings, process_image

        if not self._thumbnail_size:
            return b""
        try:
            return process_image(item["jpeg"], ImageSettings(max_size=self._thumbnail_size, jpeg_quality=85)).jpeg
        except ImageError as e:
            self._no_thumbnail.inc()
            log.warning("%s: no thumbnail (%s); indexed without one", item["id"], e)
            return b""


class ReadCatalogue(beam.PTransform):
    """Split name -> TFRecord pattern, to item dicts (gzip is recognised by the .gz suffix)."""

    def __init__(self, catalogue: Dict[str, str]):
        super().__init__()
        self._catalogue = catalogue

    def expand(self, pbegin):
        parts = [
            pbegin
            | f"Files[{split}]" >> beam.Create([pattern])
            | f"Read[{split}]" >> beam.io.ReadAllFromTFRecord()
            | f"Parse[{split}]" >> beam.ParDo(ParseItemFn(split))
            for split, pattern in sorted(self._catalogue.items())
        ]
        return parts | "AllSplits" >> beam.Flatten()


class EmbedItems(beam.PTransform):
    """Item dicts with JPEGs -> item dicts with unit vectors and thumbnails, in batches."""

    def __init__(self, model_dir: str, batch_size: int, thumbnail_size: int):
        super().__init__()
        self._model_dir, self._batch_size, self._thumbnail_size = model_dir, batch_size, thumbnail_size

    def expand(self, items):
        return (
            items
            | "Batch" >> beam.BatchElements(min_batch_size=min(8, self._batch_size), max_batch_size=self._batch_size)
            | "Embed" >> beam.ParDo(EmbedBatchFn(self._model_dir, self._thumbnail_size))
        )


def is_unit(vector: np.ndarray) -> bool:
    return bool(np.isfinite(vector).all() and abs(float(np.linalg.norm(vector)) - 1.0) <= NORM_TOLERANCE)


def label_names_from(label_map: str) -> Dict[int, tuple]:
    """Label id -> (task, name) from a label map file ({} without one)."""
    if not label_map:
        return {}
    return {label.label_id: (label.task, label.name) for label in features.load_label_map(label_map).labels}


def embedding_width(model_dir: str) -> Optional[int]:
    """The width of the model's ``embed_images`` output, read from ``saved_model.pb`` (nothing is run).

    None when the file does not declare it (no such signature, or an unknown last dimension).

    Raises:
      OSError: no ``saved_model.pb`` (``model_info`` says so first).
    """
    from google.protobuf.message import DecodeError
    from tensorflow.core.protobuf import saved_model_pb2

    try:
        saved_model = saved_model_pb2.SavedModel.FromString(read_bytes(os.path.join(model_dir, "saved_model.pb")))
    except DecodeError:
        return None
    for meta_graph in saved_model.meta_graphs:
        signature = meta_graph.signature_def.get(EMBED_SIGNATURE)
        if signature is not None and EMBED_OUTPUT in signature.outputs:
            dims = signature.outputs[EMBED_OUTPUT].tensor_shape.dim
            return int(dims[-1].size) if dims and dims[-1].size > 0 else None
    return None


def check_params(settings: IndexSettings) -> Dict[str, int]:
    """The compressed backend's parameters checked against the model's embedding width, ``m`` chosen.

    Raises:
      SimilarError: parameters for a backend that takes none of them, or a value the width rules out.
    """
    if not settings.params:
        return {}
    if settings.backend not in (AUTO_BACKEND, LARGE_BACKEND):
        given = ", ".join(f"{k}={v}" for k, v in sorted(settings.params.items()))
        raise SimilarError(
            f"{given}: settings of the compressed backend {LARGE_BACKEND}, not of --backend {settings.backend}"
        )
    try:
        return compressed.check_settings(settings.params, embedding_width(settings.model_dir))
    except ValueError as e:
        raise SimilarError(str(e)) from None


def check_catalogue(catalogue: Dict[str, str]) -> None:
    """Raises EmptyCatalogueError naming the split whose pattern matches no file."""
    if not catalogue:
        raise EmptyCatalogueError("no catalogue given: pass --examples SPLIT=PATTERN")
    for split, pattern in catalogue.items():
        if not FileSystems.match([pattern])[0].metadata_list:
            raise EmptyCatalogueError(f"catalogue split {split!r}: no file matches {pattern}")


def index_catalogue(pipeline: beam.Pipeline, settings: IndexSettings) -> dict:
    """Embeds the catalogue and writes the index with ``pipeline``; returns the summary.

    Raises:
      SimilarError: the model is not a SavedModel, an unknown backend, or backend parameters
        that the model's embedding width rules out (all before anything runs).
      EmptyCatalogueError: no file matches, or no record of them could be indexed.
    """
    try:
        choose_backend(settings.backend, 0)  # an unknown name fails before anything runs
    except ValueError as e:
        raise SimilarError(str(e)) from None
    model = model_info(settings.model_dir)  # before the run: a wrong --model fails at once
    params = check_params(settings)  # so does an m or nprobe the embedding width rules out
    if settings.model_version:
        model = dataclasses.replace(model, version=settings.model_version)
    check_catalogue(settings.catalogue)
    label_names = label_names_from(settings.label_map)
    build_id = uuid.uuid4().hex
    start = time.monotonic()
    _ = (
        pipeline
        | "ReadCatalogue" >> ReadCatalogue(settings.catalogue)
        | "EmbedItems" >> EmbedItems(settings.model_dir, settings.batch_size, settings.thumbnail_size)
        | "WriteIndex"
        >> WriteIndex(
            settings.output,
            settings.backend,
            model,
            label_names,
            {"catalogue": settings.catalogue, "build_id": build_id},
            settings.shards,
            params,
        )
    )
    result = pipeline.run()
    result.wait_until_finish()
    counts = {}
    for counter in result.metrics().query(MetricsFilter().with_namespace(NAMESPACE))["counters"]:
        value = counter.committed if counter.committed is not None else counter.attempted
        counts[counter.key.metric.name] = counts.get(counter.key.metric.name, 0) + int(value)
    counts = dict(sorted(counts.items()))
    manifest_path = os.path.join(settings.output, MANIFEST)
    manifest = json.loads(read_bytes(manifest_path)) if FileSystems.exists(manifest_path) else {}
    if manifest.get("build_id") != build_id:
        raise EmptyCatalogueError(
            f"no item of the catalogue could be indexed ({settings.catalogue}): "
            f"{counts.get('records_read', 0)} records read; counts: {counts}"
        )
    skipped = {k: v for k, v in counts.items() if k not in ("records_read", "items_embedded", "items_indexed") and v}
    summary = {
        "output": settings.output,
        "model": manifest["model"],
        "backend": manifest["backend"],
        "params": manifest["params"],
        "items": manifest["count"],
        "records_read": counts.get("records_read", 0),
        "skipped": skipped,
        "seconds": round(time.monotonic() - start, 1),
        "index_build_seconds": manifest["build_seconds"],
    }
    with FileSystems.create(os.path.join(settings.output, SUMMARY)) as f:
        f.write(json.dumps(summary, indent=1).encode())
    return summary


def default_catalogue(data_root: str) -> Dict[str, str]:
    """Every split folder of the download job's output: ``<data_root>/<split>/*.tfrecord.gz``."""
    return {
        os.path.basename(os.path.dirname(p)): os.path.join(os.path.dirname(p), "*.tfrecord.gz")
        for p in sorted(glob.glob(os.path.join(data_root, "*", "*.tfrecord.gz")))
    }


def index_version(model_dir: str) -> str:
    """The folder name of a model's index: Pusher's version, else ``model-<fingerprint prefix>``."""
    info = model_info(model_dir)
    return info.version or f"model-{info.fingerprint[:12]}"


def parse_args(argv: Optional[List[str]]):
    parser = argparse.ArgumentParser(
        allow_abbrev=False, prog="imat index", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--workdir", default=DEFAULT_WORKDIR, help="where the defaults below are found")
    parser.add_argument("--model", help="SavedModel folder; default: the newest pushed in WORKDIR/serving")
    parser.add_argument(
        "--examples",
        action="append",
        metavar="SPLIT=PATTERN",
        help="TFRecords of a catalogue split; repeat per split; default: WORKDIR/data/<split>/",
    )
    parser.add_argument("--output", help="index folder; default: WORKDIR/similar/<model version>")
    parser.add_argument(
        "--backend",
        default=DEFAULT_BACKEND,
        choices=[AUTO_BACKEND] + sorted(BACKENDS),
        help="auto (default): faiss-hnsw below %d items, the compressed faiss-ivfpq from there on" % COMPRESSED_FROM,
    )
    ivfpq = parser.add_argument_group(
        f"the compressed backend ({LARGE_BACKEND}; what --backend auto builds from {COMPRESSED_FROM} items)"
    )
    ivfpq.add_argument(
        "--shards",
        type=int,
        default=DEFAULT_SHARDS,
        help=f"parts encoded in parallel, then merged. Default: {DEFAULT_SHARDS}",
    )
    ivfpq.add_argument(
        "--m",
        type=int,
        help="sub-quantizers: bytes per item, a divisor of the model's embedding width (else its largest divisor "
        f"below, with a warning); at most the width. Default: the largest divisor up to {compressed.DEFAULT_M} "
        "(512 for 2,048-d embeddings, 320 for 1,280, 288 for 576)",
    )
    ivfpq.add_argument(
        "--nprobe",
        type=int,
        help="cells scanned per query, at least 1, kept in the index for its searches; more: better recall, "
        f"slower queries. Default: {compressed.FaissIVFPQBackend.defaults['nprobe']}",
    )
    parser.add_argument("--label_map", help="default: WORKDIR/source/label_map.csv if present")
    parser.add_argument("--batch_size", type=int, default=IndexSettings.batch_size)
    parser.add_argument(
        "--thumbnail_size",
        type=int,
        default=IndexSettings.thumbnail_size,
        help="longer side of the thumbnails kept for contact sheets; 0 keeps none",
    )
    args, beam_args = parser.parse_known_args(argv)
    from imat_common.beam_flags import flags_of, unknown_arg_message

    # Beam would only warn about a misspelled flag and run with the defaults.
    unknown = unknown_arg_message(beam_args, flags_of(parser))
    if unknown:
        raise SimilarError(unknown)
    return parser, args, beam_args


def settings_from_args(parser, args) -> IndexSettings:
    """The job's settings from the parsed flags.

    Raises:
      SimilarError: no model to be found, or a flag out of range (the CLI's one-line error).
    """
    work = Workdir(args.workdir)
    try:
        model_dir = model_or_newest(args.model, args.workdir)
    except FileNotFoundError as e:
        raise SimilarError(str(e)) from None
    catalogue = {}
    for item in args.examples or []:
        split, sep, pattern = item.partition("=")
        if not sep or not split or not pattern:
            raise SimilarError(f"--examples takes SPLIT=PATTERN, got {item!r}")
        catalogue[split] = pattern
    catalogue = catalogue or default_catalogue(work.data)
    output = args.output or os.path.join(work.similar, index_version(model_dir))
    label_map = args.label_map or (work.label_map if os.path.exists(work.label_map) else "")
    if args.batch_size < 1 or args.thumbnail_size < 0 or args.shards < 1:
        raise SimilarError("--batch_size and --shards must be at least 1 and --thumbnail_size at least 0")
    params = {name: getattr(args, name) for name in ("m", "nprobe") if getattr(args, name) is not None}
    return IndexSettings(
        model_dir,
        catalogue,
        output,
        args.backend,
        args.batch_size,
        args.thumbnail_size,
        label_map,
        shards=args.shards,
        params=params,
    )


def run(argv: Optional[List[str]] = None) -> dict:
    """Parses the flags, runs the job with Beam and returns the summary."""
    parser, args, beam_args = parse_args(argv)
    settings = settings_from_args(parser, args)
    return index_catalogue(beam.Pipeline(options=PipelineOptions(beam_args or LOCAL_RUNNER_ARGS)), settings)


def format_summary(summary: dict) -> str:
    model = summary["model"]
    lines = [
        f"Indexed {summary['items']} items of {summary['records_read']} records in {summary['seconds']} s "
        f"(index build {summary['index_build_seconds']} s, {summary['backend']} {summary['params']})",
        f"  model: {model['path']} (version {model['version'] or '-'}, fingerprint {model['fingerprint'][:12]})",
        f"  index: {summary['output']}",
        f"  skipped: {summary['skipped'] or 'none'}",
    ]
    return "\n".join(lines)


def main(argv: Optional[List[str]] = None) -> None:
    """The job run as a module (``python -m``): prints the summary; bad input exits 2 with argparse's error.

    ``imat index`` (``cli/index.py``) runs ``run`` with the command line's logging and one-line errors.
    """
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    try:
        parser, _, _ = parse_args(argv)
    except SimilarError as e:  # an unknown flag: there is no parser to print the usage of
        from imat_common.errors import user_error

        raise user_error("index", e) from None
    try:
        print(format_summary(run(argv)))
    except SimilarError as e:
        parser.error(str(e))


if __name__ == "__main__":
    main()
