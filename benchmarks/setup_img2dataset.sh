#!/usr/bin/env bash
# img2dataset in its own venv (Python 3.11, its own pins), with TensorFlow for its TFRecord writer.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
venv="$here/work/i2d-venv"
py="${PYTHON311:-$(command -v python3.11 || echo python3)}"
"$py" -m venv "$venv"
"$venv/bin/pip" install -q uv
"$venv/bin/uv" pip install -q --python "$venv/bin/python" "img2dataset==1.47.0" tensorflow-cpu tensorflow-io
echo "img2dataset: $venv/bin/img2dataset"
