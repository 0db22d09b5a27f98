"""The download benchmark's start-up breakdown: each module's import time goes to what brought it in."""

import subprocess
import sys

from benchmarks.download_benchmark import import_groups

# -X importtime's layout: each module after the modules it imports, two spaces deeper per level.
LOG = """import time: self [us] | cumulative | imported package
import time:       100 |        100 |           IPython
import time:        50 |        150 |         tqdm.notebook
import time:       200 |        350 |       google.cloud.bigquery
import time:        30 |        380 |     apache_beam.io.gcp.bigquery
import time:        10 |         10 |       pandas.core
import time:        20 |         30 |     pandas
import time:        40 |        450 |   apache_beam
import time:        70 |         70 |   aiohttp
import time:         5 |        525 | components.download.job
import time:         8 |          8 | encodings
"""


def test_each_module_goes_to_the_first_package_outside_beam_and_the_project():
    groups = {name: round(seconds * 1e6) for name, seconds in import_groups(LOG).items()}
    assert groups == {
        # IPython came through tqdm through google-cloud-bigquery, which Beam imported.
        "google.cloud.bigquery": 350,
        "apache_beam": 70,
        "pandas": 30,
        "aiohttp": 70,
        "this project": 5,
        "encodings": 8,
    }


def test_the_groups_of_a_real_run_add_up_to_every_module_once():
    log = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", "import json, email.parser"],
        capture_output=True,
        text=True,
        check=True,
    ).stderr
    own = [int(line.split("|")[0].split(":")[1]) for line in log.splitlines()[1:] if line.startswith("import time:")]
    groups = import_groups(log)
    assert groups["json"] > 0 and groups["email"] > 0
    assert abs(sum(groups.values()) - sum(own) / 1e6) < 1e-9
