"""Slow end-to-end checks of the download job as users run it: a real Ctrl-C, and `imat demo`."""
import glob
import json
import os
import signal
import subprocess
import sys
import time

import pytest

from tests.test_download_job import FAST, read_examples
from trainer import features

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.mark.slow
def test_ctrl_c_then_rerun_keeps_finished_shards_and_fetches_the_rest(tmp_path, fault_server):
    n = 12
    source = tmp_path / "train.json"
    source.write_text(json.dumps({
        "images": [{"imageId": str(i), "url": fault_server.url(f"/slow/{i}.jpg")} for i in range(n)],
        "annotations": [{"imageId": str(i), "labelId": [str(i % 4 + 1)]} for i in range(n)]}))
    out = str(tmp_path / "out")
    cmd = [sys.executable, "-m", "components.download.job", f"--input=train={source}", f"--output={out}",
           "--images_per_shard=2", "--concurrency=1"] + FAST
    # As from a terminal: a runner started in the background (nohup, `&`) hands its children
    # SIGINT ignored, and then Python never raises KeyboardInterrupt.
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    status_glob = os.path.join(out, "_status", "train", "part-*.jsonl")
    deadline = time.monotonic() + 120
    while not glob.glob(status_glob) and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=60) != 0, "the job finished before Ctrl-C; nothing was interrupted"
    done = {os.path.basename(p) for p in glob.glob(status_glob)}
    assert 1 <= len(done) < n // 2
    hits_before = sum(v for k, v in fault_server.hits.items() if k.startswith("/slow/"))

    rerun = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    hits_after = sum(v for k, v in fault_server.hits.items() if k.startswith("/slow/"))
    assert hits_after - hits_before == 2 * (n // 2 - len(done))  # only the shards without a status file
    ids = sorted(int(e.features.feature[features.IMAGE_ID_KEY].bytes_list.value[0]) for e in read_examples(out, "train"))
    assert ids == list(range(n))


@pytest.mark.slow
def test_imat_demo_downloads_every_demo_image(tmp_path):
    result = subprocess.run([os.path.join(os.path.dirname(sys.executable), "imat"), "demo", "--num_images=40",
                             f"--workdir={tmp_path}"], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "train: 28/28 ok" in result.stdout and "validation: 8/8 ok" in result.stdout and "test: 4/4 ok" in result.stdout
    examples = read_examples(os.path.join(tmp_path, "data"), "train")
    assert len(examples) == 28
    assert all(len(e.features.feature[features.LABELS_KEY].int64_list.value) in (3, 4) for e in examples)
