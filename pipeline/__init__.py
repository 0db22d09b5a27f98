"""The TFX pipeline: configuration, DAG, runners and the ``imat`` command line.

Keras 2 (tf-keras) must be chosen before TensorFlow first resolves ``tf.keras``; see trainer/__init__.py.
"""
import os

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
