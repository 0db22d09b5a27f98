"""Losses, backbones, pooling, the ensemble and the stacker, side by side, on real photos, out of sample.

  .venv/bin/python benchmarks/model_options_benchmark.py --dataset PATH/TO/fashion-products-2k \
      --work /tmp/imat-models --train_steps 600

1. Data: as ``benchmarks/pipeline_benchmark.py`` (the dataset served on loopback, written in the
   iMaterialist layout, downloaded by the download job) and the same training settings (from
   scratch, no pretrained weights offline, 75 px, batch 32, 600 steps).
2. Per seed, one pipeline run with an ensemble of one member per variant (``VARIANTS``, or the
   ones ``--variants`` names): the default (InceptionV3, binary cross-entropy, average pooling)
   and the same with one thing changed. The pipeline trains each member (its own Trainer), the
   Ensembler combines them with hill-climbed weights, the Evaluator gates the ensemble.
3. Every member is scored on the calibration split, the eval split and the test split (the
   dataset's test photos, labels from ``test_labels.json``; no step of the pipeline reads them).
   Each single model gets its decision rule fitted on calibration as its Trainer does it; the
   ensemble (hill-climbed weights) and the stacker (k-fold on calibration) are fitted on
   calibration by the Ensembler's own functions. Rows: eval and test micro-F1, and the paired
   bootstrap 95 % interval (resampling images) of each row minus the default.

The eval split is where a default would be chosen; the test split is scored for confirmation.
With several ``--seeds`` the table gives each row's mean over seeds, the seeds' range, and the
paired interval of the mean difference with images resampled (the same images in every seed).

The measured configuration (three backbones, three seeds; about 75 minutes on 2 CPU cores)::

  .venv/bin/python benchmarks/model_options_benchmark.py --dataset PATH/TO/fashion-products-2k \
      --work /tmp/imat-models --seeds 0 1 2 \
      --variants default backbone=efficientnetv2b0 backbone=mobilenetv3small
"""

import argparse
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import imat_common.keras2  # noqa: F401  (chooses Keras 2 before TensorFlow loads)

import numpy as np
from imat_common.workdir import metadata_path
from imat_common.serving import read_thresholds

DEFAULT = "default"
# Variant name -> its ensemble member's settings (PipelineConfig.ensemble syntax).
VARIANTS = {
    DEFAULT: "",
    "loss=focal": "loss=focal",
    "loss=asl": "loss=asl",
    "pooling=max": "pooling=max",
    # Xception and ResNet50 are built and tested (tests/trainer/test_model_options.py) but left out here:
    # on 2 CPU cores, shared, an InceptionV3-sized member costs 10-20 minutes.
    "backbone=efficientnetv2b0": "backbone=efficientnetv2b0",
    "backbone=mobilenetv3small": "backbone=mobilenetv3small",
    # InceptionV3's last feature map is 1x1 at 75 px, where max and average pooling are the same;
    # MobileNetV3Small's is 3x3 there.
    "backbone=mobilenetv3small,pooling=max": "backbone=mobilenetv3small,pooling=max",
}


def per_image_counts(decisions: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """[examples, 3]: each image's true positives, false positives and false negatives."""
    d, t = np.asarray(decisions) > 0.5, np.asarray(labels) > 0.5
    return np.stack([(d & t).sum(1), (d & ~t).sum(1), (~d & t).sum(1)], axis=1).astype(np.float64)


def _f1(counts: np.ndarray) -> np.ndarray:
    tp, fp, fn = counts[..., 0], counts[..., 1], counts[..., 2]
    denominator = 2 * tp + fp + fn
    return np.where(denominator > 0, 2 * tp / np.maximum(denominator, 1), 0.0)


def micro_f1(counts: np.ndarray) -> float:
    return float(_f1(counts.sum(axis=0)))


def bootstrap_difference(a: np.ndarray, b: np.ndarray, reps: int = 2000, seed: int = 0):
    """95 % interval of micro-F1(a) - micro-F1(b), images resampled with replacement (paired).

    ``a`` and ``b`` are ``per_image_counts`` of the same images.
    """
    n = len(a)
    weights = np.random.default_rng(seed).multinomial(n, np.full(n, 1 / n), size=reps)  # [reps, images]
    differences = _f1(weights @ a) - _f1(weights @ b)
    return float(np.percentile(differences, 2.5)), float(np.percentile(differences, 97.5))


def test_split(config, source: str, models):
    """(member probabilities [members, images, labels], multi-hot labels) of the test photos."""
    import tensorflow as tf

    from benchmarks.pipeline_benchmark import load_split
    from cli.submission import read_labels

    _, _, ids, jpegs = load_split(
        config.locations.data_root, "test", config.trainer.image_size, config.trainer.num_labels
    )
    truth = read_labels(os.path.join(source, "test_labels.json"))
    labels = np.zeros((len(ids), config.trainer.num_labels), np.float32)
    for row, image_id in enumerate(ids):
        labels[row, [k - 1 for k in truth[image_id.decode()]]] = 1
    probabilities = [
        np.concatenate(
            [
                m.signatures["predict_images"](images=tf.constant(jpegs[i : i + 64]))["probabilities"].numpy()
                for i in range(0, len(jpegs), 64)
            ]
        )
        for m in models
    ]
    return np.stack(probabilities), labels


def evaluate(config, trained: dict, source: str, variants) -> dict:
    """Every variant, the ensemble, the stacker and the baseline: decisions on eval and test, and their scores.

    The result also keeps each row's per-image counts (``counts``) so that seeds can be pooled.
    """
    import tensorflow as tf

    from cli import runs
    from trainer import ensemble, ensemble_export, rules

    member_dirs = trained["ensemble"]["members"]
    models = [tf.saved_model.load(d) for d in member_dirs]
    examples = runs.latest_artifact_uri(metadata_path(config.locations.pipeline_root), "Examples")
    splits = {
        split: ensemble_export.score(models, ensemble_export.examples_files(examples, split), 64)
        for split in ("calibration", "eval")
    }
    splits["test"] = test_split(config, source, models)
    baseline = trained["baseline"]["label_ids"]
    decided = {}  # row -> {split: decisions}
    served = {}
    for i, name in enumerate(variants):
        report = rules.decision_report(
            (splits["calibration"][0][i], splits["calibration"][1]),
            (splits["eval"][0][i], splits["eval"][1]),
            config.trainer.min_positives,
            config.trainer.calibration_folds,
            baseline,
        )
        cut = np.asarray(report["thresholds"], np.float32)
        decided[name] = {s: splits[s][0][i] >= cut for s in ("eval", "test")}
        served[name] = report["served_rule"]
    backbones = [i for i, name in enumerate(variants) if name == DEFAULT or name.startswith("backbone=")]
    every = list(range(len(variants)))
    combinations = {f"ensemble of all {len(every)} (hill-climbed weights)": (ensemble.WEIGHTS, every)}
    if len(backbones) > 1 and backbones != every:
        combinations[f"ensemble of the {len(backbones)} backbones (hill-climbed weights)"] = (
            ensemble.WEIGHTS,
            backbones,
        )
    combinations[f"stacker over all {len(every)} (k-fold on calibration)"] = (ensemble.STACKER, every)
    fitted = {}
    for name, (method, chosen) in combinations.items():
        start = time.process_time()
        combination = ensemble.fit_combination(
            method,
            (splits["calibration"][0][chosen], splits["calibration"][1]),
            (splits["eval"][0][chosen], splits["eval"][1]),
            config.trainer.min_positives,
            config.trainer.calibration_folds,
            baseline,
        )
        cut = np.asarray(combination.report["thresholds"], np.float32)
        decided[name] = {s: combination.apply(splits[s][0][chosen]) >= cut for s in ("eval", "test")}
        served[name] = combination.report["served_rule"]
        fitted[name] = {
            "weights": dict(zip([variants[i] for i in chosen], combination.weights))
            if method == ensemble.WEIGHTS
            else None,
            "cpu_seconds": time.process_time() - start,
        }
    row = rules.baseline_decisions(baseline, config.trainer.num_labels)
    decided["trivial baseline"] = {s: np.broadcast_to(row, splits[s][1].shape) > 0.5 for s in ("eval", "test")}
    counts = {name: {s: per_image_counts(d[s], splits[s][1]) for s in d} for name, d in decided.items()}
    result = {"images": {s: int(len(splits[s][1])) for s in splits}, "rows": {}, "fitted": fitted, "counts": counts}
    for name, by_split in counts.items():
        result["rows"][name] = {"served_rule": served.get(name)}
        for split, c in by_split.items():
            result["rows"][name][split] = micro_f1(c)
            if name != DEFAULT:
                result["rows"][name][f"{split}_minus_default"] = micro_f1(c) - micro_f1(counts[DEFAULT][split])
                result["rows"][name][f"{split}_interval_95"] = bootstrap_difference(c, counts[DEFAULT][split])
    return result


def format_table(result: dict, seconds: dict) -> str:
    lines = [
        f"| micro-F1 (eval {result['images']['eval']} / test {result['images']['test']} photos) | eval | "
        "eval minus default (95 % interval) | test | test minus default (95 % interval) | rule | Trainer s |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, row in result["rows"].items():
        cells = [name]
        for split in ("eval", "test"):
            cells.append(f"{row[split]:.3f}")
            cells.append(
                ""
                if name == DEFAULT
                else f"{row[split + '_minus_default']:+.3f} ({row[split + '_interval_95'][0]:+.3f} to "
                f"{row[split + '_interval_95'][1]:+.3f})"
            )
        cells += [row["served_rule"] or "", f"{seconds[name]:.0f}" if name in seconds else ""]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def pooled_difference(a: list, b: list, reps: int = 2000, seed: int = 0):
    """95 % interval of the seeds' mean micro-F1(a) - micro-F1(b), images resampled (paired).

    ``a`` and ``b`` hold one ``per_image_counts`` array per seed, all over the same images.
    """
    n = len(a[0])
    weights = np.random.default_rng(seed).multinomial(n, np.full(n, 1 / n), size=reps)
    differences = np.mean([_f1(weights @ x) - _f1(weights @ y) for x, y in zip(a, b)], axis=0)
    return float(np.percentile(differences, 2.5)), float(np.percentile(differences, 97.5))


def format_seeds_table(per_seed: list, seeds: list) -> str:
    """Rows: mean over seeds on eval and test, the range of seeds, and the pooled interval against the default."""
    lines = [
        f"| micro-F1, mean of seeds {' '.join(map(str, seeds))} (eval {per_seed[0]['images']['eval']} / test "
        f"{per_seed[0]['images']['test']} photos) | eval (seeds' range) | eval minus default (95 % interval) "
        "| test (seeds' range) | test minus default (95 % interval) |",
        "|---|---|---|---|---|",
    ]
    for name in per_seed[0]["rows"]:
        cells = [name]
        for split in ("eval", "test"):
            values = [r["rows"][name][split] for r in per_seed]
            cells.append(f"{np.mean(values):.3f} ({min(values):.3f}-{max(values):.3f})")
            if name == DEFAULT:
                cells.append("")
                continue
            mine = [r["counts"][name][split] for r in per_seed]
            default = [r["counts"][DEFAULT][split] for r in per_seed]
            low, high = pooled_difference(mine, default)
            difference = np.mean([micro_f1(x) - micro_f1(y) for x, y in zip(mine, default)])
            cells.append(f"{difference:+.3f} ({low:+.3f} to {high:+.3f})")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", required=True, help="the fashion-products-2k folder")
    parser.add_argument("--work", default="/tmp/imat-models")
    parser.add_argument("--image_size", type=int, default=75)
    parser.add_argument("--train_steps", type=int, default=600)
    parser.add_argument("--batch_size", type=int, default=32)
    parser.add_argument("--learning_rate", type=float, default=1e-3)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0], help="one pipeline run per seed")
    parser.add_argument(
        "--variants",
        nargs="+",
        default=list(VARIANTS),
        choices=list(VARIANTS),
        help="the ensemble's members (the default is always the first)",
    )
    args = parser.parse_args(argv)
    variants = [DEFAULT] + [v for v in args.variants if v != DEFAULT]
    os.makedirs(args.work, exist_ok=True)

    from benchmarks.pipeline_benchmark import prepare

    label_map = prepare(os.path.abspath(args.dataset), args.work)
    per_seed = []
    for seed in args.seeds:
        result = run_seed(args, label_map, seed, variants)
        per_seed.append(result)
        with open(os.path.join(args.work, f"model_options_seed{seed}.json"), "w") as f:
            json.dump({k: v for k, v in result.items() if k != "counts"}, f, indent=1)
    table = format_seeds_table(per_seed, args.seeds)
    print(table)
    with open(os.path.join(args.work, "model_options.md"), "w") as f:
        f.write(table + "\n")


def run_seed(args, label_map: str, seed: int, variants: list) -> dict:
    """One pipeline run (an ensemble of the variants) at ``seed``, every row scored."""
    from benchmarks.pipeline_benchmark import pipeline_config
    from pipeline import local_runner
    from cli import runs

    config = pipeline_config(args, label_map, seed).with_settings(
        ensemble=tuple(VARIANTS[v] for v in variants), ensemble_method="weights"
    )
    start = time.monotonic()
    local_runner.run(config)  # cached when nothing changed: rerunning only re-scores
    metadata = metadata_path(config.locations.pipeline_root)
    executions = {e.component: e for e in runs.last_run(metadata)}
    # A cached Trainer's time is that of the execution that trained it, in an earlier run.
    trained_in = {e.component: e.seconds for e in runs.executions(metadata) if e.state == "COMPLETE"}
    seconds = {name: trained_in.get(f"Trainer_{i}", 0.0) for i, name in enumerate(variants, start=1)}
    trained = read_thresholds(os.path.join(runs.latest_output_uri(metadata, "Ensembler", "Model"), "Format-Serving"))
    print(
        f"seed {seed}: pipeline {time.monotonic() - start:.0f} s; components: "
        + ", ".join(f"{c} {e.seconds:.0f} s ({e.state})" for c, e in executions.items()),
        flush=True,
    )
    result = evaluate(config, trained, os.path.dirname(label_map), variants)
    result.update(
        config={
            "image_size": args.image_size,
            "train_steps": args.train_steps,
            "seed": seed,
            "batch_size": args.batch_size,
            "num_labels": config.trainer.num_labels,
        },
        trainer_seconds=seconds,
        pipeline_ensemble={
            "weights": trained["ensemble"]["weights"],
            "micro_f1": trained["micro_f1"],
            "served_rule": trained["served_rule"],
        },
    )
    print(format_table(result, seconds), flush=True)
    return result


if __name__ == "__main__":
    main()
