"""The TFX pipeline on real catalogue photos: quality against a plain Keras script, training speed.

  .venv/bin/python benchmarks/pipeline_benchmark.py --dataset PATH/TO/fashion-products-2k \
      --work /tmp/imat-bench --train_steps 600

1. Data: serves the dataset folder on loopback, writes the iMaterialist JSON with the dataset's own
   ``to_imaterialist.py`` and downloads train, validation and test with the download job.
2. Quality: the TFX pipeline (local runner, InceptionV3 from scratch: no pretrained weights offline)
   reports micro-F1 on the eval split (the half of validation never used for tuning) for the three
   decision rules, which one served, and the trivial baseline; then ``imat submission`` scores the
   test split against ``test_labels.json``. A plain Keras script (the seeds' approach: images decoded
   into memory, the same network, batch and number of steps, one phase, no augmentation, a 0.5
   threshold) is scored on the same eval images (its tuned thresholds, for reference, on the same
   calibration images).
3. Speed: training images/s of the same network fed by the Trainer's input function (TFRecords ->
   Transform graph -> augmentation) and by in-memory tensors, in float32 and mixed bfloat16,
   alternating, after warm-up.
"""
import argparse
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
                           for split in ("train", "validation", "test")]
                          + [f"--output={os.path.join(work, 'data')}",
                             f"--label_map={os.path.join(source, 'label_map.csv')}", "--images_per_shard=500"])
    print(job.format_summary(summary))
    return os.path.join(source, "label_map.csv")


def pipeline_config(args, label_map: str):
    from pipeline.config import PipelineConfig
    from trainer.features import load_label_map

    return PipelineConfig(
        pipeline_name="imat-bench", pipeline_root=os.path.join(args.work, "pipeline"),
        data_root=os.path.join(args.work, "data"), serving_dir=os.path.join(args.work, "serving"),
        label_map=label_map, num_labels=load_label_map(label_map).num_labels, image_size=args.image_size,
        weights="none", train_steps=args.train_steps, batch_size=args.batch_size, fine_tune_from="",
        head_steps_fraction=0.0, fine_tune_learning_rate=args.learning_rate, dropout=0.2,
        batch_norm_momentum=0.9, min_positives=3, micro_f1_lower_bound=0.0)


def run_pipeline(config, source: str) -> dict:
    from pipeline import local_runner, runs, submission

    start = time.monotonic()
    local_runner.run(config)
    seconds = time.monotonic() - start
    metadata = os.path.join(config.pipeline_root, "metadata.sqlite")
    model = os.path.join(runs.latest_artifact_uri(metadata, "Model"), "Format-Serving")
    report = runs.training_report(model)
    start = time.monotonic()
    test = submission.main(["--model", model, "--examples", os.path.join(config.data_root, "test", "*.tfrecord.gz"),
                            "--output", os.path.join(os.path.dirname(config.pipeline_root), "submission.csv"),
                            "--labels", os.path.join(source, "test_labels.json")])
    return {"seconds": seconds, "served_rule": report["served_rule"], "micro_f1": report["micro_f1"],
            "global_threshold": report["global_threshold"], "labels_with_own_threshold": sum(report["tuned"]),
            "calibration_examples": report["calibration_examples"], "eval_examples": report["eval_examples"],
            "test": {"micro_f1": test["micro_f1"], "images": test["images"], "seconds": time.monotonic() - start},
            "components": {e.component: round(e.seconds, 1) for e in runs.last_run(metadata)}}


def load_split(data_root: str, split: str, image_size: int, num_labels: int):
    """Decodes a split into memory as the plain script would: (images in [-1, 1], multi-hot, image ids)."""
    import tensorflow as tf

    from trainer import features

    files = tf.io.gfile.glob(os.path.join(data_root, split, "*.tfrecord.gz"))
    spec = {features.IMAGE_KEY: tf.io.FixedLenFeature([], tf.string),
            features.IMAGE_ID_KEY: tf.io.FixedLenFeature([], tf.string),
            features.LABELS_KEY: tf.io.VarLenFeature(tf.int64)}
    images, labels, ids = [], [], []
    for record in tf.data.TFRecordDataset(files, compression_type="GZIP"):
        example = tf.io.parse_single_example(record, spec)
        image = tf.image.resize(tf.io.decode_jpeg(example[features.IMAGE_KEY], channels=3), [image_size] * 2)
        images.append((image / 127.5 - 1.0).numpy())
        hot = np.zeros(num_labels, np.float32)
        hot[example[features.LABELS_KEY].values.numpy() - 1] = 1
        labels.append(hot)
        ids.append(example[features.IMAGE_ID_KEY].numpy())
    return np.stack(images), np.stack(labels), ids


def plain_keras(config, steps: int, learning_rate: float) -> dict:
    """The same network trained without TFX on in-memory images, scored on the pipeline's eval images at 0.5
    (and, for reference, with thresholds tuned on its calibration images)."""
    import tensorflow as tf
    import tf_keras as keras

    from components.calibration_split import in_calibration
    from trainer import model as model_lib, rules

    tf.keras.utils.set_random_seed(0)
    x, y, _ = load_split(config.data_root, config.train_split, config.image_size, config.num_labels)
    vx, vy, ids = load_split(config.data_root, config.eval_split, config.image_size, config.num_labels)
    calibration = np.array([in_calibration(i, config.calibration_percent) for i in ids])
    model = model_lib.build_model(model_lib.ModelConfig(config.num_labels, config.image_size, "none", config.dropout,
                                                        batch_norm_momentum=config.batch_norm_momentum))
    model_lib.backbone_of(model).trainable = True
    model.compile(keras.optimizers.Adam(learning_rate), loss="binary_crossentropy")
    train = tf.data.Dataset.from_tensor_slices((x, y)).shuffle(len(x)).repeat().batch(config.batch_size)
    start = time.monotonic()
    model.fit(train, steps_per_epoch=steps, epochs=1, verbose=2)
    seconds = time.monotonic() - start
    probabilities = model.predict(vx, batch_size=64, verbose=0)
    report = rules.decision_report((probabilities[calibration], vy[calibration]),
                                   (probabilities[~calibration], vy[~calibration]), config.min_positives,
                                   config.calibration_folds)
    return {"seconds": seconds, "micro_f1_at_0.5": report["micro_f1"][rules.FIXED]["eval"],
            "micro_f1_for_reference": {rule: report["micro_f1"][rule]["eval"] for rule in rules.RULES},
            "served_rule_for_reference": report["served_rule"], "eval_examples": report["eval_examples"]}


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
    x, y, _ = load_split(config.data_root, config.train_split, config.image_size, config.num_labels)
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
    parser.add_argument("--skip", action="append", default=[], choices=["quality", "plain", "speed"])
    args = parser.parse_args(argv)
    os.makedirs(args.work, exist_ok=True)
    label_map = prepare(os.path.abspath(args.dataset), args.work)
    config = pipeline_config(args, label_map)
    results = {"config": {"image_size": args.image_size, "train_steps": args.train_steps,
                          "batch_size": args.batch_size, "num_labels": config.num_labels}}
    if "quality" not in args.skip:
        results["pipeline"] = run_pipeline(config, os.path.dirname(label_map))
        print(json.dumps(results["pipeline"], indent=1), flush=True)
    if "plain" not in args.skip:
        results["plain_keras"] = plain_keras(config, args.train_steps, args.learning_rate)
        print(json.dumps(results["plain_keras"], indent=1), flush=True)
    if "speed" not in args.skip:
        from pipeline import runs

        transform = runs.latest_artifact_uri(os.path.join(config.pipeline_root, "metadata.sqlite"), "TransformGraph")
        results["training_images_per_second"] = training_speed(config, transform, args.speed_steps, 5,
                                                               args.speed_reps)
    print(json.dumps(results, indent=1))
    with open(os.path.join(args.work, "results.json"), "w") as f:
        json.dump(results, f, indent=1)


if __name__ == "__main__":
    main()
