"""The pipeline's one configuration object: frozen, no side effects, shared by every runner.

``PipelineConfig`` is composed of sections, each a flat frozen dataclass whose fields declare
their help and roles once (``imat_common.settings``):

- ``locations``: where the data, the label map, the schema and the outputs are (no flags: each
  command derives them from flags of its own, ``--workdir``, ``--data``, ``--pipeline_root``);
- ``trainer``: ``trainer.settings.TrainerSettings``, what the Trainer reads;
- ``data``: the splits and the validation gate;
- ``gate``: the Evaluator's blessing threshold;
- ``ensemble``: the members and how they are combined;
- ``tune``: the Tuner's search, off by default;
- ``run``: Beam and caching.

Every setting has one public name, unique across sections: the flag ``--<name>``, the keyword of
``with_settings``. Change settings with ``config.with_settings(train_steps=100)``.
"""

import dataclasses
from typing import Any, Dict, Iterator, List, Mapping, Tuple

from imat_common.settings import SettingsError, is_runtime, name_of, setting, typed
from imat_common.workdir import Workdir
from trainer.settings import TrainerSettings, member_settings


@dataclasses.dataclass(frozen=True)
class Locations:
    """Where things are. Local runs take them from ``Workdir``, Vertex from ``CloudConfig``."""

    pipeline_name: str = setting("imat", "the pipeline's name in ML Metadata", flag=False)
    pipeline_root: str = setting("", "where TFX writes artifacts", flag=False)
    data_root: str = setting("", "the download job's --output: <split>/*.tfrecord.gz", flag=False)
    serving_dir: str = setting(
        "", "the Pusher's destination; each blessed model lands in a versioned folder", flag=False
    )
    similar_dir: str = setting(
        "", "where the similar-product index of each pushed model is copied ('' keeps it in the run)", flag=False
    )
    label_map: str = setting("", "label_map.csv: the multi-hot width and the names served with decisions", flag=False)
    schema_path: str = setting(
        "", "the curated schema (pipeline/schema.py); imat run writes one from the label map", flag=False
    )


@dataclasses.dataclass(frozen=True)
class DataSettings:
    """Which folders train and which are held out, and what bad data does."""

    train_split: str = setting("train", "the folder of the data the Trainer learns from")
    eval_split: str = setting("validation", "the folder cut into the calibration and eval splits")
    calibration_percent: int = setting(
        50, "share of eval_split's images (by hash of the id) that tune the thresholds; the rest is eval"
    )
    warn_only: bool = setting(
        False,
        "data that breaks the schema, drifted or is skewed: log it and go on, instead of stopping before Transform",
    )
    train_spans: int = setting(
        0,
        "0: the data folder holds the split folders; K >= 1: it holds span-N folders (imat download "
        "--span N), the run reads the newest span, trains on the newest K and stops on drift from the previous span",
    )
    span: int = setting(
        -1, "with train_spans: the span to read (a backfill, or a rerun of an older span); -1: the newest on disk"
    )


@dataclasses.dataclass(frozen=True)
class GateSettings:
    """What the Evaluator blesses (and the Pusher then pushes): every condition must hold."""

    micro_f1_lower_bound: float = setting(
        0.3, "the Evaluator blesses a model at or above this eval micro-F1", runtime=True
    )
    # The bound alone blesses a model that learnt nothing: the trivial baseline (each task's most
    # frequent train label, for every image) scored 0.53 on unseen photos of a real catalogue. Out
    # of sample, a network that learnt nothing (a frozen random backbone) scored 0.03 below the
    # baseline on a 9,583-photo catalogue (0.526 vs 0.555 at 0.5) and within a few hundredths of it
    # on the demo; trained models scored 0.27 to 0.29 above it on fashion-products-2k (0.706 vs
    # 0.419 test, 0.712 vs 0.441 eval), and the demo's quality-floor test requires 0.25. 0.05 is
    # above that no-learning noise and a fifth of the smallest trained gap.
    baseline_margin: float = setting(
        0.05,
        "the Evaluator blesses only a model whose eval micro-F1 is above the trivial baseline's (each "
        "task's most frequent train label) plus this margin: learning nothing scored within 0.03 of "
        "the baseline, trained models 0.25 or more above it",
        runtime=True,
    )
    confidence_intervals: bool = setting(
        True,
        "the Evaluator also computes 95 % intervals (TFMA's jackknife over the eval split), among them "
        "the candidate minus the last blessed model's micro-F1; the gate still compares point values",
    )


@dataclasses.dataclass(frozen=True)
class EnsembleSettings:
    """Several Trainers, combined by the Ensembler (components/ensembler.py) into the gated model."""

    members: Tuple[str, ...] = setting(
        (),
        "one Trainer per entry, 'key=value,...' over the per-member Trainer settings, e.g. "
        "'backbone=xception,seed=1'; none: one Trainer",
        name="ensemble",
    )
    method: str = setting("weights", "weights (hill climbing on calibration) or stacker", name="ensemble_method")


@dataclasses.dataclass(frozen=True)
class TuneSettings:
    """TFX's Tuner before the Trainer (trainer/tuning.py): trials scored on calibration, the best one trained."""

    tune: bool = setting(
        False,
        "search the Trainer's settings first (TFX Tuner: each trial trains tune_steps on the train split and "
        "is scored on calibration, never eval); the Trainer then trains train_steps with the best",
    )
    tune_trials: int = setting(8, "trials of the search; the first trains the settings as given")
    tune_steps: int = setting(300, "training steps of each trial")
    tune_search: str = setting(
        "",
        "the settings searched, comma-separated, each in its range (trainer/search_space.py); '': the two "
        "learning rates, dropout, head_units, pooling, loss and augment",
    )
    tune_algorithm: str = setting("random", "random or bayesian (KerasTuner's Gaussian-process oracle)")
    tune_parallel_trials: int = setting(
        1, "on Vertex AI: trials at once, each on a machine like the Trainer's; locally trials run one at a time"
    )

    def custom_config(self, seed: int) -> dict:
        """The ``tune`` entry of the Tuner's ``custom_config`` (``trainer.tuning.tune_config`` reads it)."""
        return {
            "trials": self.tune_trials,
            "steps": self.tune_steps,
            "search": [name.strip() for name in self.tune_search.split(",") if name.strip()],
            "algorithm": self.tune_algorithm,
            "seed": seed,
        }


@dataclasses.dataclass(frozen=True)
class RunSettings:
    """How the components run."""

    beam_pipeline_args: Tuple[str, ...] = setting(
        ("--runner=FnApiRunner",), "Beam's arguments for every component", flag=False
    )
    enable_cache: bool = setting(True, "reuse a component's outputs when its inputs and settings are unchanged")


@dataclasses.dataclass(frozen=True)
class Member:
    """One ensemble member: its spec, the settings the spec names, and its Trainer's settings."""

    number: int
    spec: str
    own: Mapping[str, Any]
    trainer: TrainerSettings


@dataclasses.dataclass(frozen=True)
class PipelineConfig:
    """Everything ``create_pipeline`` needs. Runners only choose roots and orchestration.

    Production defaults: 299 px, ImageNet weights. Tests and the demo shrink them (``DEMO_SETTINGS``).
    """

    locations: Locations
    trainer: TrainerSettings
    data: DataSettings = DataSettings()
    gate: GateSettings = GateSettings()
    ensemble: EnsembleSettings = EnsembleSettings()
    tune: TuneSettings = TuneSettings()
    run: RunSettings = RunSettings()

    @staticmethod
    def sections() -> Tuple[str, ...]:
        return tuple(f.name for f in dataclasses.fields(PipelineConfig))

    @classmethod
    def fields(cls) -> Iterator[Tuple[str, dataclasses.Field]]:
        """Every setting of every section: (section name, field)."""
        defaults = {"trainer": TrainerSettings}
        for section in dataclasses.fields(cls):
            kind = defaults.get(section.name) or section.type
            if isinstance(kind, str):  # postponed annotations: the default's class
                kind = type(section.default)
            for field in dataclasses.fields(kind):
                yield section.name, field

    @classmethod
    def settings_index(cls) -> Dict[str, Tuple[str, dataclasses.Field]]:
        """Public name -> (section, field).

        Raises:
          TypeError: two sections declare the same public name.
        """
        index: Dict[str, Tuple[str, dataclasses.Field]] = {}
        for section, field in cls.fields():
            name = name_of(field)
            if name in index:
                raise TypeError(f"setting {name!r} is declared in both {index[name][0]} and {section}")
            index[name] = (section, field)
        return index

    def get(self, name: str) -> Any:
        """A setting's value by its public name."""
        section, field = self.settings_index()[name]
        return getattr(getattr(self, section), field.name)

    def with_settings(self, **settings: Any) -> "PipelineConfig":
        """This config with settings changed, by public name (the flags' names), any section.

        Raises:
          SettingsError: naming an unknown setting, with the closest known names.
        """
        index = self.settings_index()
        changes: Dict[str, Dict[str, Any]] = {}
        for name, value in settings.items():
            if name not in index:
                import difflib

                close = difflib.get_close_matches(name, index, n=3)
                hint = f"; did you mean {' or '.join(close)}?" if close else ""
                raise SettingsError(f"unknown setting {name!r}{hint}")
            section, field = index[name]
            if isinstance(value, list):
                value = tuple(value)
            changes.setdefault(section, {})[field.name] = value
        return dataclasses.replace(
            self,
            **{section: dataclasses.replace(getattr(self, section), **values) for section, values in changes.items()},
        )

    def runtime_values(self) -> Dict[str, Any]:
        """Each runtime parameter (``setting(runtime=True)``) and its value in this config."""
        return {
            name_of(field): getattr(getattr(self, section), field.name)
            for section, field in self.fields()
            if is_runtime(field)
        }

    def trainer_custom_config(self) -> dict:
        """The Trainer's settings (``TrainerSettings.from_custom_config`` reads them back) and the label map."""
        return {**self.trainer.to_custom_config(), "label_map": self.locations.label_map}

    def transform_custom_config(self) -> dict:
        return {"num_labels": self.trainer.num_labels, "image_size": self.trainer.image_size}

    def members(self) -> List[Member]:
        """The ensemble's members: each one's own settings and its Trainer's; empty without an ensemble.

        Raises:
          SettingsError: naming the member and the setting that cannot be read.
        """
        allowed = member_settings()
        fields = {f.name: f for f in dataclasses.fields(TrainerSettings)}
        members = []
        for number, spec in enumerate(self.ensemble.members, start=1):
            own: Dict[str, Any] = {}
            for item in filter(None, (part.strip() for part in spec.split(","))):
                key, sep, value = item.partition("=")
                key = key.strip()
                if not sep or key not in allowed:
                    raise SettingsError(
                        f"ensemble member {number} ({spec!r}): {item!r} is not key=value with a key "
                        f"in {', '.join(allowed)}"
                    )
                own[key] = typed(fields[key], value.strip(), f"ensemble member {number}, {key}")
            members.append(Member(number, spec, own, dataclasses.replace(self.trainer, **own)))
        return members


def local_config(workdir: str, num_labels: int, pipeline_name: str = "imat", **settings: Any) -> PipelineConfig:
    """A config whose outputs live in ``workdir`` (``Workdir``'s layout), its data and label map
    there too unless ``settings`` names others (``data_root=``, ``label_map=``)."""
    work = Workdir(workdir)
    locations = Locations(
        pipeline_name=pipeline_name,
        pipeline_root=work.pipeline_root,
        data_root=work.data,
        serving_dir=work.serving,
        similar_dir=work.similar,
        label_map=work.label_map,
    )
    return PipelineConfig(locations=locations, trainer=TrainerSettings(num_labels=num_labels)).with_settings(**settings)


# The embedded demo: small images, trained from scratch on 2 CPU cores. ImageNet weights cannot
# be assumed offline, so the backbone trains from scratch: the whole network from the first
# step (no head-only phase, fine_tune_from=""), batch norm at a momentum that keeps up with 300 steps.
DEMO_SETTINGS: Mapping[str, Any] = {
    "image_size": 96,
    "weights": "none",
    "train_steps": 300,
    "head_steps_fraction": 0.0,
    "batch_size": 16,
    "eval_batch_size": 32,
    "fine_tune_from": "",
    "head_learning_rate": 2e-3,
    "fine_tune_learning_rate": 1e-3,
    "dropout": 0.2,
    "batch_norm_momentum": 0.9,
    "min_positives": 3,
    "micro_f1_lower_bound": 0.5,
}


def demo_config(workdir: str, num_labels: int, **settings: Any) -> PipelineConfig:
    """The demo's config in ``workdir``: ``DEMO_SETTINGS``, then ``settings``."""
    return local_config(workdir, num_labels, pipeline_name="imat-demo", **{**DEMO_SETTINGS, **settings})
