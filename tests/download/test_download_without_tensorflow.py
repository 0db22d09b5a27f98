"""The download job runs where TensorFlow cannot be imported: its workers need Beam, aiohttp, Pillow and OpenCV only."""

import os
import subprocess
import sys

import pytest

from cli import demo_data
from tests.helpers import REPO, read_examples

# Any import of TensorFlow or Keras fails; a library that tries one and copes is fine, one that needs it is not.
BLOCKED_JOB = """
import sys

class NoTensorFlow:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("tensorflow", "tf_keras", "keras", "tensorflow_transform"):
            raise ImportError(name + " is blocked in this process")

sys.meta_path.insert(0, NoTensorFlow())
from components.download import job
job.run(sys.argv[1:])
loaded = sorted(m for m in sys.modules if m.split(".")[0] in ("tensorflow", "tf_keras", "keras"))
assert not loaded, loaded
"""


@pytest.mark.slow
def test_the_download_job_runs_with_tensorflow_unimportable(tmp_path):
    source, out = str(tmp_path / "source"), str(tmp_path / "data")
    demo_data.write_images(source, 12, size=64, seed=4)
    with demo_data.serve_folder(source) as base:
        paths = demo_data.write_json(source, base)
        env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
        result = subprocess.run(
            [sys.executable, "-c", BLOCKED_JOB]
            + [f"--input={k}={v}" for k, v in paths.items()]
            + [f"--output={out}", f"--label_map={os.path.join(source, 'label_map.csv')}", "--allow_private_networks"],
            cwd=REPO,
            env={**env, "PYTHONPATH": REPO},
            capture_output=True,
            text=True,
            timeout=300,
        )
    assert result.returncode == 0, result.stderr[-3000:]
    stored = sum(len(read_examples(out, split)) for split in paths)
    assert stored == 12
