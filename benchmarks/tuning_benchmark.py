"""``imat run --tune`` on real catalogue photos: the tuned configuration against the default, and against
the default trained for the Tuner's extra steps.

  .venv/bin/python benchmarks/tuning_benchmark.py --dataset PATH/TO/fashion-products-2k \
      --work /tmp/imat-tune --train_steps 600 --tune_trials 6 --tune_steps 200 --seeds 0 1

Per seed, three pipeline runs on the same data (``pipeline_benchmark.py``'s settings: InceptionV3
from scratch at 75 px, batch 32):

- ``default``: ``train_steps`` steps of the settings as given;
- ``tuned``: ``--tune`` (``tune_trials`` trials of ``tune_steps`` steps each, scored on the
  calibration split), then ``train_steps`` steps of the best trial's settings;
- ``default_longer``: the settings as given for ``train_steps + tune_trials * tune_steps`` steps,
  the training the Tuner spent, so that tuning is compared with simply training longer.

Each model is scored as ``pipeline_benchmark.py`` scores it: through its serving signature on the
eval split (never seen by training, the trials or the thresholds), every decision rule fitted on
calibration, and on the test split with ``imat submission``. Means over seeds, and paired
bootstrap intervals (over eval images) of tuned minus each other arm. CPU seconds (this
process: the local runner runs every component in it) per run.
"""

import argparse
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import imat_common.keras2  # noqa: F401  (chooses Keras 2 before TensorFlow loads)

import numpy as np

from benchmarks import pipeline_benchmark as bench

ARMS = ("default", "tuned", "default_longer")


def arm_config(args, label_map: str, arm: str, seed: int):
    """The pipeline's config of one arm; each arm has its own pipeline (and so its own cache and models)."""
    config = bench.pipeline_config(args, label_map, seed)
    work = os.path.join(args.work, arm)
    config = config.with_settings(
        pipeline_root=os.path.join(work, "pipeline"),
        serving_dir=os.path.join(work, "serving"),
        similar_dir=os.path.join(work, "similar"),
        data_root=os.path.join(args.work, "data"),
    )
    if arm == "tuned":
        return config.with_settings(tune=True, tune_trials=args.tune_trials, tune_steps=args.tune_steps)
    if arm == "default_longer":
        return config.with_settings(train_steps=args.train_steps + args.tune_trials * args.tune_steps)
    return config


def tuner_trials(config) -> list:
    from cli import runs
    from cli.tuning import read_results
    from imat_common.workdir import metadata_path

    uri = runs.latest_output_uri(metadata_path(config.locations.pipeline_root), "Tuner", "TunerResults")
    return read_results(uri) if uri else []


def main(argv=None):
    from trainer import rules

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", required=True, help="the fashion-products-2k folder")
    parser.add_argument("--work", default="/tmp/imat-tune")
    parser.add_argument("--image_size", type=int, default=75)
    parser.add_argument("--train_steps", type=int, default=600)
    parser.add_argument("--batch_size", type=int, default=32)
    parser.add_argument("--learning_rate", type=float, default=1e-3)
    parser.add_argument("--tune_trials", type=int, default=6)
    parser.add_argument("--tune_steps", type=int, default=200)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--arms", nargs="+", default=list(ARMS), choices=ARMS)
    args = parser.parse_args(argv)
    os.makedirs(args.work, exist_ok=True)
    label_map = bench.prepare(os.path.abspath(args.dataset), args.work)
    config = bench.pipeline_config(args, label_map)
    _, labels, jpegs, calibration, baseline = bench.held_out(config, label_map)
    evaluation = ~calibration

    per_seed = {arm: [] for arm in args.arms}
    eval_probabilities = {arm: [] for arm in args.arms}
    fitted = {arm: [] for arm in args.arms}
    for seed in args.seeds:
        for arm in args.arms:
            seeded = arm_config(args, label_map, arm, seed)
            cpu = time.process_time()
            run = bench.run_pipeline(seeded, os.path.dirname(label_map))
            cpu = time.process_time() - cpu
            p = bench.pipeline_probabilities(run["model_dir"], jpegs)
            result = bench.scores(p, labels, calibration, config, baseline)
            fitted[arm].append(result.pop("thresholds"))
            eval_probabilities[arm].append(p[evaluation])
            row = {"seed": seed, **result, "test": run["test"]["micro_f1"]["submission"], "cpu_seconds": round(cpu)}
            row["wall_seconds"] = round(run["seconds"])
            if arm == "tuned":
                row["trials"] = tuner_trials(seeded)
            per_seed[arm].append(row)
            print(json.dumps({arm: row}, indent=1), flush=True)
            with open(os.path.join(args.work, "tuning_runs.json"), "w") as f:  # kept if a later run fails
                json.dump(per_seed, f, indent=1)

    columns = (rules.FIXED, rules.GLOBAL, rules.PER_LABEL, "served", "test", "cpu_seconds")
    means = {arm: {c: float(np.mean([r[c] for r in per_seed[arm]])) for c in columns} for arm in args.arms}
    intervals = {}
    if "tuned" in args.arms:
        for other in (a for a in args.arms if a != "tuned"):
            intervals[other] = {
                rule: bench.bootstrap_difference(
                    eval_probabilities["tuned"],
                    eval_probabilities[other],
                    labels[evaluation],
                    [f[rule] for f in fitted["tuned"]],
                    [f[rule] for f in fitted[other]],
                )
                for rule in (rules.FIXED, rules.GLOBAL, rules.PER_LABEL)
            }
    seeds = ", ".join(map(str, args.seeds))
    print(
        f"\n| mean of seeds {seeds} | eval: 0.5 | global threshold | per-label thresholds | rule chosen on "
        "calibration | test: served | CPU s per run |\n|---|---|---|---|---|---|---|"
    )
    for arm in args.arms:
        m = means[arm]
        print(f"| {arm} | " + " | ".join(f"{m[c]:.3f}" for c in columns[:-1]) + f" | {m['cpu_seconds']:.0f} |")
    for other, by_rule in intervals.items():
        print(
            f"| tuned minus {other} (95 % interval) | "
            + " | ".join(
                f"{means['tuned'][r] - means[other][r]:+.3f} ({lo:+.3f} to {hi:+.3f})"
                for r, (lo, hi) in by_rule.items()
            )
            + " | | | |"
        )
    print(f"| trivial baseline | {float(np.mean([r[rules.BASELINE] for r in per_seed[args.arms[0]]])):.3f} | | | | | |")
    results = {
        "config": {k: getattr(args, k) for k in ("image_size", "train_steps", "tune_trials", "tune_steps", "seeds")},
        "means": means,
        "difference_interval_95": intervals,
        "per_seed": per_seed,
    }
    with open(os.path.join(args.work, "tuning_results.json"), "w") as f:
        json.dump(results, f, indent=1)


if __name__ == "__main__":
    main()
