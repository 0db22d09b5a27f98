"""The pipeline's one configuration object: frozen, no side effects, shared by every runner."""

import dataclasses
from typing import List, Tuple

from imat_common.workdir import Workdir
from trainer.settings import MEMBER_SETTINGS, TrainerSettings, typed


# kw_only: the Trainer's settings (the base class) come first and have defaults; the pipeline's
# own required fields follow them.
@dataclasses.dataclass(frozen=True, kw_only=True)
class PipelineConfig(TrainerSettings):
    """Everything ``create_pipeline`` needs. Runners only choose roots and orchestration.

    The Trainer's settings, with their defaults, are ``TrainerSettings``' fields; these are the
    rest. Production defaults: 299 px, ImageNet weights. Tests and the demo shrink them.
    """

    pipeline_name: str
    pipeline_root: str  # where TFX writes artifacts
    data_root: str  # the download job's --output: <split>/*.tfrecord.gz
    serving_dir: str  # Pusher's destination; each blessed model lands in a versioned folder
    label_map: str  # label_map.csv: the multi-hot width and the names served with decisions
    schema_path: str = ""  # the curated schema (pipeline/schema.py); imat run writes one from the label map
    train_split: str = "train"  # the folder of data_root the Trainer learns from
    eval_split: str = "validation"  # the folder cut into the calibration and eval splits
    calibration_percent: int = 50  # share of eval_split's images (by hash of the id) that tune the thresholds
    warn_only: bool = False  # data that breaks the schema: log it and go on, instead of stopping before Transform
    train_steps: int = 2000  # both phases together; train_epochs > 0 replaces it
    eval_steps: int = 0  # 0: the whole eval split
    micro_f1_lower_bound: float = 0.3  # the Evaluator blesses a model at or above this micro-F1
    # Several Trainers, combined by the Ensembler (components/ensembler.py) into the model the
    # Evaluator gates: one member per entry, "key=value,..." over trainer.settings.MEMBER_SETTINGS,
    # e.g. ("backbone=inception_v3", "backbone=xception,seed=1"); empty: one Trainer.
    ensemble: Tuple[str, ...] = ()
    ensemble_method: str = "weights"  # weights (hill climbing on calibration) | stacker
    beam_pipeline_args: Tuple[str, ...] = ("--runner=FnApiRunner",)
    enable_cache: bool = True  # reuse a component's outputs when its inputs and settings are unchanged

    def trainer_custom_config(self) -> dict:
        """The Trainer's settings (``TrainerSettings.from_custom_config`` reads them back) and the label map."""
        return {**self.to_custom_config(), "label_map": self.label_map}

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
                    raise ValueError(
                        f"ensemble member {number} ({spec!r}): {item!r} is not key=value with a key "
                        f"in {', '.join(MEMBER_SETTINGS)}"
                    )
                overrides[key] = typed(fields[key], value.strip(), f"ensemble member {number}, {key}")
            members.append(dataclasses.replace(self, ensemble=(), **overrides))
        return members

    def transform_custom_config(self) -> dict:
        return {"num_labels": self.num_labels, "image_size": self.image_size}


def demo_config(workdir: str, num_labels: int, **overrides) -> PipelineConfig:
    """Settings for the embedded demo data: small images, trained from scratch on 2 CPU cores.

    ImageNet weights cannot be assumed offline, so the backbone trains from scratch: the whole
    network trains from the first step (no head-only phase, ``fine_tune_from=""``), with batch
    norm learning its statistics at a momentum that keeps up with 300 steps.
    """
    work = Workdir(workdir)
    settings = dict(
        pipeline_name="imat-demo",
        pipeline_root=work.pipeline_root,
        data_root=work.data,
        serving_dir=work.serving,
        label_map=work.label_map,
        num_labels=num_labels,
        image_size=96,
        weights="none",
        train_steps=300,
        head_steps_fraction=0.0,
        batch_size=16,
        eval_batch_size=32,
        fine_tune_from="",
        head_learning_rate=2e-3,
        fine_tune_learning_rate=1e-3,
        dropout=0.2,
        batch_norm_momentum=0.9,
        min_positives=3,
        micro_f1_lower_bound=0.5,
    )
    settings.update(overrides)
    return PipelineConfig(**settings)
