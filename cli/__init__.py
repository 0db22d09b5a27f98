"""The ``imat`` commands (``cli/main.py`` dispatches), one module each, with the demo data
generator and the local run readers they share. The pipeline itself is in ``pipeline/``."""

import imat_common.keras2  # noqa: F401  (chooses Keras 2 before TensorFlow loads)
