"""The image networks a model can start from, each with its own input scaling.

Transform gives every model the same image, float32 in [-1, 1] (InceptionV3's scaling). Each
backbone's own scaling is the first step of the model, so it is inside the serving graph,
and the members of an ensemble, whatever their backbones, share one Transform graph.
"""

import dataclasses
from typing import Callable

import tensorflow as tf
import tf_keras as keras


def _identity(image):
    return image


def _pixels(image):
    # [-1, 1] -> [0, 255]: what EfficientNetV2 and MobileNetV3 scale inside themselves.
    return (image + 1.0) * 127.5


def _caffe(image):
    # ResNet50's ImageNet weights take BGR pixels less the ImageNet mean.
    return keras.applications.resnet50.preprocess_input(_pixels(image))


@dataclasses.dataclass(frozen=True)
class Backbone:
    """One ``keras.applications`` network without its top.

    Attributes:
      build: ``keras.applications`` constructor.
      scale: [-1, 1] image -> the input the ImageNet weights expect.
      min_size: the smallest square input it accepts.
      fine_tune_from: first layer unfrozen in phase two by default: the last blocks.
    """

    build: Callable[..., keras.Model]
    scale: Callable[[tf.Tensor], tf.Tensor]
    min_size: int
    fine_tune_from: str


BACKBONES = {
    "inception_v3": Backbone(keras.applications.InceptionV3, _identity, 75, "mixed9"),
    "xception": Backbone(keras.applications.Xception, _identity, 71, "block13_sepconv1_act"),
    "resnet50": Backbone(keras.applications.ResNet50, _caffe, 32, "conv5_block1_1_conv"),
    "efficientnetv2b0": Backbone(keras.applications.EfficientNetV2B0, _pixels, 32, "block6a_expand_conv"),
    "mobilenetv3small": Backbone(keras.applications.MobileNetV3Small, _pixels, 32, "expanded_conv_9/expand"),
}


def get_backbone(name: str) -> Backbone:
    """The registered backbone ``name``.

    Raises:
      ValueError: an unknown name.
    """
    if name not in BACKBONES:
        raise ValueError(f"unknown backbone {name!r}: use one of {', '.join(BACKBONES)}")
    return BACKBONES[name]
