"""Slow end-to-end check of the download job as users run it: `imat demo` (interruptions: test_download_interrupt)."""

import os
import subprocess
import sys

import pytest

from tests.helpers import REPO, read_examples
from imat_common import features


@pytest.mark.slow
def test_imat_demo_downloads_every_demo_image(tmp_path):
    result = subprocess.run(
        [os.path.join(os.path.dirname(sys.executable), "imat"), "demo", "--num_images=40", f"--workdir={tmp_path}"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert (
        "train: 28/28 ok" in result.stdout and "validation: 8/8 ok" in result.stdout and "test: 4/4 ok" in result.stdout
    )
    examples = read_examples(os.path.join(tmp_path, "data"), "train")
    assert len(examples) == 28
    assert all(len(e.features.feature[features.LABELS_KEY].int64_list.value) in (3, 4) for e in examples)
