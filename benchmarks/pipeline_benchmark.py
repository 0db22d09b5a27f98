"""The TFX pipeline on real catalogue photos: quality against a plain Keras script, training speed.

  .venv/bin/python benchmarks/pipeline_benchmark.py --dataset PATH/TO/fashion-products-2k \
      --work /tmp/imat-bench --train_steps 600 --seeds 0 1 2 --skip speed

1. Data: serves the dataset folder on loopback, writes the iMaterialist JSON with the dataset's own
   ``to_imaterialist.py`` and downloads train, validation and test with the download job.
2. Quality, per seed: the TFX pipeline (local runner, InceptionV3 from scratch: no pretrained weights
   offline) and a plain Keras script (the seeds' approach: images decoded into memory, the same
   network, batch, learning rate and number of steps, one phase, full shuffle, no augmentation).
   Both models are scored by the same code on the same images with the same decision rules
   (``trainer/rules.py``: per-label thresholds, one global threshold, 0.5, and the rule chosen by
   k-fold micro-F1 on calibration), fitted on the pipeline's calibration split and scored on its
   eval split (the validation folder cut by a hash of the image id), beside the trivial baseline.
   The pipeline's model is read through its serving signature (raw JPEG bytes in, its Transform
   graph inside); the plain script decodes as plain scripts do. Means over seeds, and a paired
   bootstrap interval (over eval images) of pipeline minus plain. The pipeline's own report
   (``thresholds.json``) and ``imat submission`` on the test split (``test_labels.json``) are
   recorded per seed.
3. Speed: training images/s of the same network fed by the Trainer's input function (TFRecords ->
   Transform graph) and by in-memory tensors, in float32 and mixed bfloat16, alternating, after warm-up.
"""

import argparse
import json
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import imat_common.keras2  # noqa: F401  (chooses Keras 2 before TensorFlow loads)

import numpy as np

from imat_common.features import load_label_map
from imat_common.workdir import metadata_path
from imat_common.serving import read_thresholds


def prepare(dataset_dir: str, work: str) -> str:
    """Writes the JSON and downloads the images into ``work/data``; returns the label map path."""
    from components.download import job
    from cli import demo_data

    source = os.path.join(work, "source")
    if os.path.exists(os.path.join(work, "data", "summary.json")):
        return os.path.join(source, "label_map.csv")
    with demo_data.serve_folder(dataset_dir) as base_url:
        subprocess.run(
            [sys.executable, os.path.join(dataset_dir, "to_imaterialist.py"), "--base-url", base_url, "--out", source],
            check=True,
        )
        summary = job.run(
            [f"--input={split}={os.path.join(source, split + '.json')}" for split in ("train", "validation", "test")]
            + [
                f"--output={os.path.join(work, 'data')}",
                f"--label_map={os.path.join(source, 'label_map.csv')}",
                "--images_per_shard=500",
                "--allow_private_networks",
            ]
        )
    print(job.format_summary(summary))
    return os.path.join(source, "label_map.csv")


def trained_model(work: str):
    """The serving export of the newest model a ``--work`` folder's pipeline trained, or None.

    The other benchmarks that reuse a finished run (evaluator, audit, scoring cost) read it here.
    """
    from cli import runs
    from imat_common.workdir import Workdir

    metadata = Workdir(work).metadata
    uri = runs.latest_artifact_uri(metadata, "Model") if os.path.exists(metadata) else None
    return os.path.join(uri, "Format-Serving") if uri else None


def pipeline_config(args, label_map: str, seed: int = 0):
    from pipeline.config import local_config

    return local_config(
        args.work,
        load_label_map(label_map).num_labels,
        pipeline_name="imat-bench",
        label_map=label_map,
        image_size=args.image_size,
        weights="none",
        train_steps=args.train_steps,
        batch_size=args.batch_size,
        fine_tune_from="",
        head_steps_fraction=0.0,
        fine_tune_learning_rate=args.learning_rate,
        dropout=0.2,
        batch_norm_momentum=0.9,
        min_positives=3,
        micro_f1_lower_bound=0.0,
        seed=seed,
    )


def run_pipeline(config, source: str) -> dict:
    """Runs the pipeline, then scores its model on the test split with ``imat submission``."""
    from pipeline import local_runner
    from cli import runs, submission

    start = time.monotonic()
    local_runner.run(config)
    seconds = time.monotonic() - start
    metadata = metadata_path(config.locations.pipeline_root)
    model_dir = os.path.join(runs.latest_artifact_uri(metadata, "Model"), "Format-Serving")
    report = read_thresholds(model_dir)
    test = submission.main(
        [
            "--model",
            model_dir,
            "--examples",
            os.path.join(config.locations.data_root, "test", "*.tfrecord.gz"),
            "--output",
            os.path.join(os.path.dirname(config.locations.pipeline_root), "submission.csv"),
            "--labels",
            os.path.join(source, "test_labels.json"),
        ]
    )
    return {
        "seconds": seconds,
        "model_dir": model_dir,
        "own_report": {
            "served_rule": report["served_rule"],
            "micro_f1": report["micro_f1"],
            "global_threshold": report["global_threshold"],
            "labels_with_own_threshold": sum(report["tuned"]),
            "calibration_examples": report["calibration_examples"],
            "eval_examples": report["eval_examples"],
        },
        "test": {"micro_f1": test["micro_f1"], "images": test["images"]},
        "components": {e.component: round(e.seconds, 1) for e in runs.last_run(metadata)},
    }


def is_calibration(image_ids, calibration_percent: int) -> np.ndarray:
    """The pipeline's calibration split among the validation images (the rest is its eval split)."""
    from components.calibration_split import in_calibration

    return np.array([in_calibration(i, calibration_percent) for i in image_ids])


def pipeline_probabilities(model_dir: str, jpegs) -> np.ndarray:
    """The exported model's probabilities through its raw-bytes serving signature."""
    import tensorflow as tf

    serve = tf.saved_model.load(model_dir).signatures["predict_images"]
    return np.concatenate(
        [serve(images=tf.constant(jpegs[i : i + 64]))["probabilities"].numpy() for i in range(0, len(jpegs), 64)]
    )


def scores(probabilities: np.ndarray, labels: np.ndarray, calibration: np.ndarray, config, baseline) -> dict:
    """Every decision rule fitted on calibration and scored on eval, as the Trainer does it."""
    from trainer import rules

    report = rules.decision_report(
        (probabilities[calibration], labels[calibration]),
        (probabilities[~calibration], labels[~calibration]),
        config.trainer.min_positives,
        config.trainer.calibration_folds,
        baseline,
    )
    result = {rule: report["micro_f1"][rule]["eval"] for rule in (*rules.RULES, rules.BASELINE)}
    result["served_rule"] = report["served_rule"]
    result["served"] = report["micro_f1"][report["served_rule"]]["eval"]
    result["thresholds"] = {
        rule: np.asarray(t, np.float32)
        for rule, t in (
            (rules.PER_LABEL, report["per_label_thresholds"]),
            (rules.FIXED, [0.5] * labels.shape[1]),
            (rules.GLOBAL, [report["global_threshold"]] * labels.shape[1]),
        )
    }
    return result


def bootstrap_difference(a, b, labels, thresholds_a, thresholds_b, reps: int = 1000, seed: int = 0):
    """95 % interval of micro-F1(a) - micro-F1(b) over eval images resampled with replacement.

    ``a`` and ``b`` are lists (one entry per seed) of eval-half probabilities; each resample
    scores the seeds' mean micro-F1 of each side on the same images.
    """
    rng = np.random.default_rng(seed)
    n = len(labels)
    differences = []
    for _ in range(reps):
        idx = rng.integers(0, n, n)

        def f1(probs, cut):
            return np.mean([_micro_f1(p[idx] >= t, labels[idx]) for p, t in zip(probs, cut)])

        differences.append(f1(a, thresholds_a) - f1(b, thresholds_b))
    return [float(np.percentile(differences, 2.5)), float(np.percentile(differences, 97.5))]


def _micro_f1(decisions: np.ndarray, labels: np.ndarray) -> float:
    truth = labels > 0.5
    tp, fp, fn = np.sum(decisions & truth), np.sum(decisions & ~truth), np.sum(~decisions & truth)
    return float(2 * tp / (2 * tp + fp + fn)) if tp + fp + fn else 0.0


def load_split(data_root: str, split: str, image_size: int, num_labels: int):
    """Decodes a split into memory as the plain script would.

    Returns:
      (images in [-1, 1], multi-hot labels, image ids, the stored JPEG bytes), in file order.
    """
    import tensorflow as tf

    from trainer import data
    from imat_common import features

    files = data.list_files(os.path.join(data_root, split, "*.tfrecord.gz"))
    spec = {
        features.IMAGE_KEY: tf.io.FixedLenFeature([], tf.string),
        features.IMAGE_ID_KEY: tf.io.FixedLenFeature([], tf.string),
        features.LABELS_KEY: tf.io.VarLenFeature(tf.int64),
    }
    images, labels, ids, jpegs = [], [], [], []
    for record in tf.data.TFRecordDataset(files, compression_type="GZIP"):
        example = tf.io.parse_single_example(record, spec)
        image = tf.image.resize(tf.io.decode_jpeg(example[features.IMAGE_KEY], channels=3), [image_size] * 2)
        images.append((image / 127.5 - 1.0).numpy())
        hot = np.zeros(num_labels, np.float32)
        hot[example[features.LABELS_KEY].values.numpy() - 1] = 1
        labels.append(hot)
        ids.append(example[features.IMAGE_ID_KEY].numpy())
        jpegs.append(example[features.IMAGE_KEY].numpy())
    return np.stack(images), np.stack(labels), ids, jpegs


def plain_keras(config, steps: int, learning_rate: float, validation_images: np.ndarray) -> dict:
    """The same network trained without TFX on in-memory images; its validation probabilities."""
    import tensorflow as tf
    import tf_keras as keras

    from trainer import model as model_lib

    tf.keras.utils.set_random_seed(config.trainer.seed)
    x, y, _, _ = load_split(
        config.locations.data_root, config.data.train_split, config.trainer.image_size, config.trainer.num_labels
    )
    model = model_lib.build_model(
        model_lib.ModelConfig(
            config.trainer.num_labels,
            config.trainer.image_size,
            "none",
            config.trainer.dropout,
            batch_norm_momentum=config.trainer.batch_norm_momentum,
        )
    )
    model_lib.backbone_of(model).trainable = True
    model.compile(keras.optimizers.Adam(learning_rate), loss="binary_crossentropy")
    train = tf.data.Dataset.from_tensor_slices((x, y)).shuffle(len(x)).repeat().batch(config.trainer.batch_size)
    start = time.monotonic()
    model.fit(train, steps_per_epoch=steps, epochs=1, verbose=2)
    seconds = time.monotonic() - start
    return {"seconds": seconds, "probabilities": model.predict(validation_images, batch_size=64, verbose=0)}


class _StepTimer:
    def __init__(self, warmup: int):
        import tf_keras as keras

        timer = self

        class Callback(keras.callbacks.Callback):
            def on_train_batch_begin(self, batch, logs=None):
                if batch == warmup:
                    timer.start = time.monotonic()

            def on_train_end(self, logs=None):
                timer.end = time.monotonic()

        self.callback = Callback()


def training_speed(config, transform_uri: str, steps: int, warmup: int, reps: int) -> dict:
    """Images/s of training steps: Trainer input function vs in-memory tensors, float32 vs bfloat16."""
    import tensorflow as tf
    import tensorflow_transform as tft
    import tf_keras as keras

    from trainer import canvas, data, model as model_lib

    transform_output = tft.TFTransformOutput(transform_uri)
    x, y, _, _ = load_split(
        config.locations.data_root, config.data.train_split, config.trainer.image_size, config.trainer.num_labels
    )
    in_memory = (
        tf.data.Dataset.from_tensor_slices((x, y))
        .shuffle(len(x))
        .repeat()
        .batch(config.trainer.batch_size, drop_remainder=True)
        .prefetch(tf.data.AUTOTUNE)
    )
    pattern = os.path.join(config.locations.data_root, config.data.train_split, "*.tfrecord.gz")
    results = {}
    for rep in range(reps):
        for precision in ("float32", "mixed_bfloat16"):
            for feed in ("input_fn", "in_memory"):
                keras.backend.clear_session()
                keras.mixed_precision.set_global_policy(precision)
                dataset = (
                    data.input_fn(pattern, transform_output, config.trainer.batch_size, training=True)
                    if feed == "input_fn"
                    else in_memory
                )
                model_config = model_lib.ModelConfig(
                    config.trainer.num_labels,
                    config.trainer.image_size,
                    "none",
                    fine_tune_from="",
                    batch_norm_momentum=0.9,
                )
                model = model_lib.build_model(model_config)
                # The Trainer's input gives canvases: the same weights behind the layer that resizes them.
                fitted = (
                    canvas.training_model(
                        model, model_config.image_size, canvas.canvas_side(model_config.image_size), False, 0
                    )
                    if feed == "input_fn"
                    else None
                )
                model_lib.compile_for_fine_tuning(model, model_config, fitted)
                timer = _StepTimer(warmup)
                (fitted or model).fit(
                    dataset, steps_per_epoch=warmup + steps, epochs=1, verbose=0, callbacks=[timer.callback]
                )
                rate = steps * config.trainer.batch_size / (timer.end - timer.start)
                results.setdefault(f"{feed} {precision}", []).append(rate)
                print(f"rep {rep}: {feed:9s} {precision:14s} {rate:6.1f} images/s", flush=True)
    keras.mixed_precision.set_global_policy("float32")
    return {k: float(np.median(v)) for k, v in results.items()}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", required=True, help="the fashion-products-2k folder")
    parser.add_argument("--work", default="/tmp/imat-bench")
    parser.add_argument("--image_size", type=int, default=75, help="the photos are 60x80; 75 is InceptionV3's minimum")
    parser.add_argument("--train_steps", type=int, default=600)
    parser.add_argument("--batch_size", type=int, default=32)
    parser.add_argument("--learning_rate", type=float, default=1e-3)
    parser.add_argument("--speed_steps", type=int, default=30)
    parser.add_argument("--speed_reps", type=int, default=2)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0], help="one pipeline and one plain run per seed")
    parser.add_argument("--skip", action="append", default=[], choices=["quality", "plain", "speed"])
    args = parser.parse_args(argv)
    os.makedirs(args.work, exist_ok=True)
    label_map = prepare(os.path.abspath(args.dataset), args.work)
    config = pipeline_config(args, label_map)
    results = {
        "config": {
            "image_size": args.image_size,
            "train_steps": args.train_steps,
            "seeds": args.seeds,
            "batch_size": args.batch_size,
            "num_labels": config.trainer.num_labels,
        }
    }
    if "quality" not in args.skip:
        results["quality"] = quality(args, label_map)
    if "speed" not in args.skip:
        from cli import runs

        if "quality" in args.skip:
            run_pipeline(config, os.path.dirname(label_map))
        transform = runs.latest_artifact_uri(metadata_path(config.locations.pipeline_root), "TransformGraph")
        results["training_images_per_second"] = training_speed(config, transform, args.speed_steps, 5, args.speed_reps)
    print(json.dumps(results, indent=1))
    with open(os.path.join(args.work, "results.json"), "w") as f:
        json.dump(results, f, indent=1)


def held_out(config, label_map: str):
    """The validation split as every quality benchmark scores it, and the trivial baseline.

    Returns:
      (images in [-1, 1], multi-hot labels, the stored JPEG bytes, the calibration mask (its
      complement is eval), the baseline's label ids from the train split's frequencies).
    """
    from trainer import trivial_baseline

    root, size, width = config.locations.data_root, config.trainer.image_size, config.trainer.num_labels
    images, labels, ids, jpegs = load_split(root, config.data.eval_split, size, width)
    calibration = is_calibration(ids, config.data.calibration_percent)
    train_labels = load_split(root, config.data.train_split, size, width)[1]
    frequencies = {i + 1: int(c) for i, c in enumerate(train_labels.sum(axis=0))}
    baseline = trivial_baseline.most_frequent_per_task(frequencies, load_label_map(label_map))
    print(f"validation: {int(calibration.sum())} calibration, {int((~calibration).sum())} eval images", flush=True)
    return images, labels, jpegs, calibration, baseline


def quality(args, label_map: str) -> dict:
    """Per seed, the pipeline and the plain script scored alike; means, per-seed values, intervals."""
    from trainer import rules

    config = pipeline_config(args, label_map)
    images, labels, jpegs, calibration, baseline = held_out(config, label_map)
    evaluation = ~calibration
    sides = ("pipeline",) if "plain" in args.skip else ("pipeline", "plain")
    per_seed = {side: [] for side in sides}
    eval_probabilities = {side: [] for side in sides}
    fitted = {side: [] for side in sides}
    for seed in args.seeds:
        seeded = pipeline_config(args, label_map, seed)
        run = run_pipeline(seeded, os.path.dirname(label_map))
        probabilities = {"pipeline": pipeline_probabilities(run["model_dir"], jpegs)}
        if "plain" in sides:
            probabilities["plain"] = plain_keras(seeded, args.train_steps, args.learning_rate, images)["probabilities"]
        for side, p in probabilities.items():
            result = scores(p, labels, calibration, config, baseline)
            fitted[side].append(result.pop("thresholds"))
            per_seed[side].append({"seed": seed, **result})
            eval_probabilities[side].append(p[evaluation])
        per_seed["pipeline"][-1].update(
            seconds=round(run["seconds"]), components=run["components"], own_report=run["own_report"], test=run["test"]
        )
        print(json.dumps({side: r[-1] for side, r in per_seed.items()}, indent=1), flush=True)
    columns = (rules.FIXED, rules.GLOBAL, rules.PER_LABEL, "served")
    means = {
        side: {c: float(np.mean([r[c] for r in per_seed[side]])) for c in (*columns, rules.BASELINE)} for side in sides
    }
    intervals = (
        {}
        if len(sides) == 1
        else {
            rule: bootstrap_difference(
                eval_probabilities["pipeline"],
                eval_probabilities["plain"],
                labels[evaluation],
                [f[rule] for f in fitted["pipeline"]],
                [f[rule] for f in fitted["plain"]],
            )
            for rule in (rules.FIXED, rules.GLOBAL, rules.PER_LABEL)
        }
    )
    print(
        "\n| eval micro-F1, mean of seeds " + ", ".join(map(str, args.seeds)) + " | 0.5 | global threshold "
        "| per-label thresholds | rule chosen on calibration |\n|---|---|---|---|---|"
    )
    for side in sides:
        print(f"| {side} | " + " | ".join(f"{means[side][c]:.3f}" for c in columns) + " |")
    if intervals:
        print(
            "| pipeline minus plain (95 % interval) | "
            + " | ".join(
                f"{means['pipeline'][r] - means['plain'][r]:+.3f} ({lo:+.3f} to {hi:+.3f})"
                for r, (lo, hi) in intervals.items()
            )
            + " | |"
        )
    print(f"| trivial baseline | {means['pipeline'][rules.BASELINE]:.3f} | | | |", flush=True)
    return {
        "calibration_images": int(calibration.sum()),
        "eval_images": int(evaluation.sum()),
        "means": means,
        "difference_interval_95": intervals,
        "per_seed": per_seed,
    }


if __name__ == "__main__":
    main()
