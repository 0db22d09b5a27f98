"""The one place that chooses Keras 2 (tf-keras) for this project's processes.

TFT and TFMA 1.16 support Keras 2 only. TensorFlow reads ``TF_USE_LEGACY_KERAS`` when
``tf.keras`` is first resolved, so importing this module sets it, and the packages that lead
to TensorFlow (``trainer``, ``pipeline``, ``components``, ``cli``) import it from their
``__init__``, before any of their modules imports TensorFlow; so do the test fixtures and the
benchmarks. A value the user set is kept. The pipeline image sets the same variable in its
environment (kubeflow/Dockerfile): TFX's executors load TensorFlow before they import this
project's code. Side tools that benchmarks start (img2dataset) get
an environment without it (``benchmarks/download_benchmark.py``, ``clean_env``).
"""

import os

VARIABLE = "TF_USE_LEGACY_KERAS"
os.environ.setdefault(VARIABLE, "1")
