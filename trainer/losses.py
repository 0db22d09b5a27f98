"""Training losses for one sigmoid per label: binary cross-entropy, focal, asymmetric (ASL).

All take probabilities (the model's sigmoid outputs) and return one value per example, the
mean over labels, like Keras' ``BinaryCrossentropy``: the learning rates stay comparable.
"""

import tensorflow as tf
import tf_keras as keras

LOSSES = ("bce", "focal", "asl")
FOCAL_GAMMA = 2.0  # Lin et al. 2017's default, Keras' too
# Ridnik et al. 2021 (ASL), their defaults for multi-label: negatives focused hard and
# shifted by 0.05 (easy negatives count for nothing), positives plain cross-entropy.
ASL_GAMMA_NEG, ASL_GAMMA_POS, ASL_CLIP = 4.0, 0.0, 0.05
_EPSILON = 1e-7


class AsymmetricLoss(keras.losses.Loss):
    """Asymmetric loss (ASL, ICCV 2021) on probabilities.

    For probability p and label y of one label::

        positive:  -(1 - p) ** gamma_pos * log(p)
        negative:  -p_m ** gamma_neg * log(1 - p_m),   p_m = max(p - clip, 0)

    The paper sums over labels; this averages them (see the module's docstring).
    """

    def __init__(
        self,
        gamma_neg: float = ASL_GAMMA_NEG,
        gamma_pos: float = ASL_GAMMA_POS,
        clip: float = ASL_CLIP,
        name: str = "asymmetric_loss",
        **kwargs,
    ):
        super().__init__(name=name, **kwargs)
        self.gamma_neg, self.gamma_pos, self.clip = gamma_neg, gamma_pos, clip

    def call(self, y_true, y_pred):
        y_true = tf.cast(y_true, y_pred.dtype)
        p = tf.clip_by_value(y_pred, _EPSILON, 1.0 - _EPSILON)
        p_m = tf.maximum(p - self.clip, 0.0) if self.clip else p
        positive = tf.pow(1.0 - p, self.gamma_pos) * tf.math.log(p)
        negative = tf.pow(p_m, self.gamma_neg) * tf.math.log(tf.maximum(1.0 - p_m, _EPSILON))
        return -tf.reduce_mean(y_true * positive + (1.0 - y_true) * negative, axis=-1)

    def get_config(self):
        return {**super().get_config(), "gamma_neg": self.gamma_neg, "gamma_pos": self.gamma_pos, "clip": self.clip}


def get_loss(name: str) -> keras.losses.Loss:
    """The loss called ``name``: "bce", "focal" or "asl".

    Raises:
      ValueError: an unknown name.
    """
    if name == "bce":
        return keras.losses.BinaryCrossentropy()
    if name == "focal":
        return keras.losses.BinaryFocalCrossentropy(gamma=FOCAL_GAMMA)
    if name == "asl":
        return AsymmetricLoss()
    raise ValueError(f"unknown loss {name!r}: use one of {', '.join(LOSSES)}")
