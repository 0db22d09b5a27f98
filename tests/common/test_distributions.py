"""While imat imports a command in its own process, the installed distributions are scanned once."""

import importlib.metadata

import pytest

from imat_common import distributions
from tests.helpers import imat_download_help


@pytest.fixture
def counted(monkeypatch):
    """Counts the scans of the real ``packages_distributions`` (put back by monkeypatch after the test)."""
    real, calls = importlib.metadata.packages_distributions, []

    def scan():
        calls.append(1)
        return real()

    monkeypatch.setattr(importlib.metadata, "packages_distributions", scan)
    return calls


def test_one_scan_answers_every_call_with_its_own_copy(counted):
    expected = importlib.metadata.packages_distributions()
    assert len(counted) == 1 and expected
    with distributions.scanned_once():
        first = importlib.metadata.packages_distributions()
        first.clear()
        name = next(iter(expected))
        second = importlib.metadata.packages_distributions()
        second[name].append("changed by a caller")
        third = importlib.metadata.packages_distributions()
    assert len(counted) == 2  # one scan inside the block, for three calls
    assert third == expected and second != expected


def test_the_function_is_put_back_even_when_an_import_fails(counted):
    wrapped = importlib.metadata.packages_distributions
    with pytest.raises(ImportError):
        with distributions.scanned_once():
            assert importlib.metadata.packages_distributions is not wrapped
            importlib.import_module("imat_common.no_such_module")
    assert importlib.metadata.packages_distributions is wrapped
    importlib.metadata.packages_distributions()
    importlib.metadata.packages_distributions()
    assert len(counted) == 2  # outside the block every call scans again


def _scans(own_process: bool) -> int:
    """Scans made by ``imat download --help`` in a fresh interpreter, by its own command line or in-process."""
    count = "import importlib.metadata as m\nreal, calls = m.packages_distributions, []\n"
    count += "m.packages_distributions = lambda: calls.append(1) or real()"
    scans, bigquery_imported = imat_download_help(
        "len(calls), 'google.cloud.bigquery' in sys.modules", before=count, own_process=own_process
    )
    assert bigquery_imported == "True"  # the command did import the Google clients that ask
    return int(scans)


def test_the_imat_process_scans_once_where_an_in_process_call_scans_for_each_client():
    assert _scans(own_process=True) == 1
    assert _scans(own_process=False) > 1
