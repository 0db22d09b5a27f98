"""Command-line flags generated from ``PipelineConfig``'s fields, for ``imat run`` and ``imat compile``.

Every field is a flag of the same name, typed as the field, booleans as ``--name`` /
``--no-name``, tuples repeated, except ``LOCATION_FIELDS``: where the data, the label map and
the outputs are, which each command derives from flags of its own (``--workdir``, ``--data``,
``--pipeline_root``, ...).
"""

import argparse
import dataclasses
from typing import Dict, List

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
                help="repeat: one per ensemble member, e.g. backbone=xception,seed=1",
            )
        elif field.type is bool:
            parser.add_argument(
                f"--{name}",
                action=argparse.BooleanOptionalAction,
                default=None,
                help=f"default: {'on' if default else 'off'}",
            )
        else:
            parser.add_argument(f"--{name}", type=field.type, default=None, help=f"default: {default!r}")


def config_overrides(args: argparse.Namespace) -> Dict[str, object]:
    """The settings given on the command line, as ``PipelineConfig`` keyword arguments."""
    overrides = {}
    for field in setting_fields():
        value = getattr(args, field.name)
        if value is not None:
            overrides[field.name] = tuple(value) if _is_tuple(field) else value
    return overrides
