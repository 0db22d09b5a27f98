"""Images per CPU second of the Trainer's input at 299 px against decoding alone, in the same run.

  .venv/bin/python benchmarks/input_benchmark.py --work /tmp/imat-input --batches 30 --repeats 3

Writes realistic training data first: photos (generated, or ``--images`` resized to
``--photo_size``) stored the way the download job stores them (``process_image``: at most 299 px
on the longer side, JPEG quality 90) in gzip TFRecord shards of its tf.Examples, written as the
pipeline's ExampleGen writes them (stored blocks) and, for comparison, as TFX's own ExampleGen
does (zlib level 6), and a Transform
graph with the project's ``preprocessing_fn`` at ``--image_size``. Then runs each variant in its
own process on ONE core (one intra-op and one inter-op thread, a tf.data private thread pool of
one thread): ``--warmup`` batches (the shuffle buffer fills), then ``--batches`` batches of
``--batch_size`` timed by the process's user+sys CPU time and by the wall clock. Variants run in
turn, ``--repeats`` rounds; the median per variant is reported, and each variant's rate as a
share of decoding alone in the same round (median over rounds). Nothing is trained: this is the
CPU a GPU's feed costs.

Variants:
  decode only, in the graph
                         the stored JPEGs, held in memory, in batches, each decoded
                         (``tf.io.decode_jpeg``) and reduced to its largest value (so every pixel
                         is read) inside tf.data: the floor of any input that decodes JPEGs
  decode only, a tf.data element per photo
                         the same JPEGs decoded and reduced one photo per tf.data element (a map
                         over single photos, then batched), as the input function decodes them:
                         what tf.data's handling of each photo adds to decoding
  decode only, one call per image
                         the same JPEGs decoded by one eager ``tf.io.decode_jpeg`` call each from a
                         Python loop (the decode-only measure of the issue that asked for this)
  reading only           the shards read as the input function reads them (``data.raw_dataset``:
                         gzip, every shard interleaved, shuffled, batched), nothing parsed
  reading only, TFX's level 6
                         the same records in shards deflated at zlib's level 6, as TFX's own
                         ExampleGen writes them (ours stores them: components/example_writer.py)
  reading and parsing    the same, and the features the input function uses parsed
                         (``tf.io.parse_example`` of ``data.PARSED_KEYS``: the JPEG and the labels)
  reading and parsing every feature
                         the same, every raw feature parsed (the input function before it
                         parsed only what it uses)
  input_fn               ``trainer.data.input_fn(training=True)`` as the Trainer calls it: read,
                         parse, labels through Transform, decode each photo and ``padded_batch``
                         it onto a uint8 canvas. The same with augmentation on or off:
                         augmentation runs in the model
  input_fn, TFX's level 6
                         the same on the level-6 shards
  input_fn, a canvas per photo then stacked
                         as first written (commit a762566): each photo padded to its own canvas
                         in a ``map_fn`` over the batch, then stacked
  CPU input, plain       the input before (commit 66078a8): Transform's graph decodes,
                         resizes and scales on the CPU
  CPU input, augmented   the input before, augmentation on: a decode of a random crop, a mirror
                         and Transform's resize and scaling on the CPU
  model layer (CPU)      not input: ``canvas.CanvasToImage`` with augmentation, the work moved
                         into the model, timed on this CPU on input_fn's batches (what it costs
                         where there is no accelerator)
"""

import argparse
import io
import json
import os
import resource
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

VARIANTS = (
    "decode only, in the graph",
    "decode only, a tf.data element per photo",
    "decode only, one call per image",
    "reading only",
    "reading only, TFX's level 6",
    "reading and parsing",
    "reading and parsing every feature",
    "input_fn",
    "input_fn, TFX's level 6",
    "input_fn, a canvas per photo then stacked",
    "CPU input, plain",
    "CPU input, augmented",
    "model layer (CPU)",
)
TRAIN, TFX_LEVEL6 = "train", "train-tfx-level6"  # folders under --work
REFERENCE = "decode only, in the graph"
PER_CALL = "decode only, one call per image"
NUM_LABELS = 228


def _photo(rng, width: int, height: int) -> bytes:
    """A photo-like JPEG: a lit garment-sized blob with texture over a light background."""
    import numpy as np
    from PIL import Image

    x, y = np.meshgrid(np.linspace(-1, 1, width), np.linspace(-1, 1, height))
    cx, cy = rng.uniform(-0.2, 0.2, 2)
    garment = ((x - cx) / 0.6) ** 2 + ((y - cy) / 0.8) ** 2 < 1
    colour = rng.integers(0, 256, 3)
    stripes = 40 * np.sin(rng.uniform(5, 40) * (x * rng.uniform(-1, 1) + y))[..., None]
    weave = 40 * np.sin(rng.uniform(150, 250) * x) * np.sin(rng.uniform(150, 250) * y)  # fabric texture
    image = np.where(garment[..., None], colour + stripes + weave[..., None], 235.0)
    # Light falloff and sensor noise: stored JPEGs come out near the 15-25 KB of catalogue photos at 299 px.
    image = image + 25 * (y[..., None] + 1) + rng.normal(0, 28, (height, width, 3))
    buf = io.BytesIO()
    Image.fromarray(np.clip(image, 0, 255).astype(np.uint8)).save(buf, format="JPEG", quality=92)
    return buf.getvalue()


def _source_photos(args):
    """Yields source photo bytes: generated, or the --images files resized to --photo_size."""
    import numpy as np
    from PIL import Image

    width, height = (int(v) for v in args.photo_size.split("x"))
    rng = np.random.default_rng(0)
    if not args.images:
        for _ in range(args.num_images):
            yield _photo(rng, width, height)
        return
    names = sorted(n for n in os.listdir(args.images) if n.lower().endswith((".jpg", ".jpeg")))
    if not names:
        raise SystemExit(f"no .jpg files in {args.images}")
    for name in names[: args.num_images]:
        with Image.open(os.path.join(args.images, name)) as im:
            buf = io.BytesIO()
            im.convert("RGB").resize((width, height), Image.Resampling.BICUBIC).save(buf, format="JPEG", quality=92)
            yield buf.getvalue()


def prepare(args) -> dict:
    """Writes the shards and the Transform graph under --work; returns a summary."""
    import hashlib

    import numpy as np
    import tensorflow as tf
    import tensorflow_transform as tft
    import tensorflow_transform.beam as tft_beam
    from google.protobuf import text_format
    from tensorflow_metadata.proto.v0 import schema_pb2
    from tensorflow_transform.tf_metadata import dataset_metadata, metadata_io, schema_utils

    from components.download.images import ImageSettings, process_image
    from components.download.tfrecord import GzipWriter, serialize_example, write_records
    from components.example_writer import EXAMPLES_GZIP_LEVEL
    from trainer import preprocessing
    from imat_common import features

    rng = np.random.default_rng(1)
    records, stored_bytes, sizes = [], 0, set()
    for i, source in enumerate(_source_photos(args)):
        stored = process_image(source, ImageSettings())  # what the download job keeps
        labels = sorted(set(int(v) for v in rng.integers(1, NUM_LABELS + 1, 4)))
        records.append(
            serialize_example(
                {
                    features.IMAGE_ID_KEY: str(i).encode(),
                    features.IMAGE_KEY: stored.jpeg,
                    features.HEIGHT_KEY: stored.height,
                    features.WIDTH_KEY: stored.width,
                    features.SHA256_KEY: hashlib.sha256(stored.jpeg).hexdigest().encode(),
                    features.URL_KEY: f"http://example.com/{i}.jpg".encode(),
                    features.LABELS_KEY: labels,
                }
            )
        )
        stored_bytes += len(stored.jpeg)
        sizes.add((stored.width, stored.height))
    for folder in (TRAIN, TFX_LEVEL6):
        tf.io.gfile.makedirs(os.path.join(args.work, folder))
    for shard in range(args.shards):
        name = f"part-{shard:05d}-of-{args.shards:05d}.tfrecord.gz"
        # As the pipeline's ExampleGen writes its splits ...
        with open(os.path.join(args.work, TRAIN, name), "wb") as f:
            writer = GzipWriter(f, EXAMPLES_GZIP_LEVEL)
            write_records(writer, records[shard :: args.shards])
            writer.finish()
        # ... and as TFX's own ExampleGen does (Beam's gzip writer: zlib's default level, 6).
        with tf.io.TFRecordWriter(os.path.join(args.work, TFX_LEVEL6, name), "GZIP") as writer:
            for record in records[shard :: args.shards]:
                writer.write(record)

    schema = schema_pb2.Schema()
    schema_path = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "schema", "demo.pbtxt")
    with open(schema_path) as f:
        text_format.Parse(f.read(), schema)
    metadata = dataset_metadata.DatasetMetadata(schema)
    spec = schema_utils.schema_as_feature_spec(schema).feature_spec
    rows = [tf.io.parse_single_example(r, spec) for r in records[:16]]
    rows = [
        {k: (v.values.numpy().tolist() if isinstance(v, tf.SparseTensor) else v.numpy()) for k, v in row.items()}
        for row in rows
    ]
    config = {"num_labels": NUM_LABELS, "image_size": args.image_size}
    out = os.path.join(args.work, "transform")
    if tf.io.gfile.exists(out):  # a rerun with the same --work writes it again
        tf.io.gfile.rmtree(out)
    with tft_beam.Context(temp_dir=os.path.join(out, "tmp"), force_tf_compat_v1=False):
        transform_fn = (rows, metadata) | tft_beam.AnalyzeDataset(
            lambda inputs: preprocessing.preprocessing_fn(inputs, config)
        )
        _ = transform_fn | tft_beam.WriteTransformFn(out)
    metadata_io.write_metadata(metadata, os.path.join(out, tft.TFTransformOutput.RAW_METADATA_DIR))
    megabytes = lambda folder: (
        sum(os.path.getsize(p) for p in tf.io.gfile.glob(os.path.join(args.work, folder, "*.tfrecord.gz"))) / 1e6
    )
    return {
        "examples": len(records),
        "shards": args.shards,
        "shards_mb": round(megabytes(TRAIN), 2),
        "shards_mb_tfx_level6": round(megabytes(TFX_LEVEL6), 2),
        "stored_sizes": sorted(sizes)[:4],
        "mean_jpeg_kb": round(stored_bytes / len(records) / 1024, 1),
    }


def _stored_jpegs(args):
    """The stored JPEGs of the shards, in memory."""
    import tensorflow as tf

    from imat_common import features

    spec = {features.IMAGE_KEY: tf.io.FixedLenFeature([], tf.string)}
    pattern = os.path.join(args.work, TRAIN, "*.tfrecord.gz")
    records = tf.data.TFRecordDataset(tf.io.gfile.glob(pattern), compression_type="GZIP")
    return [tf.io.parse_single_example(r, spec)[features.IMAGE_KEY].numpy() for r in records]


def _cpu_input(tf_transform_output, pattern, args, augment: bool):
    """The training input before the canvas (commit 66078a8): the CPU decodes, crops, mirrors, resizes, scales."""
    import tensorflow as tf

    from imat_common import features
    from trainer import data
    from trainer.preprocessing import IMAGE_FEATURE, LABELS_FEATURE, resize_and_scale

    size, tft_layer = args.image_size, tf_transform_output.transform_features_layer()

    def augment_one(jpeg):
        shape = tf.image.extract_jpeg_shape(jpeg)
        fraction = tf.random.uniform([], 0.8, 1.0)
        crop = tf.maximum(1, tf.cast(tf.round(tf.cast(shape[:2], tf.float32) * fraction), tf.int32))
        y = tf.random.uniform([], 0, shape[0] - crop[0] + 1, dtype=tf.int32)
        x = tf.random.uniform([], 0, shape[1] - crop[1] + 1, dtype=tf.int32)
        image = tf.io.decode_and_crop_jpeg(jpeg, tf.stack([y, x, crop[0], crop[1]]), channels=3)
        flip = tf.random.uniform([]) < 0.5
        return resize_and_scale(tf.cond(flip, lambda: tf.reverse(image, axis=[1]), lambda: image), size)

    def transform(raw):
        if augment:
            labels = tft_layer({features.LABELS_KEY: raw[features.LABELS_KEY]})[LABELS_FEATURE]
            jpegs = raw[features.IMAGE_KEY]
            jpegs = tf.sparse.to_dense(jpegs, "") if isinstance(jpegs, tf.SparseTensor) else jpegs
            spec = tf.TensorSpec([size, size, 3], tf.float32)
            return tf.map_fn(augment_one, tf.reshape(jpegs, [-1]), fn_output_signature=spec), labels
        out = tft_layer({k: raw[k] for k in (features.IMAGE_KEY, features.LABELS_KEY)})
        return out[IMAGE_FEATURE], out[LABELS_FEATURE]

    raw = data.raw_dataset(pattern, tf_transform_output.raw_feature_spec(), args.batch_size, shuffle=True, seed=0)
    options = tf.data.Options()
    options.deterministic = False
    return raw.map(transform, num_parallel_calls=tf.data.AUTOTUNE).with_options(options).prefetch(tf.data.AUTOTUNE)


def _stacked_canvas_input(tf_transform_output, pattern, args):
    """The canvas input as first written (commit a762566): a canvas per photo in a map_fn, then stacked."""
    import tensorflow as tf

    from imat_common import features
    from trainer import canvas, data
    from trainer.preprocessing import LABELS_FEATURE

    side, tft_layer = canvas.canvas_side(args.image_size), tf_transform_output.transform_features_layer()

    def transform(raw):
        labels = tft_layer({features.LABELS_KEY: raw[features.LABELS_KEY]})[LABELS_FEATURE]
        jpegs = raw[features.IMAGE_KEY]
        jpegs = tf.reshape(tf.sparse.to_dense(jpegs, "") if isinstance(jpegs, tf.SparseTensor) else jpegs, [-1])
        specs = (tf.TensorSpec([side, side, 3], tf.uint8), tf.TensorSpec([2], tf.int32))

        def on_canvas(jpeg):
            image, shape = canvas.decode_to_fit(jpeg, side)
            return tf.pad(image, [[0, side - shape[0]], [0, side - shape[1]], [0, 0]]), shape

        canvases, shapes = tf.map_fn(on_canvas, jpegs, fn_output_signature=specs)
        return {canvas.CANVAS: canvases, canvas.SHAPE: shapes}, labels

    raw = data.raw_dataset(pattern, tf_transform_output.raw_feature_spec(), args.batch_size, shuffle=True, seed=0)
    options = tf.data.Options()
    options.deterministic = False
    return raw.map(transform, num_parallel_calls=tf.data.AUTOTUNE).with_options(options).prefetch(tf.data.AUTOTUNE)


def build(variant: str, args):
    """The dataset of one variant, or for the model layer a function of the batch number that runs it."""
    import tensorflow as tf
    import tensorflow_transform as tft

    from trainer import canvas, data

    tf_transform_output = tft.TFTransformOutput(os.path.join(args.work, "transform"))
    level6 = variant.endswith("TFX's level 6")
    pattern = os.path.join(args.work, TFX_LEVEL6 if level6 else TRAIN, "*.tfrecord.gz")
    if variant == REFERENCE:
        dataset = tf.data.Dataset.from_tensor_slices(_stored_jpegs(args)).repeat().batch(args.batch_size)

        def decode(jpegs):
            largest = lambda jpeg: tf.reduce_max(tf.io.decode_jpeg(jpeg, channels=3))
            return tf.map_fn(largest, jpegs, fn_output_signature=tf.uint8)

        return dataset.map(decode, num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE)
    if variant == "decode only, a tf.data element per photo":
        largest = lambda jpeg: tf.reduce_max(tf.io.decode_jpeg(jpeg, channels=3))
        dataset = tf.data.Dataset.from_tensor_slices(_stored_jpegs(args)).repeat()
        dataset = dataset.map(largest, num_parallel_calls=tf.data.AUTOTUNE).batch(args.batch_size)
        return dataset.prefetch(tf.data.AUTOTUNE)
    if variant == PER_CALL:
        jpegs = _stored_jpegs(args)

        def decode_batch(i):
            start = i * args.batch_size
            return [tf.io.decode_jpeg(jpegs[(start + k) % len(jpegs)], channels=3) for k in range(args.batch_size)]

        return decode_batch
    if variant.startswith("reading"):
        spec = tf_transform_output.raw_feature_spec() if "parsing" in variant else None
        if variant == "reading and parsing":
            spec = {k: spec[k] for k in data.PARSED_KEYS}
        dataset = data.raw_dataset(pattern, spec, args.batch_size, shuffle=True, seed=0)
        return dataset.prefetch(tf.data.AUTOTUNE)
    if variant == "input_fn, a canvas per photo then stacked":
        return _stacked_canvas_input(tf_transform_output, pattern, args)
    if variant in ("input_fn", "input_fn, TFX's level 6", "model layer (CPU)"):
        dataset = data.input_fn(pattern, tf_transform_output, args.batch_size, training=True, seed=0)
        if variant != "model layer (CPU)":
            return dataset
        layer = canvas.CanvasToImage(args.image_size, augment=True, seed=0)
        step = tf.function(lambda inputs: layer(inputs, training=True))
        # The batches are decoded once, outside the timing: only the layer is timed.
        batches = [inputs for inputs, _ in dataset.take(4)]
        return lambda i: step(batches[i % len(batches)])
    return _cpu_input(tf_transform_output, pattern, args, augment=variant.endswith("augmented"))


def run_one(variant: str, args) -> dict:
    """Times one variant in this process (started by ``main`` with one thread)."""
    import tensorflow as tf

    options = tf.data.Options()
    options.threading.private_threadpool_size = args.threads
    options.threading.max_intra_op_parallelism = 1
    built = build(variant, args)
    if callable(built):
        one = built
    else:
        iterator = iter(built.with_options(options))
        one = lambda _: next(iterator)

    for i in range(args.warmup):
        one(i)
    usage, wall = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
    for i in range(args.batches):
        out = one(i)
    after, wall = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter() - wall
    cpu = (after.ru_utime - usage.ru_utime) + (after.ru_stime - usage.ru_stime)
    n = args.batches * args.batch_size
    first = out[0] if isinstance(out, tuple) else out
    first = next(iter(first.values())) if isinstance(first, dict) else first
    size = int(first.dense_shape[0]) if isinstance(first, tf.SparseTensor) else len(first)
    assert size == args.batch_size, size  # a batch, or a list of decoded images
    return {
        "images_per_cpu_s": n / cpu,
        "images_per_wall_s": n / wall,
        "cpu_ms_per_image": 1000 * cpu / n,
        "peak_rss_mb": after.ru_maxrss / 1024,
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", required=True, help="folder for the shards and Transform graphs")
    parser.add_argument("--images", help="a folder of .jpg photos to use instead of generated ones")
    parser.add_argument("--num_images", type=int, default=512)
    parser.add_argument("--photo_size", default="400x600", help="WIDTHxHEIGHT of the photos before storing")
    parser.add_argument("--shards", type=int, default=8)
    parser.add_argument("--image_size", type=int, default=299)
    parser.add_argument("--batch_size", type=int, default=32)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--batches", type=int, default=30)
    parser.add_argument("--repeats", type=int, default=3, help="rounds over every variant; the median is reported")
    parser.add_argument("--threads", type=int, default=1, help="CPU threads each variant may use")
    parser.add_argument("--variants", nargs="*", help=f"names from {VARIANTS} (default: all)")
    parser.add_argument("--run_variant", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.run_variant:
        print(json.dumps(run_one(args.run_variant, args)))
        return
    variants = args.variants or list(VARIANTS)
    # Every share is against decoding in the same round.
    variants = [v for v in (REFERENCE, PER_CALL) if v not in variants] + variants
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown:
        raise SystemExit(f"unknown variants {unknown}; choose from {list(VARIANTS)}")
    summary = prepare(args)
    print(f"data: {json.dumps(summary)}", flush=True)
    threads = str(args.threads)
    env = dict(os.environ)  # each variant's process chooses Keras 2 itself (imat_common/keras2.py)
    env.update(
        TF_NUM_INTRAOP_THREADS=threads,
        TF_NUM_INTEROP_THREADS=threads,
        OMP_NUM_THREADS=threads,
        TF_CPP_MIN_LOG_LEVEL="2",
    )
    passed = [a for a in sys.argv[1:] if a != "--variants" and a not in variants]
    results = {v: [] for v in variants}
    for _ in range(args.repeats):
        for variant in variants:
            out = subprocess.run(
                [sys.executable, os.path.abspath(__file__), *passed, "--run_variant", variant],
                env=env,
                capture_output=True,
                text=True,
                check=False,
            )
            if out.returncode:
                raise SystemExit(f"{variant} failed:\n{out.stderr[-3000:]}")
            results[variant].append(json.loads(out.stdout.strip().splitlines()[-1]))
    print(
        f"\n{args.batches} batches of {args.batch_size} at {args.image_size} px per run, {args.threads} thread(s), "
        f"median of {args.repeats} runs (min-max of images per CPU second)\n"
    )
    references = {name: [r["images_per_cpu_s"] for r in results[name]] for name in (REFERENCE, PER_CALL)}
    columns = " | ".join(f"share of {name}" for name in references)
    print(f"| variant | images / CPU s | {columns} | CPU ms / image | images / wall s | peak RSS MB |")
    print("|---|---|" + "---|" * len(references) + "---|---|---|")
    for variant, runs in results.items():
        per_cpu = [r["images_per_cpu_s"] for r in runs]
        # Each round's rate against the reference measured in that round; the median over rounds.
        shares = " | ".join(
            f"{statistics.median(rate / ref for rate, ref in zip(per_cpu, refs)):.2f}" for refs in references.values()
        )
        med = lambda key: statistics.median(r[key] for r in runs)
        print(
            f"| {variant} | {med('images_per_cpu_s'):.0f} ({min(per_cpu):.0f}-{max(per_cpu):.0f}) | {shares} | "
            f"{med('cpu_ms_per_image'):.2f} | {med('images_per_wall_s'):.0f} | {med('peak_rss_mb'):.0f} |"
        )


if __name__ == "__main__":
    main()
