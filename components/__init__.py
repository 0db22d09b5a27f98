"""Custom TFX components and the Beam jobs beside the DAG: download, similar-product index,
calibration split, validation gate, baseline, ensembler."""

import imat_common.keras2  # noqa: F401  (chooses Keras 2 before TensorFlow loads)
