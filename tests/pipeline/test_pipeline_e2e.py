"""The whole TFX pipeline on tiny demo data: runs, blesses, pushes, caches, and refuses a bad model.

A 4-step model has learnt next to nothing, so the runs that must bless it take a permissive gate:
a bound of 0 and a negative margin over the trivial baseline.

Every image carries exactly three labels (category, colour, pattern): the data on which
SchemaGen's guess made ``labels`` fixed-length and Transform failed, before the curated schema.
"""

import io
import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_model_analysis as tfma

from components import quality_gate
from components.download import job
from pipeline import local_runner
from cli import demo_data, logs, predict, report, runs, submission
from pipeline.config import demo_config
from cli.run import summary_lines
from tests.browser import open_page
from tests.helpers import REPO, COMPONENTS
from trainer import ensemble, ensemble_export, rules
from imat_common import splits
from imat_common.workdir import Workdir, latest_pushed_model, metadata_path
from imat_common.serving import read_thresholds


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    work = str(tmp_path_factory.mktemp("pipeline"))
    source = os.path.join(work, "source")
    demo_data.write_images(source, 90, size=96, seed=1)
    # The same number of labels on every image: drop the sleeve task (only some garments have one).
    sleeves = {label.label_id for label in demo_data.label_table() if label.task == "sleeve"}
    with open(os.path.join(source, "splits.json")) as f:
        splits = json.load(f)
    splits = {name: [(i, [k for k in ids if k not in sleeves]) for i, ids in items] for name, items in splits.items()}
    assert {len(ids) for items in splits.values() for _, ids in items} == {3}
    with open(os.path.join(source, "splits.json"), "w") as f:
        json.dump(splits, f)
    with demo_data.serve_folder(source) as base:
        paths = demo_data.write_json(source, base)
        job.run(
            [f"--input={k}={v}" for k, v in paths.items()]
            + [
                f"--output={os.path.join(work, 'data')}",
                f"--label_map={os.path.join(source, 'label_map.csv')}",
                "--allow_private_networks",
            ]
        )
    return work


NOTEBOOK = os.path.join(REPO, "notebooks", "evaluation.ipynb")


def _execute_notebook(workdir, monkeypatch):
    """Runs notebooks/evaluation.ipynb headless on this run; returns its outputs by cell."""
    import nbformat
    from nbclient import NotebookClient

    monkeypatch.setenv("IMAT_WORKDIR", workdir)
    # The kernel is a new process: it imports this checkout's packages, as pytest does.
    monkeypatch.setenv("PYTHONPATH", os.path.dirname(os.path.dirname(NOTEBOOK)))
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    NotebookClient(
        notebook, timeout=300, kernel_name="python3", resources={"metadata": {"path": os.path.dirname(NOTEBOOK)}}
    ).execute()
    return [cell.get("outputs", []) for cell in notebook.cells if cell.cell_type == "code"]


def _split_ids(examples_uri, split):
    files = tf.io.gfile.glob(splits.split_pattern(examples_uri, split))
    spec = {"image_id": tf.io.FixedLenFeature([], tf.string)}
    return {
        tf.io.parse_single_example(r, spec)["image_id"].numpy().decode()
        for r in tf.data.TFRecordDataset(files, compression_type="GZIP")
    }


def _check_calibration_and_rules(workdir, metadata, pushed, evaluation):
    """Thresholds come from calibration images only; the report holds the contract; TFMA agrees on eval."""
    examples = runs.latest_artifact_uri(metadata, "Examples")
    calibration, eval_ids = _split_ids(examples, "calibration"), _split_ids(examples, "eval")
    with open(os.path.join(workdir, "source", "splits.json")) as f:
        validation = {image_id for image_id, _ in json.load(f)["validation"]}
    assert calibration and eval_ids and not calibration & eval_ids
    assert calibration | eval_ids == validation
    report_ = read_thresholds(pushed)
    assert report_["served_rule"] in rules.RULES and len(report_["thresholds"]) == 18
    assert report_["calibration_examples"] == len(calibration) and report_["eval_examples"] == len(eval_ids)
    assert set(report_["micro_f1"]) == set(rules.RULES) | {rules.BASELINE}
    assert all(set(report_["micro_f1"][r]) >= {"calibration", "eval"} for r in report_["micro_f1"])
    assert len(report_["baseline"]["label_ids"]) == 3  # category, colour, pattern: sleeve never occurs
    evaluation_result = tfma.load_eval_result(evaluation)
    gated = report.micro_f1(evaluation_result.slicing_metrics)
    assert gated == pytest.approx(report_["micro_f1"][report_["served_rule"]]["eval"], abs=1e-6)
    return report_


class FirstRun:
    """The first run's config and what it left, read before any later run adds its own."""

    def __init__(self, config):
        self.config = config
        self.metadata = metadata_path(config.locations.pipeline_root)
        self.executions = runs.last_run(self.metadata)
        self.blessed = runs.latest_blessing(self.metadata)
        self.pushed = latest_pushed_model(config.locations.serving_dir)
        self.evaluation = runs.latest_artifact_uri(self.metadata, "ModelEvaluation")


@pytest.fixture(scope="module")
def first_run(workdir):
    """The pipeline run once on the workdir's data, with a gate every model passes."""
    config = demo_config(
        workdir,
        num_labels=18,
        image_size=75,
        train_steps=4,
        batch_size=8,
        eval_batch_size=16,
        micro_f1_lower_bound=0.0,
        baseline_margin=-1.0,
    )
    local_runner.run(config)
    return FirstRun(config)


# The scenarios below share one pipeline run (the module's fixtures) and report separately. The
# ones that read "the latest evaluation" come before the strict gate's run, the file's last test.


@pytest.mark.slow
def test_the_first_run_completes_blesses_and_pushes_a_model_that_serves_images(workdir, first_run):
    assert {e.component for e in first_run.executions} == COMPONENTS
    assert all(e.state == "COMPLETE" for e in first_run.executions), first_run.executions
    assert first_run.blessed is True and first_run.pushed is not None
    assert any(line.startswith("evaluator: blessed: eval micro-F1 ") for line in summary_lines(first_run.config))
    with open(os.path.join(workdir, "source", "images", "1.jpg"), "rb") as f:
        outputs = tf.saved_model.load(first_run.pushed).signatures["predict_images"](images=tf.constant([f.read()]))
    assert outputs["probabilities"].shape == (1, 18) and outputs["label_names"].shape == (1, 18)
    lines = summary_lines(first_run.config)
    assert any("pushed model: " + first_run.pushed in line for line in lines)
    assert any("never used for tuning" in line for line in lines)
    assert any(line.strip().startswith("baseline: most frequent train label per task") for line in lines)


@pytest.mark.slow
def test_thresholds_come_from_calibration_and_the_gate_agrees_with_the_report(workdir, first_run):
    _check_calibration_and_rules(workdir, first_run.metadata, first_run.pushed, first_run.evaluation)


@pytest.mark.slow
def test_imat_predict_streams_images_in_batches(workdir, first_run, capsys):
    images = [os.path.join(workdir, "source", "images", f"{i}.jpg") for i in (1, 2, 3)]
    label_map = os.path.join(workdir, "source", "label_map.csv")
    predict.main(images + ["--model", first_run.pushed, "--batch_size", "2", "--label_map", label_map])
    printed = capsys.readouterr().out
    assert all(f"{path}:" in printed for path in images)


@pytest.mark.slow
def test_imat_submission_scores_the_test_split_never_seen(workdir, first_run):
    trained = read_thresholds(first_run.pushed)
    result = submission.main(["--workdir", workdir, "--labels", os.path.join(workdir, "source", "test_labels.json")])
    with open(os.path.join(workdir, "source", "splits.json")) as f:
        test_ids = {image_id for image_id, _ in json.load(f)["test"]}
    with open(os.path.join(workdir, "submission.csv")) as f:
        assert {line.split(",")[0] for line in f.read().splitlines()[1:]} == test_ids
    assert result["scored"] == len(test_ids) and result["labelled_without_example"] == 0
    assert result["micro_f1"]["submission"] == pytest.approx(result["micro_f1"][trained["served_rule"]])


@pytest.mark.slow
def test_the_similarity_index_lies_where_imat_similar_looks(workdir, first_run):
    assert first_run.config.locations.similar_dir == Workdir(workdir).similar
    assert os.path.isfile(os.path.join(Workdir(workdir).similar, os.path.basename(first_run.pushed), "manifest.json"))


@pytest.mark.slow
def test_a_second_run_with_nothing_changed_reuses_every_execution(first_run):
    progress = io.StringIO()
    with logs.component_progress(progress):
        local_runner.run(first_run.config)
    second = runs.last_run(first_run.metadata)
    assert {e.component for e in second} == COMPONENTS
    assert all(e.state == "CACHED" for e in second if e.component != "latest_blessed_model_resolver"), second
    assert len(os.listdir(first_run.config.locations.serving_dir)) == 1  # the same model is not pushed twice
    # imat run's progress: a line as each component starts, one with its seconds as it ends.
    lines = progress.getvalue().splitlines()
    assert len(lines) == 2 * len(COMPONENTS) and all(re.fullmatch(r"\S+ (\.\.\.|done in \d+\.\d s)", x) for x in lines)
    assert [x.split()[0] for x in lines[::2]] == [x.split()[0] for x in lines[1::2]]
    assert {x.split()[0] for x in lines} == COMPONENTS


@pytest.mark.slow
def test_imat_report_groups_labels_by_task_and_its_page_has_no_script_error(workdir, first_run, capsys):
    report.main(["--workdir", workdir])
    printed = capsys.readouterr().out
    assert "[category]" in printed and "label distribution (train split, 63 examples" in printed
    assert "<- served" in printed and "(trivial baseline " in printed
    # SchemaGen guessed fixed-length labels from this data; the contract keeps them variable.
    assert "labels: shape [3], contract variable" in printed
    assert "label slices (the eval images carrying each label" in printed
    assert open_page(os.path.join(workdir, "report.html")) == []  # no script error in Chromium


@pytest.mark.slow
def test_the_evaluation_notebook_opens_the_run(workdir, first_run, monkeypatch):
    # The notebook opens this evaluation: TFMA's viewer on the overall slice, a table of every label.
    opened, viewer, table = _execute_notebook(workdir, monkeypatch)
    assert first_run.evaluation in "".join(o.get("text", "") for o in opened)
    assert any("application/vnd.jupyter.widget-view+json" in o.get("data", {}) for o in viewer)
    html_table = next(o["data"]["text/html"] for o in table if o["output_type"] == "execute_result")
    assert html_table.split("<tbody>")[1].count("<tr") == 18  # one row per label


@pytest.mark.slow
def test_imat_report_prints_the_report_and_a_handful_of_other_lines(workdir, first_run):
    # Without the tests' TF_CPP_MIN_LOG_LEVEL: the command's own default is what a user gets.
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    result = subprocess.run(
        [sys.executable, "-m", "cli.main", "report", "--workdir", workdir],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "[category]" in result.stdout
    # The report is stdout; everything else (library logs, warnings) is stderr, and nearly nothing.
    assert len(result.stderr.splitlines()) <= 5, result.stderr[-3000:]


@pytest.mark.slow
def test_an_ensemble_with_a_stacker_is_gated_pushed_and_serves_the_combination(workdir, tmp_path):
    config = demo_config(
        workdir,
        num_labels=18,
        image_size=75,
        train_steps=4,
        batch_size=8,
        eval_batch_size=16,
        micro_f1_lower_bound=0.0,
        baseline_margin=-1.0,
        pipeline_root=str(tmp_path / "pipeline"),
        serving_dir=str(tmp_path / "serving"),
        similar_dir=str(tmp_path / "similar"),
        ensemble_method="stacker",
        # The first member's embeddings are the index's: InceptionV3's, as in the test
        # above (a 4-step MobileNetV3Small's hard-swish features can all be zero).
        ensemble=("backbone=inception_v3", "backbone=mobilenetv3small,loss=asl,seed=1,progressive_image_size=48"),
    )
    local_runner.run(config)
    metadata = metadata_path(config.locations.pipeline_root)
    states = {e.component: e.state for e in runs.last_run(metadata)}
    assert set(states) == COMPONENTS - {"Trainer"} | {"Trainer_1", "Trainer_2", "Ensembler"}
    assert all(state == "COMPLETE" for state in states.values()), states
    pushed = latest_pushed_model(config.locations.serving_dir)
    assert pushed is not None
    trained = read_thresholds(pushed)
    assert trained["ensemble"]["method"] == "stacker" and len(trained["ensemble"]["members"]) == 2

    # The pushed model serves what the members' own exports and the stacker give outside it.
    members = [tf.saved_model.load(d) for d in trained["ensemble"]["members"]]
    examples = runs.latest_artifact_uri(metadata, "Examples")
    stacker = ensemble.fit_stacker(
        *ensemble_export.score(members, ensemble_export.examples_files(examples, "calibration"), 64)
    )
    eval_files = ensemble_export.examples_files(examples, "eval")
    probabilities, _ = ensemble_export.score(members, eval_files, 64)
    expected = ensemble.stacker_predict(stacker, probabilities)
    batch = tf.constant([r.numpy() for r in tf.data.TFRecordDataset(eval_files, compression_type="GZIP")])
    served = tf.saved_model.load(pushed).signatures["serving_default"](examples=batch)
    np.testing.assert_allclose(served["probabilities"].numpy(), expected, atol=1e-5)
    # The Evaluator gated the ensemble on eval: its micro-F1 is the one the ensemble's report gives.
    evaluation_result = tfma.load_eval_result(runs.latest_artifact_uri(metadata, "ModelEvaluation"))
    assert report.micro_f1(evaluation_result.slicing_metrics) == pytest.approx(
        trained["micro_f1"][trained["served_rule"]]["eval"], abs=1e-6
    )
    assert os.path.isfile(os.path.join(str(tmp_path), "similar", os.path.basename(pushed), "manifest.json"))


@pytest.mark.slow
def test_a_model_not_above_the_trivial_baseline_is_evaluated_against_the_first_and_not_pushed(first_run):
    # Last in the file: its run becomes "the latest evaluation" the tests above read. The bound
    # passes every model; no model can be 1.0 above the trivial baseline: the baseline refuses it.
    strict = first_run.config.with_settings(baseline_margin=1.0, train_steps=5)
    local_runner.run(strict)
    third = {e.component: e.state for e in runs.last_run(first_run.metadata)}
    assert third["Trainer"] == "COMPLETE" and third["Evaluator"] == "COMPLETE"
    assert runs.latest_blessing(first_run.metadata) is False
    evaluation = tfma.load_eval_result(runs.latest_artifact_uri(first_run.metadata, "ModelEvaluation"))
    overall = dict(evaluation.slicing_metrics)[()]["decisions"][""]
    assert any(name.endswith("micro_f1_diff") for name in overall), overall  # compared with the baseline
    assert latest_pushed_model(first_run.config.locations.serving_dir) == first_run.pushed

    blessing = max(runs.open_store(first_run.metadata).get_artifacts_by_type("ModelBlessing"), key=lambda a: a.id)
    failed = blessing.custom_properties[quality_gate.GATE_FAILED].string_value.split(",")
    assert quality_gate.TRIVIAL_BASELINE in failed and quality_gate.LOWER_BOUND not in failed
    assert sorted(os.listdir(blessing.uri)) == ["NOT_BLESSED"]
    trivial = read_thresholds(os.path.join(runs.latest_artifact_uri(first_run.metadata, "Model"), "Format-Serving"))
    # ML Metadata's SQLite store keeps six decimals of a float property (0.212121).
    assert blessing.custom_properties[quality_gate.GATE_TRIVIAL_BASELINE].double_value == pytest.approx(
        trivial["micro_f1"][rules.BASELINE]["eval"], abs=1e-5
    )
    # TFMA's jackknife gave the difference from the last blessed model a paired interval.
    lower = blessing.custom_properties[quality_gate.GATE_DIFFERENCE_LOWER].double_value
    upper = blessing.custom_properties[quality_gate.GATE_DIFFERENCE_UPPER].double_value
    assert -1.0 <= lower <= upper <= 1.0
    lines = summary_lines(strict)
    comparison = lines[lines.index(next(line for line in lines if line.startswith("against the last blessed"))) + 1]
    assert re.search(
        r"candidate \d\.\d{3} +last blessed \d\.\d{3} +difference [+-]\d\.\d{3} \(95 % interval ", comparison
    )
    [evaluator] = [line for line in lines if line.startswith("evaluator: ")]
    assert evaluator.startswith("evaluator: NOT blessed: eval micro-F1 ")
    assert re.search(r"is not above the trivial baseline \d\.\d{3} \+ margin 1(;|$)", evaluator), evaluator
    assert any("no model pushed by this run" in line for line in lines)
