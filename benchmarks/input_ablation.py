"""What the Trainer's input costs in quality: shard order, interleave, shuffle buffer, augmentation,
and how the batch norms of a network trained from scratch must run.

  .venv/bin/python benchmarks/input_ablation.py --dataset PATH/TO/fashion-products-2k \
      --work /tmp/imat-ablation --steps 600 --seeds 0 1

Downloads the dataset as ``pipeline_benchmark.py`` does, rewrites the train split into shard sets
in three orders (the catalogue's JSON order, sorted by label as a catalogue sorted by category
would be, and the download job's hash order), then trains the pipeline's network (InceptionV3 from
scratch, the benchmark's settings) once per variant and seed, fed by ``trainer.data.input_fn`` with
that variant's reading settings, or from memory with a full shuffle. Every variant decodes with
the same Transform graph, so only the input differs. Each model is scored on the eval half of the
validation split: micro-F1 at 0.5, and with per-label thresholds tuned on the other half
(calibration). "batch label distance" is how far the first 20 training batches' label frequencies
are from the split's (mean total-variation distance over labels; 0 is a perfect sample).
The "batch norms frozen" variant builds the backbone with ``training=False``, as the Trainer does
for pretrained weights only.
"""

import argparse
import dataclasses
import hashlib
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import imat_common.keras2  # noqa: F401  (chooses Keras 2 before TensorFlow loads)

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import numpy as np

# name -> (shard order, shuffle buffer, shards read at once (0: all), augmentation, feed, batch norm)
# "batch norm" is "learn" (the Trainer's choice from scratch: the batch norms learn their statistics)
# or "frozen" (``training=False``, the choice for pretrained weights, applied here to a network
# trained from scratch to show why the Trainer does not).
VARIANTS = {
    "2 shards at a time, buffer 128, augmentation": ("catalogue", 128, 2, True, "input_fn", "learn"),
    "2 shards at a time, buffer 128, no augmentation": ("catalogue", 128, 2, False, "input_fn", "learn"),
    "2 shards at a time, buffer 128, augmentation, label-sorted shards": (
        "label_sorted",
        128,
        2,
        True,
        "input_fn",
        "learn",
    ),
    "all shards, buffer 128, no augmentation": ("catalogue", 128, 0, False, "input_fn", "learn"),
    "2 shards at a time, buffer 10,000, no augmentation": ("catalogue", 10_000, 2, False, "input_fn", "learn"),
    "all shards, buffer 10,000, augmentation": ("catalogue", 10_000, 0, True, "input_fn", "learn"),
    "all shards, buffer 10,000, no augmentation": ("catalogue", 10_000, 0, False, "input_fn", "learn"),
    "all shards, buffer 10,000, no augmentation, label-sorted shards": (
        "label_sorted",
        10_000,
        0,
        False,
        "input_fn",
        "learn",
    ),
    "hash-ordered shards, 2 shards at a time, buffer 128, no augmentation": (
        "hashed",
        128,
        2,
        False,
        "input_fn",
        "learn",
    ),
    "hash-ordered shards, all shards, buffer 10,000, no augmentation": (
        "hashed",
        10_000,
        0,
        False,
        "input_fn",
        "learn",
    ),
    "in memory, full shuffle, no augmentation": ("catalogue", 0, 0, False, "in_memory", "learn"),
    "all shards, buffer 10,000, no augmentation, batch norms frozen": (
        "catalogue",
        10_000,
        0,
        False,
        "input_fn",
        "frozen",
    ),
}
# The ones the docs' tables quote; --all runs every variant.
CORE = (
    "2 shards at a time, buffer 128, augmentation",
    "2 shards at a time, buffer 128, no augmentation",
    "all shards, buffer 10,000, augmentation",
    "all shards, buffer 10,000, no augmentation",
    "all shards, buffer 10,000, no augmentation, batch norms frozen",
)


def is_default(variant) -> bool:
    """Whether a variant reads as the Trainer does with its default settings."""
    from trainer.settings import TrainerSettings

    order, buffer, cycle, augment, feed, batch_norm = variant
    defaults = TrainerSettings(num_labels=1)
    return (
        feed == "input_fn"
        and order == "catalogue"
        and buffer == defaults.shuffle_buffer
        and cycle == 0
        and augment == defaults.augment
        and batch_norm == "learn"
    )


def hash_key(image_id: bytes, salt: bytes = b"") -> str:
    return hashlib.sha256(salt + image_id).hexdigest()


def read_split(data_root: str, split: str):
    """(serialized examples, image ids, label id lists) of a split, in file order."""
    import tensorflow as tf

    from trainer import data
    from imat_common import features

    spec = {
        features.IMAGE_ID_KEY: tf.io.FixedLenFeature([], tf.string),
        features.LABELS_KEY: tf.io.VarLenFeature(tf.int64),
    }
    records, ids, labels = [], [], []
    files = data.list_files(os.path.join(data_root, split, "*.tfrecord.gz"))
    for record in tf.data.TFRecordDataset(files, compression_type="GZIP"):
        parsed = tf.io.parse_single_example(record, spec)
        records.append(record.numpy())
        ids.append(parsed[features.IMAGE_ID_KEY].numpy())
        labels.append(tuple(int(v) for v in parsed[features.LABELS_KEY].values.numpy()))
    return records, ids, labels


def write_orders(records, ids, labels, out: str, shards: int):
    """Writes the train split in three orders, ``shards`` files each; returns {order: pattern}."""
    import tensorflow as tf

    def by_id(i):
        return int(ids[i]) if ids[i].isdigit() else ids[i]

    orders = {
        "catalogue": sorted(range(len(records)), key=by_id),
        "label_sorted": sorted(range(len(records)), key=lambda i: (labels[i], by_id(i))),
        "hashed": sorted(range(len(records)), key=lambda i: hash_key(ids[i])),
    }
    patterns = {}
    for name, order in orders.items():
        folder = os.path.join(out, name)
        os.makedirs(folder, exist_ok=True)
        for shard, part in enumerate(np.array_split(np.asarray(order), shards)):
            path = os.path.join(folder, f"part-{shard:05d}-of-{shards:05d}.tfrecord.gz")
            with tf.io.TFRecordWriter(path, "GZIP") as writer:
                for i in part:
                    writer.write(records[i])
        patterns[name] = os.path.join(folder, "*.tfrecord.gz")
    return patterns


def build_transform(out: str, num_labels: int, image_size: int, sample: bytes):
    """The pipeline's Transform graph (no analyzers), written with tft_beam."""
    import tensorflow as tf
    import tensorflow_transform as tft
    import tensorflow_transform.beam as tft_beam
    from tensorflow_transform.tf_metadata import dataset_metadata, metadata_io, schema_utils

    from imat_common import features
    from trainer.preprocessing import preprocessing_fn

    if not os.path.exists(os.path.join(out, "transform_fn")):
        spec = {
            features.IMAGE_KEY: tf.io.FixedLenFeature([1], tf.string),
            features.LABELS_KEY: tf.io.VarLenFeature(tf.int64),
        }
        metadata = dataset_metadata.DatasetMetadata(schema_utils.schema_from_feature_spec(spec))
        config = {"num_labels": num_labels, "image_size": image_size}
        with tft_beam.Context(temp_dir=os.path.join(out, "tmp"), force_tf_compat_v1=False):
            example = tf.train.Example.FromString(sample).features.feature
            rows = [
                {
                    features.IMAGE_KEY: list(example[features.IMAGE_KEY].bytes_list.value),
                    features.LABELS_KEY: list(example[features.LABELS_KEY].int64_list.value),
                }
            ]
            transform_fn = (rows, metadata) | tft_beam.AnalyzeDataset(lambda x: preprocessing_fn(x, config))
            _ = transform_fn | tft_beam.WriteTransformFn(out)
        metadata_io.write_metadata(metadata, os.path.join(out, tft.TFTransformOutput.RAW_METADATA_DIR))
    return tft.TFTransformOutput(out)


def batch_label_distance(dataset, frequencies: np.ndarray, batches: int = 20) -> float:
    """Mean over the first batches of the total-variation distance to the split's label frequencies."""
    distances = []
    for _, labels in dataset.take(batches):
        batch = labels.numpy().mean(axis=0)
        distances.append(0.5 * np.abs(batch / max(batch.sum(), 1e-9) - frequencies / frequencies.sum()).sum())
    return float(np.mean(distances))


def decoded(pattern, transform_output, batch_size=64):
    """Images and labels of files decoded by the Transform graph, in file order."""
    from trainer import data

    images, labels = [], []
    for x, y in data.input_fn(pattern, transform_output, batch_size, training=False):
        images.append(x.numpy())
        labels.append(y.numpy())
    return np.concatenate(images), np.concatenate(labels)


def _frozen_batch_norm_config():
    from trainer import model as model_lib

    class FrozenBatchNorm(model_lib.ModelConfig):
        """Builds the backbone with ``training=False`` as for pretrained weights (``pretrained``)."""

        @property
        def pretrained(self) -> bool:
            return True

    return FrozenBatchNorm


def train_and_score(variant, seed, args, patterns, transform_output, memory, cal, evaluation, frequencies):
    import tensorflow as tf
    import tf_keras as keras

    from trainer import canvas, data, model as model_lib, thresholds

    order, buffer, cycle, augment, feed, batch_norm = variant
    keras.backend.clear_session()
    tf.keras.utils.set_random_seed(seed)
    if feed == "in_memory":
        x, y = memory
        dataset = (
            tf.data.Dataset.from_tensor_slices((x, y))
            .shuffle(len(x), seed=seed)
            .repeat()
            .batch(args.batch_size, drop_remainder=True)
            .prefetch(tf.data.AUTOTUNE)
        )
    else:
        dataset = data.input_fn(
            patterns[order],
            transform_output,
            args.batch_size,
            training=True,
            shuffle_buffer=buffer,
            cycle_length=cycle,
            seed=seed,
        )
    distance = batch_label_distance(dataset, frequencies)
    config = model_lib.ModelConfig(
        args.num_labels,
        args.image_size,
        "none",
        dropout=0.2,
        fine_tune_learning_rate=args.learning_rate,
        fine_tune_from="",
        batch_norm_momentum=0.9,
    )
    if batch_norm == "frozen":
        config = _frozen_batch_norm_config()(**dataclasses.asdict(config))
    model = model_lib.build_model(config)
    # The Trainer's input gives canvases: the same weights behind the layer that crops and resizes them.
    fitted = (
        None
        if feed == "in_memory"
        else canvas.training_model(model, args.image_size, canvas.canvas_side(args.image_size), augment, seed)
    )
    model_lib.compile_for_fine_tuning(model, config, fitted)
    start = time.monotonic()
    (fitted or model).fit(dataset, steps_per_epoch=args.steps, epochs=1, verbose=0)
    seconds = time.monotonic() - start
    p_cal = model.predict(cal[0], batch_size=64, verbose=0)
    p_eval = model.predict(evaluation[0], batch_size=64, verbose=0)
    tuned, _ = thresholds.tune_thresholds(p_cal, cal[1], min_positives=3)
    return {
        "micro_f1_at_0.5": thresholds.f1_at(p_eval, evaluation[1], np.full(args.num_labels, 0.5)),
        "micro_f1_tuned_on_calibration": thresholds.f1_at(p_eval, evaluation[1], tuned),
        "batch_label_distance": distance,
        "train_seconds": seconds,
    }


def main(argv=None):
    import pipeline_benchmark

    from imat_common.features import load_label_map

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", required=True, help="the fashion-products-2k folder")
    parser.add_argument("--work", default="/tmp/imat-ablation")
    parser.add_argument("--image_size", type=int, default=75)
    parser.add_argument("--steps", type=int, default=600)
    parser.add_argument("--batch_size", type=int, default=32)
    parser.add_argument("--learning_rate", type=float, default=1e-3)
    parser.add_argument("--shards", type=int, default=8, help="train shards per order (a catalogue has many)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--variant", action="append", choices=sorted(VARIANTS), help="only these; repeat")
    parser.add_argument("--all", action="store_true", help="every variant, not only the core ones")
    args = parser.parse_args(argv)
    os.makedirs(args.work, exist_ok=True)
    label_map = pipeline_benchmark.prepare(os.path.abspath(args.dataset), args.work)
    args.num_labels = load_label_map(label_map).num_labels
    data_root = os.path.join(args.work, "data")
    records, ids, labels = read_split(data_root, "train")
    patterns = write_orders(records, ids, labels, os.path.join(args.work, "orders"), args.shards)
    transform_output = build_transform(
        os.path.join(args.work, "transform"), args.num_labels, args.image_size, records[0]
    )
    memory = decoded(patterns["catalogue"], transform_output)
    frequencies = memory[1].sum(axis=0)
    # Validation split: half calibrates the thresholds, the other half is scored (by a hash of the id).
    _, val_ids, _ = read_split(data_root, "validation")
    val = decoded(os.path.join(data_root, "validation", "*.tfrecord.gz"), transform_output)
    is_cal = np.array([int(hash_key(i, b"calibration"), 16) % 2 == 0 for i in val_ids])
    cal, evaluation = (val[0][is_cal], val[1][is_cal]), (val[0][~is_cal], val[1][~is_cal])
    print(
        f"train {len(records)} images in {args.shards} shards per order; calibration {int(is_cal.sum())}, "
        f"eval {int((~is_cal).sum())} images; {args.steps} steps of {args.batch_size}",
        flush=True,
    )
    names = args.variant or (list(VARIANTS) if args.all else list(CORE))
    runs = {name: [] for name in names}
    # Seeds outermost: every variant has a first result before any gets a second.
    for seed in args.seeds:
        for name in names:
            runs[name].append(
                train_and_score(
                    VARIANTS[name], seed, args, patterns, transform_output, memory, cal, evaluation, frequencies
                )
            )
            print(f"seed {seed}, {name}: {json.dumps(runs[name][-1])}", flush=True)
    results = {}
    for name, done in runs.items():
        results[name] = {key: float(np.mean([r[key] for r in done])) for key in done[0]}
        results[name]["per_seed_at_0.5"] = [round(r["micro_f1_at_0.5"], 4) for r in done]
    print(
        "\n| input (mean of seeds " + ", ".join(map(str, args.seeds)) + ") | batch label distance "
        "| micro-F1 at 0.5 | tuned on calibration |\n|---|---|---|---|"
    )
    for name, r in results.items():
        label = name + (" (the default)" if is_default(VARIANTS[name]) else "")
        print(
            f"| {label} | {r['batch_label_distance']:.3f} | {r['micro_f1_at_0.5']:.3f} "
            f"| {r['micro_f1_tuned_on_calibration']:.3f} |"
        )
    with open(os.path.join(args.work, f"ablation-{args.steps}.json"), "w") as f:
        json.dump({"args": {k: v for k, v in vars(args).items()}, "results": results}, f, indent=1)


if __name__ == "__main__":
    main()
