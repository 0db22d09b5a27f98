"""Model code: features, preprocessing, model, data, thresholds, exporter and the Trainer's run_fn.

TFT and TFMA 1.16 need Keras 2 (tf-keras): the switch must be set before TensorFlow first
resolves ``tf.keras``, so it is set here as a default, in the one package every stage imports.
"""
import os

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
