"""A command's own process imports with the garbage collector set aside; in-process callers keep theirs."""

import gc
import importlib
import os
import subprocess
import sys
import weakref

import pytest

from cli import main as imat
from imat_common import process_gc

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


class _Node:
    pass


def _cycle() -> _Node:
    node = _Node()
    node.self = node  # only the cycle collector can free it
    return node


@pytest.fixture
def thawed():
    """Gives the test process its collector back as it was: nothing this test froze stays frozen."""
    was_enabled = gc.isenabled()
    yield
    gc.unfreeze()
    (gc.enable if was_enabled else gc.disable)()


def test_garbage_of_the_imports_is_collected_and_the_rest_frozen(thawed):
    with process_gc.imports_set_aside():
        assert not gc.isenabled()
        kept, garbage = _cycle(), _cycle()
        collected = weakref.ref(garbage)
        del garbage
    assert gc.isenabled()
    assert collected() is None
    assert gc.get_freeze_count() > 0
    assert not any(obj is kept for obj in gc.get_objects())  # frozen: no collection walks it


def test_the_collector_is_restored_as_it_was_even_when_an_import_fails(thawed):
    gc.disable()
    with pytest.raises(ImportError):
        with process_gc.imports_set_aside():
            importlib.import_module("imat_common.no_such_module")
    assert not gc.isenabled()
    gc.enable()
    with pytest.raises(ImportError):
        with process_gc.imports_set_aside():
            importlib.import_module("imat_common.no_such_module")
    assert gc.isenabled()


def test_a_command_called_in_process_leaves_the_collector_alone(thawed, capsys):
    gc.unfreeze()
    with pytest.raises(SystemExit) as exit_info:
        imat.main(["download", "--help"])
    assert exit_info.value.code == 0
    assert "--input" in capsys.readouterr().out
    assert gc.get_freeze_count() == 0 and gc.isenabled()


def test_the_imat_process_sets_its_imports_aside():
    # As the `imat` script runs: main() reads the process's own command line. The command's own module
    # (cli.download, which imports the job) must be imported inside the set-aside block, not after it.
    code = (
        "import gc, sys\n"
        "sys.argv = ['imat', 'download', '--help']\n"
        "from cli import main\n"
        "try:\n"
        "    main.main()\n"
        "except SystemExit as e:\n"
        "    command = sys.modules['cli.download'].main\n"
        "    walked = any(obj is command for obj in gc.get_objects())\n"
        "    print('RESULT', e.code, gc.get_freeze_count(), gc.isenabled(), walked)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    results = [line.split()[1:] for line in out.stdout.splitlines() if line.startswith("RESULT ")]
    assert len(results) == 1, out.stdout[-2000:] + out.stderr[-2000:]
    code, frozen, enabled, walked = results[0]
    assert (code, enabled, walked) == ("0", "True", "False")
    # Beam's, the Google clients' and pandas' objects, at least.
    assert int(frozen) > 100_000
