"""Images per CPU second of the Trainer's input function alone at 299 px, variant by variant.

  .venv/bin/python benchmarks/input_benchmark.py --work /tmp/imat-input --batches 30 --repeats 3

Writes realistic training data first: photos (generated, or ``--images`` resized to
``--photo_size``) stored the way the download job stores them (``process_image``: at most 299 px
on the longer side, JPEG quality 90) in gzip TFRecord shards of its tf.Examples, and two
Transform graphs with the project's ``preprocessing_fn`` at ``--image_size``: the current one,
and the one as shipped before this benchmark (antialiased resize always). Then runs each
variant of the input function in its own process on ONE core (one intra-op and one inter-op
thread, a tf.data private thread pool of one thread): ``--warmup`` batches (the shuffle buffer
fills), then ``--batches`` batches of ``--batch_size`` timed by the process's user+sys CPU
time and by the wall clock. Variants run in turn, ``--repeats`` rounds, and the median per
variant is reported. Nothing is trained: this is the CPU a GPU's feed costs.
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

# name -> (Transform graph, augmentation, deterministic, parallel interleave, prefetch); "input_fn"
# as augmentation means trainer.data.input_fn itself, as the Trainer calls it.
VARIANTS = {
    "as shipped, no augmentation": ("shipped", None, True, True, True),
    "+ plain bilinear when no side shrinks": ("current", None, True, True, True),
    "+ deterministic off (training): now shipped, no augmentation": ("current", "input_fn", False, True, True),
    "  same, reading one shard after another (no parallel interleave)": ("current", None, False, False, True),
    "  same, no prefetch": ("current", None, False, True, False),
    "as shipped, augmentation (float flip, crop, second resize)": ("shipped", "float", True, True, True),
    "+ fused decode_and_crop (flip on floats after the resize)": ("shipped", "fused_float_flip", True, True, True),
    "+ uint8 until the last step (flip before the resize)": ("shipped", "fused", True, True, True),
    "+ plain bilinear when no side shrinks, augmentation": ("current", "fused", True, True, True),
    "+ deterministic off (training): now shipped, augmentation": ("current", "input_fn_augment", False, True, True),
}
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


def _old_resize_and_scale(image, image_size):
    """Transform's resize as shipped before: antialiased whether it shrinks or not."""
    import tensorflow as tf

    return tf.image.resize(image, [image_size, image_size], method="bilinear", antialias=True) / 127.5 - 1.0


def prepare(args) -> dict:
    """Writes the shards and both Transform graphs under --work; returns a summary."""
    import hashlib
    from unittest import mock

    import numpy as np
    import tensorflow as tf
    import tensorflow_transform as tft
    import tensorflow_transform.beam as tft_beam
    from google.protobuf import text_format
    from tensorflow_metadata.proto.v0 import schema_pb2
    from tensorflow_transform.tf_metadata import dataset_metadata, metadata_io, schema_utils

    from components.download.images import ImageSettings, process_image
    from components.download.tfrecord import serialize_example
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
    train = os.path.join(args.work, "train")
    tf.io.gfile.makedirs(train)
    for shard in range(args.shards):
        path = os.path.join(train, f"part-{shard:05d}-of-{args.shards:05d}.tfrecord.gz")
        with tf.io.TFRecordWriter(path, "GZIP") as writer:
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
    for graph, resize in (("current", preprocessing.resize_and_scale), ("shipped", _old_resize_and_scale)):
        out = os.path.join(args.work, f"transform_{graph}")
        with (
            mock.patch.object(preprocessing, "resize_and_scale", resize),
            tft_beam.Context(temp_dir=os.path.join(out, "tmp"), force_tf_compat_v1=False),
        ):
            transform_fn = (rows, metadata) | tft_beam.AnalyzeDataset(
                lambda inputs: preprocessing.preprocessing_fn(inputs, config)
            )
            _ = transform_fn | tft_beam.WriteTransformFn(out)
        metadata_io.write_metadata(metadata, os.path.join(out, tft.TFTransformOutput.RAW_METADATA_DIR))
    return {
        "examples": len(records),
        "shards": args.shards,
        "stored_sizes": sorted(sizes)[:4],
        "mean_jpeg_kb": round(stored_bytes / len(records) / 1024, 1),
    }


def build(variant: str, args):
    """The dataset of one variant; the two "now shipped" rows are trainer.data.input_fn itself."""
    import tensorflow as tf
    import tensorflow_transform as tft

    from trainer import data
    from imat_common import features
    from trainer.preprocessing import IMAGE_FEATURE, LABELS_FEATURE, resize_and_scale

    graph, augmentation, deterministic, parallel_interleave, prefetch = VARIANTS[variant]
    tf_transform_output = tft.TFTransformOutput(os.path.join(args.work, f"transform_{graph}"))
    pattern = os.path.join(args.work, "train", "*.tfrecord.gz")
    if augmentation in ("input_fn", "input_fn_augment"):
        return data.input_fn(
            pattern,
            tf_transform_output,
            args.batch_size,
            training=True,
            augment_images=augmentation == "input_fn_augment",
            seed=0,
        )

    size = args.image_size
    resize = resize_and_scale if graph == "current" else _old_resize_and_scale
    tft_layer = tf_transform_output.transform_features_layer()
    image_spec = tf.TensorSpec([size, size, 3], tf.float32)

    def shipped_augment(image):  # trainer.data.augment as it was shipped
        image = tf.image.random_flip_left_right(image, seed=0)
        crop = tf.cast(tf.cast(size, tf.float32) * tf.random.uniform([], 0.8, 1.0, seed=0), tf.int32)
        return tf.image.resize(tf.image.random_crop(image, [crop, crop, 3], seed=0), [size, size])

    def fused(jpeg):
        window = data.random_crop_window(jpeg, seed=0)
        flip = tf.random.uniform([], seed=4) < 0.5
        if augmentation == "fused_float_flip":
            image = resize(tf.io.decode_and_crop_jpeg(jpeg, window, channels=3), size)
            return tf.cond(flip, lambda: tf.reverse(image, axis=[1]), lambda: image)
        image = tf.io.decode_and_crop_jpeg(jpeg, window, channels=3)
        return resize(tf.cond(flip, lambda: tf.reverse(image, axis=[1]), lambda: image), size)

    def transform(raw):
        if augmentation in ("fused", "fused_float_flip"):
            labels = tft_layer({features.LABELS_KEY: raw[features.LABELS_KEY]})[LABELS_FEATURE]
            jpegs = raw[features.IMAGE_KEY]
            jpegs = tf.sparse.to_dense(jpegs, "") if isinstance(jpegs, tf.SparseTensor) else jpegs
            return tf.map_fn(fused, tf.reshape(jpegs, [-1]), fn_output_signature=image_spec), labels
        out = tft_layer({k: raw[k] for k in (features.IMAGE_KEY, features.LABELS_KEY)})
        images = out[IMAGE_FEATURE]
        if augmentation == "float":
            images = tf.map_fn(shipped_augment, images)
        return images, out[LABELS_FEATURE]

    files = data.list_files(pattern)
    dataset = tf.data.Dataset.from_tensor_slices(files).shuffle(len(files), seed=0).repeat()
    dataset = dataset.interleave(
        lambda f: tf.data.TFRecordDataset(f, compression_type="GZIP"),
        cycle_length=min(len(files), data.MAX_OPEN_FILES),
        block_length=1,
        num_parallel_calls=tf.data.AUTOTUNE if parallel_interleave else None,
        deterministic=deterministic,
    )
    dataset = dataset.shuffle(data.DEFAULT_SHUFFLE_BUFFER, seed=0).batch(args.batch_size, drop_remainder=True)
    spec = tf_transform_output.raw_feature_spec()
    dataset = dataset.map(lambda x: tf.io.parse_example(x, spec), num_parallel_calls=tf.data.AUTOTUNE)
    dataset = dataset.map(transform, num_parallel_calls=tf.data.AUTOTUNE, deterministic=deterministic)
    options = tf.data.Options()
    options.deterministic = deterministic
    dataset = dataset.with_options(options)
    return dataset.prefetch(tf.data.AUTOTUNE) if prefetch else dataset


def run_one(variant: str, args) -> dict:
    """Times one variant in this process (started by ``main`` with one thread)."""
    import tensorflow as tf

    options = tf.data.Options()
    options.threading.private_threadpool_size = args.threads
    options.threading.max_intra_op_parallelism = 1
    iterator = iter(build(variant, args).with_options(options))
    for _ in range(args.warmup):
        next(iterator)
    usage, wall = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
    for _ in range(args.batches):
        images, _ = next(iterator)
    after, wall = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter() - wall
    cpu = (after.ru_utime - usage.ru_utime) + (after.ru_stime - usage.ru_stime)
    n = args.batches * args.batch_size
    assert images.shape[1:] == (args.image_size, args.image_size, 3), images.shape
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
    parser.add_argument("--variants", nargs="*", help="names from VARIANTS (default: all)")
    parser.add_argument("--run_variant", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.run_variant:
        print(json.dumps(run_one(args.run_variant, args)))
        return
    variants = args.variants or list(VARIANTS)
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
    print("| variant | images / CPU s | CPU ms / image | images / wall s | peak RSS MB |")
    print("|---|---|---|---|---|")
    for variant, runs in results.items():
        per_cpu = [r["images_per_cpu_s"] for r in runs]
        med = lambda key: statistics.median(r[key] for r in runs)
        print(
            f"| {variant.strip()} | {med('images_per_cpu_s'):.0f} ({min(per_cpu):.0f}-{max(per_cpu):.0f}) | "
            f"{med('cpu_ms_per_image'):.2f} | {med('images_per_wall_s'):.0f} | {med('peak_rss_mb'):.0f} |"
        )


if __name__ == "__main__":
    main()
