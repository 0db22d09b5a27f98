"""``imat run --tune`` on the demo: the Tuner runs before the Trainer, and the Trainer trains its best trial.

A tiny budget (3 trials of 3 steps, 6 training steps at 75 px): the test checks the wiring, not
what the search finds (docs/benchmarks.md measures that).
"""

import json
import os

import pytest

from cli import main as imat, runs
from cli.tuning import read_results
from imat_common.serving import read_thresholds
from imat_common.workdir import Workdir, metadata_path

FLAGS = [
    "--num_images",
    "60",
    "--image_size",
    "75",
    "--train_steps",
    "6",
    "--batch_size",
    "8",
    "--eval_batch_size",
    "16",
    "--micro_f1_lower_bound",
    "0",
    "--baseline_margin",
    "-1",
    "--no-confidence_intervals",
    "--tune",
    "--tune_trials",
    "3",
    "--tune_steps",
    "3",
    "--tune_search",
    "dropout,pooling,head_units",
]


@pytest.mark.slow
def test_imat_run_tune_trains_the_best_trial_and_reports_the_search(tmp_path, capsys):
    work = Workdir(str(tmp_path / "work"))
    imat.main(["run", "--workdir", work.root] + FLAGS)
    out = capsys.readouterr().out
    metadata = metadata_path(work.pipeline_root)
    executions = {e.component: e.state for e in runs.last_run(metadata)}
    assert executions["Tuner"] == "COMPLETE" and executions["Trainer"] == "COMPLETE", executions

    tuner_results = runs.latest_output_uri(metadata, "Tuner", "TunerResults")
    trials = read_results(tuner_results)
    assert len(trials) == 3 and [t["score"] for t in trials] == sorted((t["score"] for t in trials), reverse=True)
    # the first trial is the demo's own settings
    first = min(trials, key=lambda t: int(t["trial_id"]))
    assert (first["dropout"], first["pooling"], first["head_units"]) == (0.2, "avg", 0)

    best_uri = runs.latest_output_uri(metadata, "Tuner", "HyperParameters")
    with open(os.path.join(best_uri, "best_hyperparameters.txt")) as f:
        best = json.load(f)["values"]
    assert best == {k: v for k, v in trials[0].items() if k not in ("trial_id", "score")}
    # the Trainer trained with them, and says so in the model's report
    report = read_thresholds(os.path.join(runs.latest_artifact_uri(metadata, "Model"), "Format-Serving"))
    assert report["training"]["hyperparameters"] == best and report["training"]["steps"] == 6

    assert "tuner: 3 trials" in out and "(the settings as given)" in out
    assert "pushed model:" in out
    from cli import report as report_command
    from cli.tuning import format_values

    lines, _ = report_command.model_rules(metadata)
    assert lines[-1] == f"trained with the Tuner's best settings: {format_values(best)}"
