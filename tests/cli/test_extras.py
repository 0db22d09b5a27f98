"""Optional extras: a command without one names the install command; tests without one skip, except in CI."""

import sys

import pytest

from cli import compile as compile_command
from tests import helpers

BASE = ["--project", "p", "--region", "europe-west4", "--image", "img", "--pipeline_root", "gs://bkt/pipeline"]
BASE += ["--data", "gs://bkt/data", "--label_map", "gs://bkt/label_map.csv", "--num_labels", "228"]


def test_without_kfp_compile_names_the_extra_to_install(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "kfp.pipeline_spec", None)  # as if kfp were not installed
    with pytest.raises(SystemExit) as e:
        compile_command.main(BASE + ["--output_dir", str(tmp_path), "--serving_dir", "gs://bkt/s"])
    assert e.value.code == 2 and "pip install -e '.[kubeflow]'" in capsys.readouterr().err


@pytest.mark.parametrize("ci", ["true", ""])
def test_a_missing_extra_skips_with_the_install_command_except_in_ci(monkeypatch, ci):
    monkeypatch.setenv("CI", ci)
    mark = helpers.needs("no_such_module_imat", "similar")
    assert mark.name == "skipif" and mark.args == (not ci,)  # in CI it runs, and fails on the import
    assert "pip install -e '.[similar]'" in mark.kwargs["reason"] and "CI=true" in mark.kwargs["reason"]
    assert helpers.needs("json", "similar").args == (False,)  # present: always runs


def test_import_extra_skips_the_module_or_fails_in_ci(monkeypatch):
    monkeypatch.setenv("CI", "")
    with pytest.raises(pytest.skip.Exception, match=r"pip install -e '\.\[kubeflow\]'"):
        helpers.import_extra("no_such_module_imat", "kubeflow")
    monkeypatch.setenv("CI", "true")
    with pytest.raises(ImportError):
        helpers.import_extra("no_such_module_imat", "kubeflow")
