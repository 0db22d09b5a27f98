"""A command's own process imports with the garbage collector set aside; in-process callers keep theirs."""

import gc
import importlib
import weakref

import pytest

from cli import main as imat
from imat_common import process_gc
from tests.helpers import imat_download_help


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
    walked = "any(obj is sys.modules['cli.download'].main for obj in gc.get_objects())"
    code, frozen, enabled, walked = imat_download_help(
        f"e.code, gc.get_freeze_count(), gc.isenabled(), {walked}", before="import gc"
    )
    assert (code, enabled, walked) == ("0", "True", "False")
    # Beam's, the Google clients' and pandas' objects, at least.
    assert int(frozen) > 100_000
