"""Similar-product search: embed a catalogue with the trained model, index it, query it.

Keras 2 (tf_keras) is what the rest of the project uses: set before TensorFlow is imported.
"""
import os

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
