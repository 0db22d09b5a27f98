"""Serving signatures: raw bytes or serialized tf.Examples in, the Transform graph embedded.

Signatures of the exported SavedModel:
  serving_default     serialized tf.Examples (with ``image/encoded``) -> probabilities,
                      decisions (0/1 at each label's tuned threshold), label_ids and
                      label_names of the decided labels (padded with 0 / ""), and per row
                      ``ok`` and ``error`` (see below)
  predict_images      raw image bytes (JPEG) as clients send them -> the same outputs
  evaluate            serialized tf.Examples -> probabilities and decisions only (for TFMA)
  transform_features  serialized tf.Examples -> Transform's outputs, labels included (TFMA
                      applies it to get the dense multi-hot labels)
  embed_images        raw image bytes -> L2-normalised embedding (similar-product search)

Hostile images (``imat_common/image_policy.py``): serving_default and predict_images check each
row's header before the Transform graph decodes it. A refused row (empty, not an image, a
corrupt JPEG header, over the pixel limit, cut short) is decoded as a small blank image
instead, and its outputs are ``ok`` False, ``error`` the reason, zero probabilities and no
labels; the other rows are scored as if alone. evaluate and embed_images have no room for an
error per row: they fail the batch, naming each refused row, before decoding anything. Damage
only the decoder finds still fails the batch: callers retry row by row (``score_rows``).
"""

from typing import Optional, Sequence

import numpy as np
import tensorflow as tf
import tensorflow_transform as tft
import tf_keras as keras

from imat_common import features, image_policy
from imat_common.image_policy import ERROR, OK
from trainer.model import EMBEDDING_LAYER
from trainer.preprocessing import IMAGE_FEATURE
from imat_common.serving import (
    DECISIONS,
    EMBED_IMAGES,
    EMBEDDING,
    EVALUATE,
    LABEL_IDS,
    LABEL_NAMES,
    PREDICT_IMAGES,
    PROBABILITIES,
    SERVING_DEFAULT,
    TRANSFORM_FEATURES,
)


def decide(probabilities: tf.Tensor, thresholds: tf.Tensor, label_names: tf.Tensor) -> dict:
    """The serving outputs of probabilities [batch, labels]: decisions at ``thresholds``, their ids and names."""
    decided = probabilities >= thresholds
    ids = tf.range(1, tf.shape(probabilities)[1] + 1, dtype=tf.int64)
    return {
        PROBABILITIES: probabilities,
        DECISIONS: tf.cast(decided, tf.float32),
        LABEL_IDS: tf.where(decided, ids, tf.zeros_like(ids)),
        LABEL_NAMES: tf.where(decided, label_names, tf.fill(tf.shape(decided), "")),
    }


# Signature name -> the serving module's method; the ensemble's module has the same methods.
SIGNATURES = {
    SERVING_DEFAULT: "serve_examples",
    PREDICT_IMAGES: "serve_images",
    EVALUATE: "evaluate",
    TRANSFORM_FEATURES: "transform_features",
    EMBED_IMAGES: "embed_images",
}


def signatures_of(module: tf.Module) -> dict:
    """The module's serving signatures (``SIGNATURES``), traced."""
    return {name: getattr(module, method).get_concrete_function() for name, method in SIGNATURES.items()}


class ServingModule(tf.Module):
    """Holds the model, the Transform layer, thresholds and label names for export."""

    def __init__(
        self,
        model: keras.Model,
        tf_transform_output: tft.TFTransformOutput,
        thresholds: np.ndarray,
        label_names: Optional[Sequence[str]] = None,
    ):
        super().__init__()
        self.tft_layer = tf_transform_output.transform_features_layer()
        self._raw_spec = tf_transform_output.raw_feature_spec()
        num_labels = int(model.output_shape[-1])
        if len(thresholds) != num_labels:
            raise ValueError(f"{len(thresholds)} thresholds for {num_labels} labels")
        names = list(label_names) if label_names is not None else [str(i + 1) for i in range(num_labels)]
        self.thresholds = tf.Variable(np.asarray(thresholds, np.float32), trainable=False, name="thresholds")
        self.label_names = tf.Variable(names, trainable=False, name="label_names")
        # One traced call of the network, shared by every signature: tracing InceptionV3 once
        # per signature made export take minutes.
        core = keras.Model(model.inputs, [model.output, model.get_layer(EMBEDDING_LAYER).output])
        size = model.input_shape[1]
        self._infer = tf.function(
            lambda image: core(image, training=False),
            input_signature=[tf.TensorSpec([None, size, size, 3], tf.float32)],
        )
        # Track the weights, not the Keras model: saving a Keras model also traces every
        # layer's call for Keras' own loader, which serving never uses and costs a minute.
        self.weights = core.weights

    def _encoded_from_examples(self, serialized):
        """The image bytes of each example, [batch]; "" where an example has none (refused by the checks)."""
        spec = {features.IMAGE_KEY: tf.io.FixedLenFeature([1], tf.string, default_value=[""])}
        return tf.reshape(tf.io.parse_example(serialized, spec)[features.IMAGE_KEY], [-1])

    def _image_from_bytes(self, images):
        # Decoded by the Transform graph itself, as in training: serving cannot drift from it.
        return self.tft_layer({features.IMAGE_KEY: tf.reshape(images, [-1, 1])})[IMAGE_FEATURE]

    def _checked_image(self, images):
        """Transform's image of each row that passes the header checks (a blank one where it fails), ok, error."""
        safe, ok, error = image_policy.check_images(images)
        return self._image_from_bytes(safe), ok, error

    def _asserted_image(self, images):
        """Transform's images, after an op that fails the batch if a row fails the header checks."""
        with tf.control_dependencies([image_policy.assert_images(images)]):
            return self._image_from_bytes(tf.identity(images))

    def _outputs(self, image):
        return decide(tf.cast(self._infer(image)[0], tf.float32), self.thresholds, self.label_names)

    def _guarded_outputs(self, images):
        image, ok, error = self._checked_image(images)
        outputs = self._outputs(image)
        # A refused row says so, and carries no scores or labels a client could take for real.
        rows = tf.reshape(ok, [-1, 1])
        guarded = {k: tf.where(rows, v, tf.zeros_like(v)) for k, v in outputs.items()}
        return {**guarded, OK: ok, ERROR: error}

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="examples")])
    def serve_examples(self, examples):
        return self._guarded_outputs(self._encoded_from_examples(examples))

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="images")])
    def serve_images(self, images):
        return self._guarded_outputs(images)

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="examples")])
    def evaluate(self, examples):
        outputs = self._outputs(self._asserted_image(self._encoded_from_examples(examples)))
        return {PROBABILITIES: outputs[PROBABILITIES], DECISIONS: outputs[DECISIONS]}

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="examples")])
    def transform_features(self, examples):
        return self.tft_layer(tf.io.parse_example(examples, self._raw_spec))

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="images")])
    def embed_images(self, images):
        embedding = tf.cast(self._infer(self._asserted_image(images))[1], tf.float32)
        return {EMBEDDING: tf.math.l2_normalize(embedding, axis=-1)}

    def signatures(self):
        return signatures_of(self)


def export(
    model: keras.Model,
    tf_transform_output: tft.TFTransformOutput,
    thresholds: np.ndarray,
    serving_dir: str,
    label_names: Optional[Sequence[str]] = None,
) -> None:
    """Saves the model with its serving signatures, without optimizer state."""
    module = ServingModule(model, tf_transform_output, thresholds, label_names)
    # tf.saved_model.save of the module, not model.save: no optimizer slots (Adam keeps two per
    # trainable weight; measured: docs/benchmarks.md, "SavedModel size"), and every signature
    # shares one set of weights.
    tf.saved_model.save(module, serving_dir, signatures=module.signatures())
