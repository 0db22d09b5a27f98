#!/usr/bin/env bash
# img2dataset in its own venv (Python 3.11), from img2dataset.lock: exact versions of every package,
# so the comparison does not drift with whatever TensorFlow is newest on the day.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
venv="$here/work/i2d-venv"
py="${PYTHON311:-$(command -v python3.11 || echo python3)}"
"$py" -m venv "$venv"
"$venv/bin/pip" install -q --disable-pip-version-check uv==0.13.8
"$venv/bin/uv" pip install -q --python "$venv/bin/python" -r "$here/img2dataset.lock"
echo "img2dataset: $venv/bin/img2dataset"
