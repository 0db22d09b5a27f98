"""One run per pipeline root: a second run stops in one line; a killed holder leaves no stale lock."""

import os
import signal
import subprocess
import sys

import pytest

from cli import main as imat
from imat_common.run_lock import RunLockedError, run_lock
from tests.helpers import REPO

HOLD = """
import sys, time
from imat_common.run_lock import run_lock
with run_lock(sys.argv[1]):
    print("held", flush=True)
    time.sleep(600)  # killed by the test
"""


def _holder(root):
    proc = subprocess.Popen([sys.executable, "-c", HOLD, root], cwd=REPO, stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "held"
    return proc


def test_a_second_run_on_the_same_root_stops_naming_the_holder_and_a_killed_holder_frees_it(tmp_path):
    root = str(tmp_path / "pipeline")
    holder = _holder(root)
    try:
        with pytest.raises(RunLockedError, match=f"process {holder.pid}.*running on {root}.*--workdir"):
            with run_lock(root):
                pass
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    with run_lock(root):  # SIGKILL released it: no stale lock to remove by hand
        assert open(os.path.join(root, "run.lock")).read() == str(os.getpid())
    with run_lock(root):  # and this process's own lock is released on leaving
        pass


def test_imat_run_on_a_busy_workdir_is_a_user_error_and_leaves_the_other_run_alone(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with open("lm.csv", "w") as f:
        f.write("labelId,taskId,labelName,taskName\n1,1,a,t\n2,1,b,t\n")
    os.makedirs("d")
    holder = _holder(str(tmp_path / "w" / "pipeline"))
    try:
        with pytest.raises(SystemExit) as e:
            imat.main(["run", "--data", "d", "--label_map", "lm.csv", "--workdir", "w", "--weights", "none"])
        err = capsys.readouterr().err
        assert e.value.code == 2 and err.count("\n") == 1 and f"process {holder.pid}" in err
        assert holder.poll() is None  # stopped at once; the holder runs on
    finally:
        holder.kill()
        holder.wait()
