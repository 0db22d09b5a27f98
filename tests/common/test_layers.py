"""Imports run down the layers only: imat_common < trainer < components < pipeline < cli."""

import ast
import glob
import os

import pytest
from tests.helpers import REPO

LAYERS = ("imat_common", "trainer", "components", "pipeline", "cli")
# The download job's workers must not load the model package: it reads only itself and imat_common.
DOWNLOAD_MAY_IMPORT = ("components.download", "imat_common")


def _project_imports(path):
    """(line, module) of every import of a project package in ``path``, function-level ones included."""
    for node in ast.walk(ast.parse(open(path).read())):
        names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        for name in names:
            if name.split(".")[0] in LAYERS:
                yield node.lineno, name


def _files(package):
    return sorted(glob.glob(os.path.join(REPO, package, "**", "*.py"), recursive=True))


@pytest.mark.parametrize("layer", LAYERS)
def test_no_package_imports_a_higher_layer(layer):
    allowed = LAYERS[: LAYERS.index(layer) + 1]
    assert _files(layer)
    upward = [
        f"{os.path.relpath(path, REPO)}:{line} imports {name}"
        for path in _files(layer)
        for line, name in _project_imports(path)
        if name.split(".")[0] not in allowed
    ]
    assert upward == []


def test_the_download_job_imports_only_itself_and_the_shared_names():
    files = _files("components/download")
    assert len(files) > 5
    other = [
        f"{os.path.relpath(path, REPO)}:{line} imports {name}"
        for path in files
        for line, name in _project_imports(path)
        if not name.startswith(DOWNLOAD_MAY_IMPORT)
    ]
    assert other == []


def test_kubeflow_holds_no_python_that_would_shadow_the_kubeflow_sdk():
    # Installed or on sys.path, a `kubeflow` package of ours would hide the official SDK's.
    assert os.path.exists(os.path.join(REPO, "kubeflow", "Dockerfile"))
    assert glob.glob(os.path.join(REPO, "kubeflow", "**", "*.py"), recursive=True) == []


def test_the_image_build_context_holds_everything_the_dockerfile_copies():
    copied = []
    for line in open(os.path.join(REPO, "kubeflow", "Dockerfile")):
        words = line.split()
        if words[:1] == ["COPY"] and not any(w.startswith("--from") for w in words):
            copied += [w.rstrip("/") for w in words[1:-1]]
    allowed = {
        line.strip()[1:].rstrip("/") for line in open(os.path.join(REPO, ".dockerignore")) if line.startswith("!")
    }
    assert "imat_common" in copied and "cli" in copied
    assert sorted(set(copied) - allowed) == []
    # Every package setup.py installs is copied, so the image's editable install finds them all.
    assert set(LAYERS) <= set(copied)
