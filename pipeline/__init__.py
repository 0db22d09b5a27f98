"""The TFX pipeline: its configuration, the DAG, its custom component wiring and its runners
(local, Kubeflow Pipelines v2 / Vertex AI). The commands that drive it are in ``cli/``."""

import imat_common.keras2  # noqa: F401  (chooses Keras 2 before TensorFlow loads)
