"""Model code: settings, preprocessing, model, data, thresholds, exporter and the Trainer's run_fn."""

import imat_common.keras2  # noqa: F401  (chooses Keras 2 before TensorFlow loads)
