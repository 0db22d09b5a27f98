"""`imat run` killed with SIGKILL during the Trainer, then run again: it finishes from the cache.

A subprocess like a user's: the demo data, tiny training settings, a gate every model passes. The
rerun reuses every component before the Trainer, trains, pushes one model, and the killed run's
Trainer never counts as a result.
"""

import os
import signal
import subprocess
import sys
import time

import pytest

from cli import runs
from imat_common.workdir import Workdir, latest_pushed_model
from tests.helpers import REPO

FLAGS = ["--num_images", "60", "--image_size", "75", "--train_steps", "40", "--batch_size", "8"]
FLAGS += ["--eval_batch_size", "16", "--micro_f1_lower_bound", "0", "--baseline_margin", "-1"]
BEFORE_TRAINER = {
    "ImportExampleGen",
    "StatisticsGen",
    "SchemaGen",
    "ImportSchemaGen",
    "ExampleValidator",
    "ValidationGate",
}


def _imat_run(workdir):
    return subprocess.Popen(
        [sys.executable, "-m", "cli.main", "run", "--workdir", workdir] + FLAGS,
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,  # its own process group: the kill takes Beam's workers too
    )


@pytest.mark.slow
def test_a_run_killed_during_the_trainer_finishes_from_the_cache_on_rerun(tmp_path):
    workdir = str(tmp_path / "work")
    first = _imat_run(workdir)
    lines = []
    try:
        for line in first.stdout:  # component_progress prints "Trainer ..." as the Trainer starts
            lines.append(line)
            if line.startswith("Trainer ..."):
                break
        assert lines and lines[-1].startswith("Trainer ..."), "".join(lines)[-3000:]
        time.sleep(10)  # inside the Trainer: TensorFlow imported, the model built or training
        os.killpg(first.pid, signal.SIGKILL)
    finally:
        first.kill()
        first.wait()
    work = Workdir(workdir)
    assert latest_pushed_model(work.serving) is None
    killed = runs.last_run(work.metadata)
    assert {e.component for e in killed if e.state == "COMPLETE"} >= {"ImportExampleGen", "Transform"}
    assert [e.state for e in killed if e.component == "Trainer"] == ["RUNNING"]  # what the kill left

    second = subprocess.run(
        [sys.executable, "-m", "cli.main", "run", "--workdir", workdir] + FLAGS,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=1200,
    )
    assert second.returncode == 0, second.stdout[-3000:] + second.stderr[-3000:]
    assert "reusing the demo data" in second.stdout
    rerun = runs.last_run(work.metadata)
    states = {e.component: e.state for e in rerun}
    assert {states[c] for c in BEFORE_TRAINER | {"Transform"}} == {"CACHED"}, states
    assert states["Trainer"] == "COMPLETE" and states["Pusher"] == "COMPLETE", states
    versions = [v for v in os.listdir(work.serving) if v.isdigit()]
    assert len(versions) == 1 and latest_pushed_model(work.serving) == os.path.join(work.serving, versions[0])
    assert "pushed model: " + os.path.join(work.serving, versions[0]) in second.stdout
    # The metadata store opens, and every execution is the killed run's or the rerun's.
    assert {e.run_id for e in runs.executions(work.metadata)} == {killed[0].run_id, rerun[0].run_id}
