"""How a setting declares itself: its help and its roles, once, in its dataclass field's metadata.

A setting is a field of one of the configuration sections (``trainer.settings.TrainerSettings``,
the sections of ``pipeline.config.PipelineConfig``), declared with ``setting(...)``. Its metadata
says everything the rest of the code derives from it:

- ``help``: the command-line help of its flag (and the docs' settings table);
- ``flag``: whether ``imat run`` / ``imat compile`` offer it as ``--<name>`` (locations and
  values derived from the label map do not: each command has its own flags for those);
- ``runtime``: a pipeline parameter on Kubeflow Pipelines / Vertex AI, changeable per run
  without recompiling (``pipeline/run_parameters.py`` applies it inside the executors);
- ``per_member``: an ensemble member may set its own value (``--ensemble "key=value,..."``);
- ``name``: the setting's name where it differs from the field's (flags, ``with_settings``).

No list of names is kept anywhere else: flags, the Trainer's ``custom_config``, the runtime
parameters and the ensemble members' keys are all computed from these fields. This module
imports neither TensorFlow nor Beam.
"""

import dataclasses
from typing import Any, Dict

HELP = "help"
FLAG = "flag"
RUNTIME = "runtime"
PER_MEMBER = "per_member"
NAME = "name"
SEARCH = "search"
TUNED = "tuned"
SEARCH_KINDS = ("log", "linear", "choice")


def setting(
    default: Any = dataclasses.MISSING,
    help: str = "",
    *,
    flag: bool = True,
    runtime: bool = False,
    per_member: bool = False,
    name: str = "",
    search: tuple = (),
    tuned: bool = False,
) -> Any:
    """A dataclass field that is a setting: its default, its help and its roles.

    Args:
      default: the production default; omitted for a required setting.
      help: one line for ``--help`` and the docs.
      flag: offered as a command-line flag.
      runtime: a pipeline parameter on Kubeflow / Vertex AI (int, float or str only).
      per_member: an ensemble member may set its own value.
      name: the setting's public name, when it differs from the field's.
      search: the Tuner's range for it: ``(kind, ...)``, kind one of ``SEARCH_KINDS``.
      tuned: searched by default (needs ``search``).

    Raises:
      ValueError: a runtime setting whose default is not a plain number or string, or a bad range.
    """
    if runtime and not isinstance(default, (int, float, str)):
        raise ValueError(f"a runtime setting must be an int, float or str, got {default!r}")
    if (search and search[0] not in SEARCH_KINDS) or (tuned and not search):
        raise ValueError(f"search {search!r}: (kind, ...) with a kind in {SEARCH_KINDS}; tuned needs one")
    metadata = {
        HELP: help,
        FLAG: flag,
        RUNTIME: runtime,
        PER_MEMBER: per_member,
        NAME: name,
        SEARCH: tuple(search),
        TUNED: tuned,
    }
    if isinstance(default, (list, dict, set)):
        raise ValueError("mutable defaults are not settings; use a tuple")
    return dataclasses.field(default=default, metadata=metadata)


def name_of(field: dataclasses.Field) -> str:
    """The setting's public name: its flag, its ``with_settings`` keyword."""
    return field.metadata.get(NAME) or field.name


def help_of(field: dataclasses.Field) -> str:
    return field.metadata.get(HELP, "")


def is_flag(field: dataclasses.Field) -> bool:
    return bool(field.metadata.get(FLAG, False))


def is_runtime(field: dataclasses.Field) -> bool:
    return bool(field.metadata.get(RUNTIME, False))


def is_per_member(field: dataclasses.Field) -> bool:
    return bool(field.metadata.get(PER_MEMBER, False))


def search_of(field: dataclasses.Field) -> tuple:
    """The Tuner's range for the setting, ``(kind, ...)``; empty when it is not searchable."""
    return tuple(field.metadata.get(SEARCH, ()))


def is_tuned(field: dataclasses.Field) -> bool:
    """Whether the Tuner searches the setting when ``--tune_search`` names nothing."""
    return bool(field.metadata.get(TUNED, False))


def kind_of(field: dataclasses.Field) -> type:
    """The field's Python type: its annotation when it is a class, else its default's type."""
    return field.type if isinstance(field.type, type) else type(field.default)


class SettingsError(ValueError):
    """A setting a user gave that cannot be read: an unknown name, a value of the wrong type, a bad member."""


def typed(field: dataclasses.Field, value: Any, where: str) -> Any:
    """``value`` (text from a flag or JSON) as ``field``'s type: bools from true/false/1/0.

    Raises:
      SettingsError: naming ``where`` and the value.
    """
    kind = kind_of(field)
    if kind is bool:
        if isinstance(value, bool):
            return value
        if str(value).lower() not in ("true", "false", "1", "0"):
            raise SettingsError(f"{where}: {value!r} is not true or false")
        return str(value).lower() in ("true", "1")
    if kind is tuple:
        if isinstance(value, (list, tuple)):
            return tuple(value)
        raise SettingsError(f"{where}: {value!r} is not a list")
    try:
        return kind(value)
    except (TypeError, ValueError):
        raise SettingsError(f"{where}: {value!r} is not a {kind.__name__}") from None


def values_of(section: Any) -> Dict[str, Any]:
    """A section's settings by public name (one level: sections are flat dataclasses)."""
    return {name_of(f): getattr(section, f.name) for f in dataclasses.fields(section)}
