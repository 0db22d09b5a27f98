"""The pipeline's one configuration object: frozen, no side effects, shared by every runner."""
import dataclasses
import os
from typing import List, Tuple

# The settings an ensemble member may change (PipelineConfig.ensemble): the Trainer's own.
# Not image_size: every member reads the one Transform graph.
MEMBER_SETTINGS = ("weights", "backbone", "pooling", "head_units", "loss", "dropout", "head_learning_rate",
                   "fine_tune_learning_rate", "fine_tune_from", "head_steps_fraction", "batch_size",
                   "mixed_precision", "batch_norm_momentum", "augment", "shuffle_buffer", "seed",
                   "progressive_image_size", "progressive_fraction")


@dataclasses.dataclass(frozen=True)
class PipelineConfig:
    """Everything ``create_pipeline`` needs. Runners only choose roots and orchestration.

    Production defaults: 299 px, ImageNet weights. Tests and the demo shrink them.
    """

    pipeline_name: str
    pipeline_root: str  # where TFX writes artifacts
    data_root: str  # the download job's --output: <split>/*.tfrecord.gz
    serving_dir: str  # Pusher's destination; each blessed model lands in a versioned folder
    label_map: str  # label_map.csv: the multi-hot width and the names served with decisions
    num_labels: int  # width of the multi-hot vector (highest label id)
    schema_path: str = ""  # the curated schema (pipeline/schema.py); imat run writes one from the label map
    train_split: str = "train"
    eval_split: str = "validation"  # the folder cut into the calibration and eval splits
    calibration_percent: int = 50  # share of eval_split's images (by hash of the id) that tune the thresholds
    calibration_folds: int = 5  # k of the cross-validation on calibration that picks the decision rule
    warn_only: bool = False  # data that breaks the schema: log it and go on, instead of stopping before Transform
    image_size: int = 299
    weights: str = "imagenet"  # or "none", or a local no-top .h5 file of the backbone
    backbone: str = "inception_v3"  # trainer/backbones.py: xception, resnet50, efficientnetv2b0, mobilenetv3small
    pooling: str = "avg"  # avg | max | avgmax
    head_units: int = 0  # >0: a dense ReLU layer in the head
    loss: str = "bce"  # bce | focal | asl (trainer/losses.py)
    progressive_image_size: int = 0  # >0: the first progressive_fraction of train_steps on images this size
    progressive_fraction: float = 0.5
    train_steps: int = 2000
    eval_steps: int = 0  # 0: the whole eval split
    head_steps_fraction: float = 0.3  # phase one (backbone frozen) share of train_steps
    batch_size: int = 32
    eval_batch_size: int = 64
    dropout: float = 0.3
    head_learning_rate: float = 1e-3
    fine_tune_learning_rate: float = 1e-4
    fine_tune_from: str = "auto"  # the backbone's last blocks (InceptionV3: mixed9); "" the whole backbone
    distribution: str = "default"  # default | mirrored | multi_worker | tpu
    mixed_precision: str = ""  # "" | mixed_bfloat16 | mixed_float16
    batch_norm_momentum: float = 0.0  # 0: Keras' 0.99; lower for short from-scratch training
    # Training input (trainer/data.py): serialized examples held for shuffling; random flip and
    # crop/zoom. Both chosen by benchmarks/input_ablation.py (README, "Training input").
    shuffle_buffer: int = 10_000
    augment: bool = False
    # A tf.data service dispatcher (grpc://host:port) whose workers read, decode and augment
    # the training input when the Trainer's own CPUs cannot feed its GPUs (README, "Feeding a GPU").
    data_service_address: str = ""
    seed: int = 0  # weight initialisation and the input's shuffles
    min_positives: int = 5  # labels with fewer calibration positives get the global threshold
    micro_f1_lower_bound: float = 0.3  # the Evaluator blesses a model at or above this micro-F1
    # Several Trainers, combined by the Ensembler (components/ensembler.py) into the model the
    # Evaluator gates: one member per entry, "key=value,..." over this config's MEMBER_SETTINGS,
    # e.g. ("backbone=inception_v3", "backbone=xception,seed=1"); empty: one Trainer.
    ensemble: Tuple[str, ...] = ()
    ensemble_method: str = "weights"  # weights (hill climbing on calibration) | stacker
    beam_pipeline_args: Tuple[str, ...] = ("--runner=FnApiRunner",)
    enable_cache: bool = True

    def trainer_custom_config(self) -> dict:
        return {
            "num_labels": self.num_labels, "image_size": self.image_size, "weights": self.weights,
            "dropout": self.dropout, "head_learning_rate": self.head_learning_rate,
            "fine_tune_learning_rate": self.fine_tune_learning_rate, "fine_tune_from": self.fine_tune_from,
            "backbone": self.backbone, "pooling": self.pooling, "head_units": self.head_units, "loss": self.loss,
            "progressive_image_size": self.progressive_image_size, "progressive_fraction": self.progressive_fraction,
            "head_steps_fraction": self.head_steps_fraction, "batch_size": self.batch_size,
            "eval_batch_size": self.eval_batch_size, "distribution": self.distribution,
            "mixed_precision": self.mixed_precision, "batch_norm_momentum": self.batch_norm_momentum,
            "min_positives": self.min_positives, "calibration_folds": self.calibration_folds,
            "label_map": self.label_map, "augment": self.augment, "shuffle_buffer": self.shuffle_buffer,
            "data_service_address": self.data_service_address, "seed": self.seed,
        }

    def member_configs(self) -> List["PipelineConfig"]:
        """This config as seen by each ensemble member's Trainer; empty without an ensemble.

        Raises:
          ValueError: naming the member and the setting that cannot be read.
        """
        fields = {f.name: f for f in dataclasses.fields(self)}
        members = []
        for number, spec in enumerate(self.ensemble, start=1):
            overrides = {}
            for item in filter(None, (part.strip() for part in spec.split(","))):
                key, sep, value = item.partition("=")
                key = key.strip()
                if not sep or key not in MEMBER_SETTINGS:
                    raise ValueError(f"ensemble member {number} ({spec!r}): {item!r} is not key=value with a key "
                                     f"in {', '.join(MEMBER_SETTINGS)}")
                overrides[key] = _typed(fields[key].default, value.strip(), f"ensemble member {number}, {key}")
            members.append(dataclasses.replace(self, ensemble=(), **overrides))
        return members

    def transform_custom_config(self) -> dict:
        return {"num_labels": self.num_labels, "image_size": self.image_size}


def _typed(default, text: str, where: str):
    if isinstance(default, bool):
        if text.lower() not in ("true", "false", "1", "0"):
            raise ValueError(f"{where}: {text!r} is not true or false")
        return text.lower() in ("true", "1")
    try:
        return type(default)(text)
    except ValueError:
        raise ValueError(f"{where}: {text!r} is not a {type(default).__name__}") from None


def demo_config(workdir: str, num_labels: int, **overrides) -> PipelineConfig:
    """Settings for the embedded demo data: small images, trained from scratch on 2 CPU cores.

    ImageNet weights cannot be assumed offline, so the backbone trains from scratch: the whole
    network trains from the first step (no head-only phase, ``fine_tune_from=""``), with batch
    norm learning its statistics at a momentum that keeps up with 300 steps.
    """
    settings = dict(
        pipeline_name="imat-demo", pipeline_root=os.path.join(workdir, "pipeline"),
        data_root=os.path.join(workdir, "data"), serving_dir=os.path.join(workdir, "serving"),
        label_map=os.path.join(workdir, "source", "label_map.csv"), num_labels=num_labels,
        image_size=96, weights="none", train_steps=300, head_steps_fraction=0.0, batch_size=16,
        eval_batch_size=32, fine_tune_from="", head_learning_rate=2e-3, fine_tune_learning_rate=1e-3,
        dropout=0.2, batch_norm_momentum=0.9, min_positives=3, micro_f1_lower_bound=0.5)
    settings.update(overrides)
    return PipelineConfig(**settings)
