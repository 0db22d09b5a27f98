"""How much of the validation split should calibrate, and how optimistic in-sample tuning is.

  .venv/bin/python benchmarks/calibration_benchmark.py --work /tmp/imat-bench --repeats 200

Takes the model the pipeline benchmark trained (``--work``'s newest Model) and scores every image of
the validation folder once. Then, for each calibration share, it cuts the validation images at
random into calibration and eval ``--repeats`` times and runs the Trainer's own
``rules.decision_report``: the served rule's micro-F1 on eval (out of sample), and what tuning on all
validation images and scoring on the same images (the pipeline before the calibration split) would
have reported. Prints mean and standard deviation over the repeats, and how often the rule the
k-fold cross-validation chose was also the best of the three on eval.
"""

import argparse
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import imat_common.keras2  # noqa: F401  (chooses Keras 2 before TensorFlow loads)

import numpy as np


def score_validation(model_dir: str, pattern: str, num_labels: int, batch_size: int = 64):
    """(probabilities, multi-hot labels) of every example matching ``pattern``, scored by ``model_dir``."""
    import tensorflow as tf

    from imat_common import features

    model = tf.saved_model.load(model_dir)
    files = tf.io.gfile.glob(pattern)
    spec = {features.LABELS_KEY: tf.io.VarLenFeature(tf.int64)}
    probabilities, labels = [], []
    for batch in tf.data.TFRecordDataset(files, compression_type="GZIP").batch(batch_size):
        probabilities.append(model.signatures["serving_default"](examples=batch)["probabilities"].numpy())
        ids = tf.sparse.to_dense(tf.io.parse_example(batch, spec)[features.LABELS_KEY]).numpy()
        hot = np.zeros((len(ids), num_labels), np.float32)
        for row, label_ids in enumerate(ids):
            hot[row, [i - 1 for i in label_ids if i > 0]] = 1
        labels.append(hot)
    return np.concatenate(probabilities), np.concatenate(labels)


def simulate(probabilities, labels, share: float, repeats: int, min_positives: int, folds: int, seed: int = 0):
    """Per repeat: the served rule's eval micro-F1, each rule's, and whether k-fold chose the eval-best rule."""
    from trainer import rules

    rng = np.random.default_rng(seed)
    n = len(labels)
    served, per_rule, chose_best = [], {rule: [] for rule in rules.RULES}, []
    for _ in range(repeats):
        calibration = np.zeros(n, bool)
        calibration[rng.permutation(n)[: int(round(share * n))]] = True
        report = rules.decision_report(
            (probabilities[calibration], labels[calibration]),
            (probabilities[~calibration], labels[~calibration]),
            min_positives,
            folds,
        )
        scores = {rule: report["micro_f1"][rule]["eval"] for rule in rules.RULES}
        served.append(scores[report["served_rule"]])
        for rule, value in scores.items():
            per_rule[rule].append(value)
        chose_best.append(scores[report["served_rule"]] >= max(scores.values()) - 1e-12)
    return {
        "served_eval_mean": float(np.mean(served)),
        "served_eval_sd": float(np.std(served)),
        "per_rule_eval_mean": {rule: float(np.mean(v)) for rule, v in per_rule.items()},
        "chose_eval_best": float(np.mean(chose_best)),
        "eval_images": n - int(round(share * n)),
    }


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", default="/tmp/imat-bench", help="the pipeline benchmark's --work")
    parser.add_argument("--shares", default="0.25,0.5,0.75", help="calibration shares of the validation images")
    parser.add_argument("--repeats", type=int, default=200)
    parser.add_argument("--min_positives", type=int, default=3, help="as the pipeline benchmark's config")
    parser.add_argument("--folds", type=int, default=5)
    args = parser.parse_args(argv)

    from cli import runs
    from trainer import thresholds
    from imat_common.features import load_label_map

    metadata = os.path.join(args.work, "pipeline", "metadata.sqlite")
    model = os.path.join(runs.latest_artifact_uri(metadata, "Model"), "Format-Serving")
    num_labels = load_label_map(os.path.join(args.work, "source", "label_map.csv")).num_labels
    probabilities, labels = score_validation(
        model, os.path.join(args.work, "data", "validation", "*.tfrecord.gz"), num_labels
    )
    tuned, _ = thresholds.tune_thresholds(probabilities, labels, args.min_positives)
    results = {
        "model": model,
        "validation_images": len(labels),
        "in_sample_per_label": thresholds.f1_at(probabilities, labels, tuned),
        "in_sample_at_0.5": thresholds.f1_at(probabilities, labels, np.full(num_labels, 0.5)),
        "shares": {},
    }
    print(
        f"{len(labels)} validation images; tuned and scored on all of them (in sample): per-label "
        f"{results['in_sample_per_label']:.3f}, 0.5 {results['in_sample_at_0.5']:.3f}"
    )
    for share in (float(s) for s in args.shares.split(",")):
        result = simulate(probabilities, labels, share, args.repeats, args.min_positives, args.folds)
        results["shares"][str(share)] = result
        print(
            f"calibration {share:.0%}: served rule on eval {result['served_eval_mean']:.3f} "
            f"(sd {result['served_eval_sd']:.3f}, {result['eval_images']} eval images); per rule "
            + ", ".join(f"{rule} {value:.3f}" for rule, value in result["per_rule_eval_mean"].items())
            + f"; k-fold chose the eval-best rule {result['chose_eval_best']:.0%} of the time",
            flush=True,
        )
    with open(os.path.join(args.work, "calibration_results.json"), "w") as f:
        json.dump(results, f, indent=1)


if __name__ == "__main__":
    main()
