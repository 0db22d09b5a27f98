"""The commands' logging: a progress line per component from TFX's records, and the global -v flag."""

import io
import logging
import subprocess
import sys

import pytest
from absl import logging as absl_logging

from cli import logs
from tests.helpers import REPO


@pytest.fixture
def quiet_absl():
    """The ``absl`` logger at WARNING, as a command leaves it without -v."""
    logger = absl_logging.get_absl_logger()
    level, verbosity, filters = logger.level, absl_logging.get_verbosity(), list(logger.filters)
    absl_logging.set_verbosity(absl_logging.WARNING)
    yield logger
    assert logger.filters == filters  # what the test ran left no filter behind
    absl_logging.set_verbosity(verbosity)
    logger.setLevel(level)


def test_component_progress_prints_a_line_per_start_and_end_and_keeps_the_rest_quiet(quiet_absl, caplog):
    out = io.StringIO()
    with logs.component_progress(out):
        # What LocalDagRunner logs around a component, with library INFO and a warning between.
        absl_logging.info("Component %s is running.", "Trainer")
        absl_logging.info("Using deployment config:\n %s", "executor_specs { ... }")
        absl_logging.warning("something to act on")
        # What TensorFlow does around every SavedModel it writes (Transform, Trainer).
        verbosity = absl_logging.get_verbosity()
        absl_logging.set_verbosity(absl_logging.FATAL)
        absl_logging.set_verbosity(verbosity)
        absl_logging.info("Component %s is finished.", "Trainer")
    lines = out.getvalue().splitlines()
    assert lines[0] == "Trainer ..." and len(lines) == 2
    assert lines[1].startswith("Trainer done in ") and lines[1].endswith(" s")
    assert [r.getMessage() for r in caplog.records if r.name == "absl"] == ["something to act on"]
    assert quiet_absl.level == logging.WARNING  # put back as it was (the fixture checks the filters)


def test_component_progress_passes_library_info_on_when_verbose(quiet_absl, caplog):
    quiet_absl.setLevel(logging.INFO)
    with logs.component_progress(io.StringIO()):
        absl_logging.info("Using deployment config: %s", "x")
    assert [r.getMessage() for r in caplog.records if r.name == "absl"] == ["Using deployment config: x"]


@pytest.mark.parametrize("argv", [["-v", "demo-data"], ["demo-data", "--verbose"]], ids=["before", "after"])
def test_verbose_flag_is_global(tmp_path, argv):
    result = subprocess.run(
        [sys.executable, "-m", "cli.main"] + argv + ["--out", str(tmp_path), "--num_images=3"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.startswith("wrote 3 images in ")


CONFIGURE_AND_LOG = """
import logging, sys
from absl import logging as absl_logging
from cli import logs
logs.configure(verbose=sys.argv[1] == "verbose")
absl_logging.info("Using deployment config: %s", "a protobuf dump")
logging.getLogger("apache_beam.typehints").info("Using Any for unsupported type")
logging.getLogger("tensorflow").warning(
    "From %s: f (from m) is deprecated and will be removed in a future version.", "x.py"
)
absl_logging.warning("ArtifactQuery.property_predicate is not supported.")
logging.getLogger("tensorflow").warning("a warning to act on")
logging.getLogger("components.download.shard").info("train shard 1/3 written")
"""


@pytest.mark.parametrize("mode", ["quiet", "verbose"])
def test_configure_keeps_warnings_and_own_info_and_drops_library_info_unless_verbose(mode):
    result = subprocess.run(
        [sys.executable, "-c", CONFIGURE_AND_LOG, mode], cwd=REPO, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    lines = result.stderr.splitlines()
    assert sum("a warning to act on" in x for x in lines) == 1 and sum("shard 1/3 written" in x for x in lines) == 1
    library = ("protobuf dump", "unsupported type", "is deprecated", "property_predicate")
    assert [any(x in line for line in lines) for x in library] == [mode == "verbose"] * len(library)
    if mode == "quiet":
        assert len(lines) == 2, lines


CONFIGURE_TWICE = """
import logging
from absl import logging as absl_logging
from cli import logs
for verbose in (False, False, True, False):
    logs.configure(verbose=verbose)
    print(sum(type(f).__name__ == "_DropHarmless" for f in absl_logging.get_absl_logger().filters),
          sum(type(f).__name__ == "_DropHarmless" for f in logging.getLogger("tensorflow").filters))
"""


def test_configure_called_again_keeps_one_filter_per_logger_and_verbose_removes_it():
    result = subprocess.run(
        [sys.executable, "-c", CONFIGURE_TWICE], cwd=REPO, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split("\n")[:4] == ["1 1", "1 1", "0 0", "1 1"]
