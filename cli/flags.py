"""Command-line flags generated from ``PipelineConfig``'s fields, for ``imat run`` and ``imat compile``.

Every field is a flag of the same name, typed as the field, booleans as ``--name`` /
``--no-name``, tuples repeated, except ``LOCATION_FIELDS``: where the data, the label map and
the outputs are, which each command derives from flags of its own (``--workdir``, ``--data``,
``--pipeline_root``, ...).
"""

import argparse
import dataclasses
import functools
import inspect
import os
import re
from typing import Dict, List

from imat_common.workdir import model_or_newest
from pipeline.config import PipelineConfig

LOCATION_FIELDS = (
    "pipeline_name",
    "pipeline_root",
    "data_root",
    "serving_dir",
    "label_map",
    "num_labels",
    "schema_path",
    "beam_pipeline_args",
)


def setting_fields() -> List[dataclasses.Field]:
    """The fields that get a flag each."""
    return [f for f in dataclasses.fields(PipelineConfig) if f.name not in LOCATION_FIELDS]


@functools.lru_cache(maxsize=None)
def field_comments(cls: type) -> Dict[str, str]:
    """Each dataclass field's comment in the source of the class (and its bases) that defines it:
    the comment on its line, else the comment lines just above it. The flags' help is written there."""
    comments = {}
    for klass in reversed(cls.__mro__):
        if not dataclasses.is_dataclass(klass):
            continue
        above: List[str] = []
        try:
            source = inspect.getsource(klass)
        except (OSError, TypeError):  # installed without sources: help falls back to the default alone
            continue
        for line in source.splitlines():
            text = line.strip()
            if text.startswith("#"):
                above.append(text.lstrip("#").strip())
                continue
            match = re.match(r"(\w+)\s*:[^#]*?(?:#\s*(.*))?$", text)
            if match and match.group(1) in {f.name for f in dataclasses.fields(klass)}:
                comments[match.group(1)] = match.group(2) or " ".join(above)
            above = []
    return comments


def _help(field: dataclasses.Field, default: str) -> str:
    comment = field_comments(PipelineConfig).get(field.name, "").replace("%", "%%")  # argparse formats help
    return f"{comment} (default: {default})" if comment else f"default: {default}"


def _is_tuple(field: dataclasses.Field) -> bool:
    return isinstance(field.default, tuple)


def add_config_flags(parser) -> None:
    """One flag per ``setting_fields()`` field, left unset (None) unless given."""
    for field in setting_fields():
        name, default = field.name, field.default
        if _is_tuple(field):
            parser.add_argument(
                f"--{name}",
                action="append",
                default=None,
                metavar="KEY=VALUE,...",
                help=_help(field, "none") + "; repeat, one per member",
            )
        elif field.type is bool:
            parser.add_argument(
                f"--{name}",
                action=argparse.BooleanOptionalAction,
                default=None,
                help=_help(field, "on" if default else "off"),
            )
        else:
            parser.add_argument(f"--{name}", type=field.type, default=None, help=_help(field, repr(default)))


def config_overrides(args: argparse.Namespace) -> Dict[str, object]:
    """The settings given on the command line, as ``PipelineConfig`` keyword arguments."""
    overrides = {}
    for field in setting_fields():
        value = getattr(args, field.name)
        if value is not None:
            overrides[field.name] = tuple(value) if _is_tuple(field) else value
    return overrides


def local_model(parser: argparse.ArgumentParser, args: argparse.Namespace) -> str:
    """``--model``, else the newest model pushed in ``--workdir``: a local folder, or a one-line usage error."""
    try:
        model_dir = model_or_newest(args.model, args.workdir)
    except FileNotFoundError as e:
        parser.error(str(e))
    if not os.path.isdir(model_dir):
        parser.error(f"no model at {model_dir}: pass the folder of an exported model with --model")
    return model_dir
