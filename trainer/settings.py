"""The Trainer's settings: defined once, with their defaults, and passed whole to ``run_fn``.

``PipelineConfig`` extends this dataclass, so every setting is a pipeline setting and a command
line flag; the pipeline hands the Trainer ``to_custom_config()`` and ``run_fn`` rebuilds the
same object with ``from_custom_config``. No list of keys is kept by hand anywhere. This module
imports neither TensorFlow nor Beam.
"""

import dataclasses
from typing import Any, Mapping, TypeVar

AUTO = "auto"  # fine_tune_from: the backbone's own last blocks (trainer/backbones.py)
# Serialized examples held for shuffling. At 299 px a stored JPEG is about 20-40 KB, so
# 10,000 hold 200-400 MB; on the real photos a 128-example buffer cost 0.1 micro-F1.
DEFAULT_SHUFFLE_BUFFER = 10_000

T = TypeVar("T", bound="TrainerSettings")


@dataclasses.dataclass(frozen=True)
class TrainerSettings:
    """What the Trainer reads: the network, its training, the input and the decision rule.

    Production defaults: 299 px, ImageNet weights, InceptionV3. Tests and the demo shrink them
    (``pipeline.config.demo_config``).
    """

    num_labels: int  # width of the multi-hot vector (the label map's highest id)
    image_size: int = 299  # side of the square image Transform gives the model, in pixels
    # "imagenet", "none" (from scratch) or a no-top .h5 weights file of the backbone (local, or gs://
    # and any file system Beam reads); imat run checks that imagenet can be had before it starts.
    weights: str = "imagenet"
    dropout: float = 0.3  # before the sigmoids (and after the dense head layer)
    head_learning_rate: float = 1e-3  # Adam, phase one: the head only
    fine_tune_learning_rate: float = 1e-4  # Adam, phase two: the head and the unfrozen backbone layers
    # Layers from this one on are unfrozen in phase two; "" trains the whole backbone; "auto" is
    # the backbone's last blocks (InceptionV3: "mixed9", the last two Inception blocks, as the
    # competition's fastest teams did).
    fine_tune_from: str = AUTO
    backbone: str = "inception_v3"  # trainer/backbones.py: xception, resnet50, efficientnetv2b0, mobilenetv3small
    pooling: str = "avg"  # of the backbone's last feature map: avg, max or avgmax (both, concatenated)
    head_units: int = 0  # >0: a ReLU dense layer of this width (and dropout) between pooling and the sigmoids
    loss: str = "bce"  # bce | focal | asl (trainer/losses.py)
    # Progressive resizing: >0 trains the first progressive_fraction of the steps on images this
    # size; the model then takes any size (serving still gets image_size).
    progressive_image_size: int = 0
    progressive_fraction: float = 0.5  # share of the steps at progressive_image_size
    # >0: train this many passes over the train split (steps from its size, which Transform
    # counts), instead of the pipeline's train_steps; 0: train_steps.
    train_epochs: float = 0.0
    head_steps_fraction: float = 0.3  # phase one's (backbone frozen) share of the training steps
    batch_size: int = 32  # training batch, over all replicas and workers
    eval_batch_size: int = 64  # scoring the calibration and eval splits
    distribution: str = "default"  # default | mirrored | multi_worker | tpu
    mixed_precision: str = ""  # "" | mixed_bfloat16 (CPU AMX, TPU) | mixed_float16 (GPU)
    # Moving-average momentum of the backbone's batch norms; Keras' 0.99 tracks too slowly for
    # the few hundred steps of a from-scratch demo (0.9 there). 0: leave Keras' value.
    batch_norm_momentum: float = 0.0
    # Training input (trainer/data.py): serialized examples held for shuffling. It and augment
    # were chosen by benchmarks/input_ablation.py (README, "Training input").
    shuffle_buffer: int = DEFAULT_SHUFFLE_BUFFER
    augment: bool = False  # random flip and crop/zoom of the training images
    # A tf.data service dispatcher (grpc://host:port) whose workers read, decode and augment
    # the training input when the Trainer's own CPUs cannot feed its GPUs (README, "Feeding a GPU").
    data_service_address: str = ""
    seed: int = 0  # weight initialisation and the input's shuffles
    min_positives: int = 5  # labels with fewer calibration positives get the global threshold
    calibration_folds: int = 5  # k of the cross-validation on calibration that picks the decision rule

    @property
    def pretrained(self) -> bool:
        return self.weights not in ("none", "", None)

    def to_custom_config(self) -> dict:
        """Every setting, by name: the Trainer's ``custom_config`` (JSON-serialisable)."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(TrainerSettings)}

    @classmethod
    def from_custom_config(cls: type[T], custom_config: Mapping[str, Any]) -> T:
        """The settings found in ``custom_config``, cast to their fields' types; other keys are ignored.

        Raises:
          KeyError: ``num_labels`` is missing.
          ValueError: naming a setting whose value does not fit its type.
        """
        if "num_labels" not in custom_config:
            raise KeyError("the Trainer's custom_config has no num_labels")
        values = {}
        for field in dataclasses.fields(TrainerSettings):
            if field.name in custom_config:
                values[field.name] = typed(field, custom_config[field.name], f"custom_config[{field.name!r}]")
        return cls(**values)


# Settings an ensemble member may not change: they describe the data every member reads
# (one Transform graph, one label map) or the run around the Trainers, not a member's network.
NOT_PER_MEMBER = (
    "num_labels",
    "image_size",
    "eval_batch_size",
    "distribution",
    "data_service_address",
    "min_positives",
    "calibration_folds",
)
MEMBER_SETTINGS = tuple(f.name for f in dataclasses.fields(TrainerSettings) if f.name not in NOT_PER_MEMBER)


def typed(field: dataclasses.Field, value: Any, where: str) -> Any:
    """``value`` (text from a flag or JSON) as ``field``'s type: bools from true/false/1/0.

    Raises:
      ValueError: naming ``where`` and the value.
    """
    kind = field.type if isinstance(field.type, type) else type(field.default)
    if kind is bool:
        if isinstance(value, bool):
            return value
        if str(value).lower() not in ("true", "false", "1", "0"):
            raise ValueError(f"{where}: {value!r} is not true or false")
        return str(value).lower() in ("true", "1")
    try:
        return kind(value)
    except (TypeError, ValueError):
        raise ValueError(f"{where}: {value!r} is not a {kind.__name__}") from None
