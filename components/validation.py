"""The validation stop before Transform: ExampleValidator's anomalies become one clear error.

TFX's ExampleValidator writes anomalies and carries on; Transform and the Trainer would then
run on data that breaks the contract (``pipeline/schema.py``). ``ValidationGate``
(``components/validation_gate.py``) reads the anomalies of every split, and the statistics
for splits with no examples (TFDV reports no anomaly for an empty split), and stops the run
with one line that names the split, the feature and what is wrong; with ``warn_only`` it
logs the same line and lets the data through.

This module holds the plain logic (no TFX import), so the command line can catch the error.
"""

import logging
from typing import Iterable, List, Mapping

from tensorflow_metadata.proto.v0 import anomalies_pb2, schema_pb2

log = logging.getLogger(__name__)


class DataValidationError(ValueError):
    """The examples break the curated schema."""


def _domain(feature: schema_pb2.Feature) -> str:
    if feature.HasField("int_domain") and feature.int_domain.HasField("max"):
        return f" (the schema allows {feature.int_domain.min}..{feature.int_domain.max})"
    return ""


def anomaly_lines(split: str, anomalies: anomalies_pb2.Anomalies, schema: schema_pb2.Schema) -> List[str]:
    """One line per anomalous feature (and one for dataset-level anomalies) of a split.

    Args:
      split: the split's name, e.g. ``eval``.
      anomalies: TFDV's anomalies for that split (ExampleValidator's ``SchemaDiff.pb``).
      schema: the schema they were validated against, to quote a violated domain.
    """
    features = {f.name: f for f in schema.feature}
    lines = []
    for name in sorted(anomalies.anomaly_info):
        info = anomalies.anomaly_info[name]
        reasons = (
            "; ".join(f"{r.short_description}: {r.description}" for r in info.reason)
            or f"{info.short_description}: {info.description}"
        )
        lines.append(
            f"split '{split}', feature '{name}': {reasons}{_domain(features[name]) if name in features else ''}"
        )
    if anomalies.HasField("dataset_anomaly_info"):
        info = anomalies.dataset_anomaly_info
        lines.append(f"split '{split}': {info.short_description}: {info.description}")
    return lines


def empty_split_line(split: str, num_examples: int) -> List[str]:
    """A line for a split without examples (TFDV's validation passes an empty split)."""
    return [f"split '{split}': no examples (the schema requires at least one)"] if num_examples == 0 else []


def enforce(problems: Iterable[str], warn_only: bool) -> List[str]:
    """Stops on the first problem, naming how many others there are; with ``warn_only``, logs them all.

    Returns:
      The problems (empty when the data is valid), when not stopped.

    Raises:
      DataValidationError: one line: the first problem, the count of the rest, and the way out.
    """
    problems = list(problems)
    if not problems:
        return problems
    if warn_only:
        for line in problems:
            log.warning("data validation (warn only, continuing): %s", line)
        return problems
    more = f" (and {len(problems) - 1} more: {' | '.join(problems[1:])})" if len(problems) > 1 else ""
    raise DataValidationError(
        f"data validation stopped the run before Transform: {problems[0]}{more}. Fix the data or the schema, "
        f"or pass --warn_only to continue anyway"
    )


def check_splits(
    anomalies_by_split: Mapping[str, anomalies_pb2.Anomalies],
    examples_by_split: Mapping[str, int],
    schema: schema_pb2.Schema,
    warn_only: bool,
    extra: Iterable[str] = (),
) -> List[str]:
    """Every split's problems, then ``extra`` ones (drift), enforced (see ``enforce``)."""
    problems = []
    for split in sorted(set(anomalies_by_split) | set(examples_by_split)):
        problems += empty_split_line(split, examples_by_split.get(split, 1))
        if split in anomalies_by_split:
            problems += anomaly_lines(split, anomalies_by_split[split], schema)
    return enforce(problems + list(extra), warn_only)
