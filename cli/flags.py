"""Command-line flags generated from ``PipelineConfig``'s settings, for ``imat run`` and ``imat compile``.

Every setting declared with ``flag=True`` (``imat_common.settings``) is a flag of its public name,
typed as its field, booleans as ``--name`` / ``--no-name``, tuples repeated, its help from the
field's metadata. Locations are not flags: each command derives them from flags of its own
(``--workdir``, ``--data``, ``--pipeline_root``, ...).
"""

import argparse
import dataclasses
import os
from typing import Dict, List, Tuple

from imat_common.settings import help_of, is_flag, kind_of, name_of
from imat_common.workdir import model_or_newest
from pipeline.config import PipelineConfig


def setting_fields() -> List[Tuple[str, dataclasses.Field]]:
    """(public name, field) of the settings that get a flag each."""
    return [(name_of(f), f) for _, f in PipelineConfig.fields() if is_flag(f)]


def _help(field: dataclasses.Field, default: str) -> str:
    text = help_of(field).replace("%", "%%")  # argparse formats help
    return f"{text} (default: {default})" if text else f"default: {default}"


def add_config_flags(parser) -> None:
    """One flag per ``setting_fields()`` entry, left unset (None) unless given."""
    for name, field in setting_fields():
        default, kind = field.default, kind_of(field)
        if kind is tuple:
            parser.add_argument(
                f"--{name}",
                action="append",
                default=None,
                metavar="KEY=VALUE,...",
                help=_help(field, "none") + "; repeat, one per member",
            )
        elif kind is bool:
            parser.add_argument(
                f"--{name}",
                action=argparse.BooleanOptionalAction,
                default=None,
                help=_help(field, "on" if default else "off"),
            )
        else:
            parser.add_argument(f"--{name}", type=kind, default=None, help=_help(field, repr(default)))


def config_overrides(args: argparse.Namespace) -> Dict[str, object]:
    """The settings given on the command line, by public name (``PipelineConfig.with_settings``)."""
    overrides = {}
    for name, field in setting_fields():
        value = getattr(args, name)
        if value is not None:
            overrides[name] = tuple(value) if kind_of(field) is tuple else value
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
