"""The quality floor: a short from-scratch run of the real ``run_fn`` beats the trivial baseline.

Demo garments, whose labels are drawn in the pixels (``cli/demo_data.py``), the demo's Trainer
settings (``pipeline.config.demo_config``) at 75 px and fewer steps, scored on an eval split
that no step of training, thresholds or rule choice sees (``thresholds.json``'s eval column).
A network that trains only its sigmoids on a frozen random backbone (the regression of issue
21) stays near the baseline; one that trains its backbone clears it by far.

Measured with ``python -m tests.trainer.test_quality_floor --seeds 0 1 2 3 4`` (see MARGIN).
"""

import argparse
import json
import os
import tempfile
import time

import pytest

from cli import demo_data
from imat_common.features import write_label_map
from imat_common.serving import read_thresholds
from pipeline.config import demo_config
from tests.helpers import demo_splits

NUM_LABELS = max(label.label_id for label in demo_data.label_table())
COUNTS = {"train": 210, "calibration": 60, "eval": 60}  # the demo's 300 images, with a larger eval split
SIZE, STEPS = 75, 150
# Eval micro-F1 above the baseline's, at 0.5 and under the served rule. Measured before the
# floor was set (this module's main, seeds 0-4, each with its own data; 2026-12-04, commit
# ccdefe4, a 2-core machine shared with other jobs), the margins over the baseline were, at 0.5: 0.431 0.367 0.371
# 0.449 0.343, served: 0.480 0.368 0.365 0.476 0.343 (baseline 0.17-0.24); 150 steps took
# 260-285 CPU seconds. The code before the fix (a frozen random backbone) scored seed 0 at
# 0.000 at 0.5 and a margin of 0.155 served. 0.25 fails that and leaves 0.09 below the worst seed.
MARGIN = 0.25


def train_and_score(work: str, seed: int, steps: int = STEPS) -> dict:
    """Trains through ``run_fn`` in ``work``; returns the eval micro-F1 at 0.5, served, and the baseline's."""
    import imat_common.keras2  # noqa: F401  (Keras 2 before TensorFlow, when run as a script)
    from tfx.components.trainer.fn_args_utils import FnArgs

    from trainer import rules, task

    train_files, eval_files = demo_splits(
        os.path.join(work, "examples"), os.path.join(work, "transform"), COUNTS, SIZE, seed=100 + seed
    )
    config = demo_config(work, NUM_LABELS, image_size=SIZE, train_steps=steps, seed=seed)
    os.makedirs(os.path.dirname(config.locations.label_map), exist_ok=True)
    # The baseline: each task's most frequent label.
    write_label_map(demo_data.label_table(), config.locations.label_map)
    serving = os.path.join(work, "serving")
    task.run_fn(
        FnArgs(
            train_files=train_files,
            eval_files=eval_files,
            transform_output=os.path.join(work, "transform"),
            serving_model_dir=serving,
            model_run_dir="",
            train_steps=config.trainer.train_steps,
            eval_steps=0,
            custom_config=config.trainer_custom_config(),
        )
    )
    report = read_thresholds(serving)
    scores, served = report["micro_f1"], report["served_rule"]
    return {
        "seed": seed,
        "at_0.5": scores[rules.FIXED]["eval"],
        "served": scores[served]["eval"],
        "served_rule": served,
        "baseline": scores[rules.BASELINE]["eval"],
    }


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_a_short_run_beats_the_trivial_baseline_by_a_margin(tmp_path):
    result = train_and_score(str(tmp_path), seed=0)
    assert result["at_0.5"] >= result["baseline"] + MARGIN, result
    assert result["served"] >= result["baseline"] + MARGIN, result


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description="The quality floor's figures over seeds.")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--steps", type=int, default=STEPS)
    args = parser.parse_args(argv)
    for seed in args.seeds:
        start, cpu = time.monotonic(), time.process_time()
        with tempfile.TemporaryDirectory() as work:
            result = train_and_score(work, seed, args.steps)
        result.update(wall_s=round(time.monotonic() - start), cpu_s=round(time.process_time() - cpu))
        print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
