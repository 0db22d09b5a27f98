"""The whole TFX pipeline on tiny demo data: runs, blesses, pushes, caches, and refuses a bad model."""
import dataclasses
import os

import pytest
import tensorflow as tf
import tensorflow_model_analysis as tfma

from components.download import job
from pipeline import demo_data, local_runner, report, runs
from pipeline.config import demo_config
from pipeline.run_command import summary_lines

COMPONENTS = {"ImportExampleGen", "StatisticsGen", "SchemaGen", "ExampleValidator", "Transform", "Trainer",
              "latest_blessed_model_resolver", "Evaluator", "Pusher", "SimilarityIndexer"}


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    work = str(tmp_path_factory.mktemp("pipeline"))
    source = os.path.join(work, "source")
    demo_data.write_images(source, 90, size=96, seed=1)
    with demo_data.serve_folder(source) as base:
        paths = demo_data.write_json(source, base)
        job.run([f"--input={k}={v}" for k, v in paths.items() if k != "test"]
                + [f"--output={os.path.join(work, 'data')}", f"--label_map={os.path.join(source, 'label_map.csv')}",
                   "--allow_private_networks"])
    return work


@pytest.mark.slow
def test_pipeline_runs_blesses_pushes_caches_and_gates(workdir, capsys):
    config = demo_config(workdir, num_labels=18, image_size=75, train_steps=4, batch_size=8, eval_batch_size=16,
                         micro_f1_lower_bound=0.0)
    metadata = os.path.join(config.pipeline_root, "metadata.sqlite")

    local_runner.run(config)
    first = runs.last_run(metadata)
    assert {e.component for e in first} == COMPONENTS
    assert all(e.state == "COMPLETE" for e in first), first
    assert runs.latest_blessing(metadata) is True
    pushed = runs.latest_pushed_model(config.serving_dir)
    assert pushed is not None
    with open(os.path.join(workdir, "source", "images", "1.jpg"), "rb") as f:
        outputs = tf.saved_model.load(pushed).signatures["predict_images"](images=tf.constant([f.read()]))
    assert outputs["probabilities"].shape == (1, 18) and outputs["label_names"].shape == (1, 18)
    assert any("pushed model: " + pushed in line for line in summary_lines(config))
    # SimilarityIndexer indexed the catalogue with the pushed model, where `imat similar` looks.
    assert os.path.isfile(os.path.join(workdir, "similar", os.path.basename(pushed), "manifest.json"))

    local_runner.run(config)  # nothing changed: every execution is reused
    second = runs.last_run(metadata)
    assert {e.component for e in second} == COMPONENTS
    assert all(e.state == "CACHED" for e in second if e.component != "latest_blessed_model_resolver"), second
    assert len(os.listdir(config.serving_dir)) == 1  # the same model is not pushed twice

    # imat report reads that evaluation: per-label rows grouped by task, and the label data.
    report.main(["--workdir", workdir])
    printed = capsys.readouterr().out
    assert "[category]" in printed and "label distribution (train split, 63 examples" in printed
    assert os.path.getsize(os.path.join(workdir, "report.html")) > 1000

    # A retrained model against a gate no model can pass: evaluated against the first model as
    # its baseline, not blessed, and nothing is pushed.
    strict = dataclasses.replace(config, micro_f1_lower_bound=1.01, train_steps=5)
    local_runner.run(strict)
    third = {e.component: e.state for e in runs.last_run(metadata)}
    assert third["Trainer"] == "COMPLETE" and third["Evaluator"] == "COMPLETE"
    assert runs.latest_blessing(metadata) is False
    evaluation = tfma.load_eval_result(runs.latest_artifact_uri(metadata, "ModelEvaluation"))
    overall = dict(evaluation.slicing_metrics)[()]["decisions"][""]
    assert any(name.endswith("micro_f1_diff") for name in overall), overall  # compared with the baseline
    assert runs.latest_pushed_model(config.serving_dir) == pushed
    assert any("no model pushed by this run" in line for line in summary_lines(strict))
