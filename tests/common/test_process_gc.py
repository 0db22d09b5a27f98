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
    # As the `imat` script runs: main() reads the process's own command line.
    code = (
        "import gc, sys\n"
        "sys.argv = ['imat', 'download', '--help']\n"
        "from cli import main\n"
        "try:\n"
        "    main.main()\n"
        "except SystemExit as e:\n"
        "    print('exit', e.code, 'frozen', gc.get_freeze_count(), 'enabled', gc.isenabled(), file=sys.stderr)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    words = out.stderr.strip().splitlines()[-1].split()
    assert words[:2] == ["exit", "0"] and words[4:] == ["enabled", "True"], out.stderr[-2000:]
    # Beam's, the Google clients' and pandas' objects, at least.
    assert int(words[3]) > 100_000
