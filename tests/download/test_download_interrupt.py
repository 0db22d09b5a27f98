"""Killing the download job mid-shard, then rerunning it: readers of the split pattern see every
image exactly once and never a partial shard, and no secret of the URLs stays on disk."""

import glob
import json
import os
import signal
import subprocess
import sys

import pytest

from tests.download.test_redact import files_holding
from tests.helpers import REPO, FAST, example_ids, read_examples, write_json

N, PER_SHARD = 12, 4
SECRETS = ("pw-s3cr3t", "tok-s3cr3t")


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGINT], ids=["SIGKILL", "SIGINT"])
def test_killed_mid_shard_then_rerun_stores_every_image_exactly_once(tmp_path, fault_server, sig):
    # One shard's images are served; the next image's request waits until the test lets it go.
    fault_server.hold_after(PER_SHARD)
    source = write_json(
        tmp_path / "train.json",
        # Secret-bearing URLs: the shard plans hold them as given while the job runs.
        {
            str(i): fault_server.url(f"/held/{i}.jpg?token=tok-s3cr3t").replace("http://", "http://al:pw-s3cr3t@")
            for i in range(N)
        },
        {str(i): [i % 4 + 1] for i in range(N)},
    )
    out = str(tmp_path / "out")
    # A held request must outlive the wait for the signal, however loaded the machine.
    cmd = (
        [
            sys.executable,
            "-m",
            "components.download.job",
            f"--input=train={source}",
            f"--output={out}",
            f"--images_per_shard={PER_SHARD}",
            "--concurrency=1",
        ]
        + FAST
        + ["--deadline_s=300", "--attempt_timeout_s=300"]
    )
    # As from a terminal: a runner started in the background (nohup, `&`) hands its children
    # SIGINT ignored, and then Python never raises KeyboardInterrupt.
    proc = subprocess.Popen(
        cmd,
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    status_glob = os.path.join(out, "_status", "train", "part-*.jsonl")
    partial_glob = os.path.join(out, "_tmp", "train", "*.partial")
    # One fetch at a time, and a shard's files are in place before the next shard's first request:
    # its status file renamed in, the next shard's partial file open.
    assert fault_server.holding.wait(timeout=300), "the job never asked for the next shard's first image"
    assert len(glob.glob(status_glob)) == 1 and glob.glob(partial_glob)
    proc.send_signal(sig)
    try:
        stderr = proc.communicate(timeout=60)[1]
    finally:
        fault_server.release()
    assert proc.returncode != 0, "the job finished before the signal; nothing was interrupted"

    done = len(glob.glob(status_glob))
    assert 1 <= done < N // PER_SHARD and glob.glob(partial_glob), "not killed mid-shard"
    # Right after the kill, the split pattern already holds only whole shards.
    assert example_ids(read_examples(out, "train")) == sorted(str(i) for i in _ids_of_done_shards(out))
    if sig == signal.SIGINT:
        assert proc.returncode == 130 and "Traceback" not in stderr
        last = stderr.strip().splitlines()[-1]
        assert last.startswith(
            f"python -m components.download.job: error: interrupted: {done} of 3 shards are "
            f"finished and kept in {out} ({done * PER_SHARD} images stored); rerun the same "
            f"command to resume: python -m components.download.job --input=train={source}"
        ), last
    plans = glob.glob(os.path.join(out, "_plan", "train", "part-*.jsonl"))
    if sig == signal.SIGINT:  # the job ends on its own terms: no plan left, so no secret on disk
        assert plans == [] and files_holding(out, SECRETS) == []
    else:  # killed outright: only the unfinished shards' plans are left, until the rerun
        assert len(plans) == N // PER_SHARD - done and set(files_holding(out, SECRETS)) == set(plans)
    hits_before = sum(v for k, v in fault_server.hits.items() if k.startswith("/held/"))

    rerun = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    hits_after = sum(v for k, v in fault_server.hits.items() if k.startswith("/held/"))
    assert hits_after - hits_before == PER_SHARD * (N // PER_SHARD - done)  # only the unfinished shards
    assert example_ids(read_examples(out, "train")) == sorted(str(i) for i in range(N))  # each exactly once
    assert glob.glob(partial_glob) == []
    assert files_holding(out, SECRETS) == []  # the rerun's plans went with it


def _ids_of_done_shards(out):
    ids = []
    for path in glob.glob(os.path.join(out, "_status", "train", "part-*.jsonl")):
        with open(path) as f:
            ids += [json.loads(line)["image_id"] for line in f if line.strip()]
    return ids
