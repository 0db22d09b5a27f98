"""The Trainer's settings: a section of ``pipeline.config.PipelineConfig``, passed whole to ``run_fn``.

Each field is declared once with ``imat_common.settings.setting``: its default, its help and its
roles (flag, runtime parameter, per ensemble member). The pipeline hands the Trainer
``to_custom_config()`` and ``run_fn`` rebuilds the same object with ``from_custom_config``. This
module imports neither TensorFlow nor Beam.
"""

import dataclasses
from typing import Any, Mapping, Tuple, TypeVar

from imat_common.settings import is_per_member, setting, typed

AUTO = "auto"  # fine_tune_from: the backbone's own last blocks (trainer/backbones.py)
# Serialized examples held for shuffling: thousands, so that batches are a uniform sample of a
# catalogue listed in product order; each is one stored JPEG, so the buffer fits in memory.
# measured: docs/benchmarks.md, "Training input: mixing and augmentation"
DEFAULT_SHUFFLE_BUFFER = 10_000
# trainer/backbones.py's, named here to keep TensorFlow out of the settings (a test checks they agree).
BACKBONES = ("inception_v3", "xception", "resnet50", "efficientnetv2b0", "mobilenetv3small")

T = TypeVar("T", bound="TrainerSettings")


@dataclasses.dataclass(frozen=True)
class TrainerSettings:
    """What the Trainer reads: the network, its training, the input and the decision rule.

    Production defaults: 299 px, ImageNet weights, InceptionV3. Tests and the demo shrink them
    (``pipeline.config.DEMO_SETTINGS``).
    """

    num_labels: int = setting(help="width of the multi-hot vector (the label map's highest id)", flag=False)
    image_size: int = setting(299, "side of the square image Transform gives the model, in pixels")
    weights: str = setting(
        "imagenet",
        '"imagenet", "none" (from scratch) or a no-top .h5 weights file of the backbone (local, or gs:// and any '
        "file system Beam reads); imat run checks that imagenet can be had before it starts",
        per_member=True,
    )
    train_steps: int = setting(
        2000, "training steps, both phases together; train_epochs > 0 replaces it", runtime=True, per_member=True
    )
    train_epochs: float = setting(
        0.0,
        "> 0: train this many passes over the train split (steps from its size, which Transform counts) "
        "instead of train_steps",
        per_member=True,
    )
    eval_steps: int = setting(0, "batches of each of the calibration and eval splits to score; 0: all")
    dropout: float = setting(
        0.3,
        "before the sigmoids (and after the dense head layer)",
        per_member=True,
        search=("linear", 0.0, 0.5, 0.1),
        tuned=True,
    )
    head_learning_rate: float = setting(
        1e-3, "Adam, phase one: the head only", runtime=True, per_member=True, search=("log", 1e-4, 1e-2), tuned=True
    )
    fine_tune_learning_rate: float = setting(
        1e-4,
        "Adam, phase two: the head and the unfrozen backbone layers",
        runtime=True,
        per_member=True,
        search=("log", 1e-5, 3e-3),
        tuned=True,
    )
    fine_tune_from: str = setting(
        AUTO,
        'layers from this one on train in phase two; "" trains the whole backbone; "auto" is the '
        'backbone\'s last blocks (InceptionV3: "mixed9", its last two Inception blocks)',
        per_member=True,
    )
    backbone: str = setting(
        "inception_v3",
        "inception_v3, xception, resnet50, efficientnetv2b0 or mobilenetv3small",
        per_member=True,
        search=("choice",) + BACKBONES,
    )
    pooling: str = setting(
        "avg",
        "of the backbone's last feature map: avg, max or avgmax (both, concatenated)",
        per_member=True,
        search=("choice", "avg", "max", "avgmax"),
        tuned=True,
    )
    head_units: int = setting(
        0,
        "> 0: a ReLU dense layer of this width (and dropout) between pooling and the sigmoids",
        per_member=True,
        search=("choice", 0, 256, 1024),
        tuned=True,
    )
    loss: str = setting(
        "bce",
        "bce, focal or asl (trainer/losses.py)",
        per_member=True,
        search=("choice", "bce", "focal", "asl"),
        tuned=True,
    )
    progressive_image_size: int = setting(
        0,
        "> 0: progressive resizing; the first progressive_fraction of the steps train on images this size",
        per_member=True,
    )
    progressive_fraction: float = setting(0.5, "share of the steps at progressive_image_size", per_member=True)
    head_steps_fraction: float = setting(
        0.3,
        "phase one's (backbone frozen) share of the training steps; 0 fine-tunes from the first step",
        per_member=True,
        search=("linear", 0.0, 0.5, 0.1),
    )
    batch_size: int = setting(32, "training batch, over all replicas and workers", per_member=True)
    eval_batch_size: int = setting(64, "batch for scoring the calibration and eval splits")
    distribution: str = setting("default", "default, mirrored, multi_worker or tpu")
    mixed_precision: str = setting("", '"", mixed_bfloat16 (CPU AMX, TPU) or mixed_float16 (GPU)', per_member=True)
    batch_norm_momentum: float = setting(
        0.0,
        "moving-average momentum of the backbone's batch norms (0: Keras' 0.99, too slow for a few "
        "hundred steps from scratch)",
        per_member=True,
        search=("choice", 0.0, 0.9, 0.99),
    )
    shuffle_buffer: int = setting(
        DEFAULT_SHUFFLE_BUFFER, "serialized training examples held for shuffling", per_member=True
    )
    augment: bool = setting(
        False,
        "random flip and crop/zoom of the training images (in the model, on the accelerator)",
        per_member=True,
        search=("choice", False, True),
        tuned=True,
    )
    canvas_size: int = setting(
        0,
        "side in pixels of the uint8 canvas each training photo is decoded onto (trainer/canvas.py); 0: the "
        "larger of image_size and the download's 299 px; larger photos are shrunk on the CPU to fit",
    )
    data_service_address: str = setting(
        "", "a tf.data service dispatcher (grpc://host:port) whose workers read and decode the input"
    )
    seed: int = setting(0, "weight initialisation and the input's shuffles", per_member=True)
    min_positives: int = setting(5, "labels with fewer calibration positives get the global threshold")
    calibration_folds: int = setting(5, "k of the cross-validation on calibration that picks the decision rule")

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


def member_settings() -> Tuple[str, ...]:
    """The settings an ensemble member may set for itself (the others describe the data every
    member reads, one Transform graph and one label map, or the run around the Trainers)."""
    return tuple(f.name for f in dataclasses.fields(TrainerSettings) if is_per_member(f))
