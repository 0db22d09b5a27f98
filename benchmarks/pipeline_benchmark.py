"""The TFX pipeline on real catalogue photos: quality against a plain Keras script, training speed.

  .venv/bin/python benchmarks/pipeline_benchmark.py --dataset PATH/TO/fashion-products-2k \
      --work /tmp/imat-bench --train_steps 600 --seeds 0 1 2 --skip speed

1. Data: serves the dataset folder on loopback, writes the iMaterialist JSON with the dataset's own
   ``to_imaterialist.py`` and downloads it with the download job.
2. Quality, per seed: the TFX pipeline (local runner, InceptionV3 from scratch: no pretrained weights
   offline) and a plain Keras script (the seeds' approach: images decoded into memory, the same
   network, batch, learning rate and number of steps, one phase, full shuffle, no augmentation).
   Both models are scored by the same code on the same images with the same decision rules: the
   validation split is cut by a hash of the image id into a calibration half, where thresholds are
   tuned, and an eval half, which is scored (micro-F1 at 0.5 and with the tuned thresholds). The
   pipeline's model is read through its serving signature (raw JPEG bytes in, its Transform graph
   inside); the plain script decodes as plain scripts do. Means over seeds, and a paired bootstrap
   interval (over eval images) of pipeline minus plain.
3. Speed: training images/s of the same network fed by the Trainer's input function (TFRecords ->
   Transform graph) and by in-memory tensors, in float32 and mixed bfloat16, alternating, after warm-up.
"""
import argparse
import hashlib
import json
import os
import subprocess
import sys
import time

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402


def prepare(dataset_dir: str, work: str) -> str:
    """Writes the JSON and downloads the images into ``work/data``; returns the label map path."""
    from components.download import job
    from pipeline import demo_data

    source = os.path.join(work, "source")
    if os.path.exists(os.path.join(work, "data", "summary.json")):
        return os.path.join(source, "label_map.csv")
    with demo_data.serve_folder(dataset_dir) as base_url:
        subprocess.run([sys.executable, os.path.join(dataset_dir, "to_imaterialist.py"), "--base-url", base_url,
                        "--out", source], check=True)
        summary = job.run([f"--input={split}={os.path.join(source, split + '.json')}"
                           for split in ("train", "validation")]
                          + [f"--output={os.path.join(work, 'data')}",
                             f"--label_map={os.path.join(source, 'label_map.csv')}", "--images_per_shard=500",
                             "--allow_private_networks"])
    print(job.format_summary(summary))
    return os.path.join(source, "label_map.csv")


def pipeline_config(args, label_map: str, seed: int = 0):
    from pipeline.config import PipelineConfig
    from trainer.features import load_label_map

    return PipelineConfig(
        pipeline_name="imat-bench", pipeline_root=os.path.join(args.work, "pipeline"),
        data_root=os.path.join(args.work, "data"), serving_dir=os.path.join(args.work, "serving"),
        label_map=label_map, num_labels=load_label_map(label_map).num_labels, image_size=args.image_size,
        weights="none", train_steps=args.train_steps, batch_size=args.batch_size, fine_tune_from="",
        head_steps_fraction=0.0, fine_tune_learning_rate=args.learning_rate, dropout=0.2,
        batch_norm_momentum=0.9, min_positives=3, micro_f1_lower_bound=0.0, seed=seed)


def run_pipeline(config) -> dict:
    """Runs the pipeline; its model's directory, time per component and its own eval report."""
    from pipeline import local_runner, runs

    start = time.monotonic()
    local_runner.run(config)
    metadata = os.path.join(config.pipeline_root, "metadata.sqlite")
    model_dir = os.path.join(runs.latest_artifact_uri(metadata, "Model"), "Format-Serving")
    return {"seconds": time.monotonic() - start, "model_dir": model_dir,
            "own_report": runs.training_report(model_dir),
            "components": {e.component: round(e.seconds, 1) for e in runs.last_run(metadata)}}


def is_calibration(image_ids) -> np.ndarray:
    """Half of the validation split, by a hash of the image id: where thresholds are tuned."""
    return np.array([int(hashlib.sha256(b"calibration" + i).hexdigest(), 16) % 2 == 0 for i in image_ids])


def pipeline_probabilities(model_dir: str, jpegs) -> np.ndarray:
    """The exported model's probabilities through its raw-bytes serving signature."""
    import tensorflow as tf

    serve = tf.saved_model.load(model_dir).signatures["predict_images"]
    return np.concatenate([serve(images=tf.constant(jpegs[i:i + 64]))["probabilities"].numpy()
                           for i in range(0, len(jpegs), 64)])


def scores(probabilities: np.ndarray, labels: np.ndarray, calibration: np.ndarray, min_positives: int) -> dict:
    """Micro-F1 on the eval half at 0.5 and with thresholds tuned on the calibration half."""
    from trainer import thresholds

    tuned, _ = thresholds.tune_thresholds(probabilities[calibration], labels[calibration], min_positives)
    evaluation = ~calibration
    return {"micro_f1_at_0.5": thresholds.f1_at(probabilities[evaluation], labels[evaluation], 0.5),
            "micro_f1_tuned_on_calibration": thresholds.f1_at(probabilities[evaluation], labels[evaluation], tuned)}


def bootstrap_difference(a, b, labels, thresholds_a, thresholds_b, reps: int = 2000, seed: int = 0):
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

    from trainer import data, features

    files = data.list_files(os.path.join(data_root, split, "*.tfrecord.gz"))
    spec = {features.IMAGE_KEY: tf.io.FixedLenFeature([], tf.string),
            features.IMAGE_ID_KEY: tf.io.FixedLenFeature([], tf.string),
            features.LABELS_KEY: tf.io.VarLenFeature(tf.int64)}
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

    tf.keras.utils.set_random_seed(config.seed)
    x, y, _, _ = load_split(config.data_root, config.train_split, config.image_size, config.num_labels)
    model = model_lib.build_model(model_lib.ModelConfig(config.num_labels, config.image_size, "none", config.dropout,
                                                        batch_norm_momentum=config.batch_norm_momentum))
    model_lib.backbone_of(model).trainable = True
    model.compile(keras.optimizers.Adam(learning_rate), loss="binary_crossentropy")
    train = tf.data.Dataset.from_tensor_slices((x, y)).shuffle(len(x)).repeat().batch(config.batch_size)
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

    from trainer import data, model as model_lib

    transform_output = tft.TFTransformOutput(transform_uri)
    x, y, _, _ = load_split(config.data_root, config.train_split, config.image_size, config.num_labels)
    in_memory = tf.data.Dataset.from_tensor_slices((x, y)).shuffle(len(x)).repeat().batch(
        config.batch_size, drop_remainder=True).prefetch(tf.data.AUTOTUNE)
    pattern = os.path.join(config.data_root, config.train_split, "*.tfrecord.gz")
    results = {}
    for rep in range(reps):
        for precision in ("float32", "mixed_bfloat16"):
            for feed in ("input_fn", "in_memory"):
                keras.backend.clear_session()
                keras.mixed_precision.set_global_policy(precision)
                dataset = data.input_fn(pattern, transform_output, config.batch_size, training=True) \
                    if feed == "input_fn" else in_memory
                model_config = model_lib.ModelConfig(config.num_labels, config.image_size, "none",
                                                     fine_tune_from="", batch_norm_momentum=0.9)
                model = model_lib.build_model(model_config)
                model_lib.compile_for_fine_tuning(model, model_config)
                timer = _StepTimer(warmup)
                model.fit(dataset, steps_per_epoch=warmup + steps, epochs=1, verbose=0, callbacks=[timer.callback])
                rate = steps * config.batch_size / (timer.end - timer.start)
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
    parser.add_argument("--skip", action="append", default=[], choices=["quality", "speed"])
    args = parser.parse_args(argv)
    os.makedirs(args.work, exist_ok=True)
    label_map = prepare(os.path.abspath(args.dataset), args.work)
    config = pipeline_config(args, label_map)
    results = {"config": {"image_size": args.image_size, "train_steps": args.train_steps, "seeds": args.seeds,
                          "batch_size": args.batch_size, "num_labels": config.num_labels}}
    if "quality" not in args.skip:
        results["quality"] = quality(args, label_map)
    if "speed" not in args.skip:
        from pipeline import runs

        if "quality" in args.skip:
            run_pipeline(config)
        transform = runs.latest_artifact_uri(os.path.join(config.pipeline_root, "metadata.sqlite"), "TransformGraph")
        results["training_images_per_second"] = training_speed(config, transform, args.speed_steps, 5,
                                                               args.speed_reps)
    print(json.dumps(results, indent=1))
    with open(os.path.join(args.work, "results.json"), "w") as f:
        json.dump(results, f, indent=1)


def quality(args, label_map: str) -> dict:
    """Per seed, the pipeline and the plain script scored alike; means, per-seed values, intervals."""
    from trainer import thresholds

    config = pipeline_config(args, label_map)
    images, labels, ids, jpegs = load_split(config.data_root, config.eval_split, config.image_size,
                                            config.num_labels)
    calibration = is_calibration(ids)
    evaluation = ~calibration
    print(f"validation: {int(calibration.sum())} calibration, {int(evaluation.sum())} eval images", flush=True)
    per_seed = {"pipeline": [], "plain": []}
    eval_probabilities = {"pipeline": [], "plain": []}
    tuned = {"pipeline": [], "plain": []}
    for seed in args.seeds:
        seeded = pipeline_config(args, label_map, seed)
        run = run_pipeline(seeded)
        probabilities = {"pipeline": pipeline_probabilities(run["model_dir"], jpegs),
                         "plain": plain_keras(seeded, args.train_steps, args.learning_rate, images)["probabilities"]}
        for side, p in probabilities.items():
            per_seed[side].append({"seed": seed, **scores(p, labels, calibration, config.min_positives)})
            eval_probabilities[side].append(p[evaluation])
            tuned[side].append(thresholds.tune_thresholds(p[calibration], labels[calibration],
                                                          config.min_positives)[0])
        per_seed["pipeline"][-1].update(seconds=round(run["seconds"]), components=run["components"])
        print(json.dumps({side: runs[-1] for side, runs in per_seed.items()}, indent=1), flush=True)
    means = {side: {key: float(np.mean([r[key] for r in runs])) for key in ("micro_f1_at_0.5",
                                                                            "micro_f1_tuned_on_calibration")}
             for side, runs in per_seed.items()}
    y = labels[evaluation]
    half = [np.full(config.num_labels, 0.5, np.float32)] * len(args.seeds)
    intervals = {
        "micro_f1_at_0.5": bootstrap_difference(eval_probabilities["pipeline"], eval_probabilities["plain"], y,
                                                half, half),
        "micro_f1_tuned_on_calibration": bootstrap_difference(eval_probabilities["pipeline"],
                                                              eval_probabilities["plain"], y, tuned["pipeline"],
                                                              tuned["plain"]),
    }
    print("\n| model (mean of seeds " + ", ".join(map(str, args.seeds)) + ") | micro-F1 at 0.5 "
          "| tuned on calibration |\n|---|---|---|")
    for side in ("pipeline", "plain"):
        print(f"| {side} | {means[side]['micro_f1_at_0.5']:.3f} | {means[side]['micro_f1_tuned_on_calibration']:.3f} |")
    print("| pipeline minus plain, 95 % interval | " + " | ".join(
        f"{means['pipeline'][k] - means['plain'][k]:+.3f} ({lo:+.3f} to {hi:+.3f})"
        for k, (lo, hi) in intervals.items()) + " |", flush=True)
    return {"calibration_images": int(calibration.sum()), "eval_images": int(evaluation.sum()), "means": means,
            "difference_interval_95": intervals, "per_seed": per_seed}


if __name__ == "__main__":
    main()
