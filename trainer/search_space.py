"""What the Tuner may search: the Trainer settings that matter, each with its range.

``--tune_search`` names the settings searched (``DEFAULT_SEARCH`` unless given); each one's
range is declared with the setting (``trainer/settings.py``) and collected in ``SPACE``. Every
range holds the run's own value, which is also each setting's default in the search: the
Tuner's first trial trains the configuration as given (``trainer/tuning.py``), so the best
trial is never one the search did worse than.

This module imports neither TensorFlow nor KerasTuner.
"""

import dataclasses
import difflib
from typing import Any, Dict, List, Mapping, Sequence, Tuple

from imat_common.settings import SettingsError, is_tuned, search_of, typed
from trainer.settings import TrainerSettings

TUNE_CONFIG = "tune"  # the Tuner's custom_config key: {trials, steps, search, algorithm, seed}
ALGORITHMS = ("random", "bayesian")
LOG = "log"  # a float searched on a log scale between two bounds
LINEAR = "linear"  # a float searched between two bounds, in steps
CHOICE = "choice"  # one of a few values


@dataclasses.dataclass(frozen=True)
class Dimension:
    """One setting's range: ``(low, high)`` for LOG, ``(low, high, step)`` for LINEAR, the values for CHOICE."""

    name: str
    kind: str
    values: Tuple[Any, ...]

    def including(self, value: Any) -> "Dimension":
        """This range widened, where needed, to hold ``value`` (the run's own setting)."""
        if self.kind == CHOICE:
            return self if value in self.values else dataclasses.replace(self, values=(value,) + self.values)
        low, high = min(self.values[0], value), max(self.values[1], value)
        return dataclasses.replace(self, values=(low, high) + tuple(self.values[2:]))


# Each range is declared with its setting (``setting(search=...)`` in trainer/settings.py).
SPACE: Mapping[str, Dimension] = {
    f.name: Dimension(f.name, search_of(f)[0], search_of(f)[1:])
    for f in dataclasses.fields(TrainerSettings)
    if search_of(f)
}
# Searched when --tune_search names nothing (``setting(tuned=True)``): what matters most for the
# least training per trial; the backbone is offered, not searched by default: each backbone
# needs its own budget to compare fairly.
DEFAULT_SEARCH: Tuple[str, ...] = tuple(f.name for f in dataclasses.fields(TrainerSettings) if is_tuned(f))


def dimensions(settings: TrainerSettings, names: Sequence[str]) -> Tuple[List[Dimension], Dict[str, str]]:
    """The ranges searched for ``settings``, each holding its current value, and what is left out and why.

    A learning rate that no training step would use is left out: ``head_learning_rate`` when
    no step trains the head alone (``head_steps_fraction`` 0 and not searched),
    ``fine_tune_learning_rate`` when every step does (1).

    Raises:
      SettingsError: a name that is not searchable (with the closest names), a repeated name,
        or nothing left to search.
    """
    names = list(names) or list(DEFAULT_SEARCH)
    for name in names:
        if name not in SPACE:
            close = difflib.get_close_matches(name, SPACE, n=2)
            hint = f"; did you mean {' or '.join(close)}?" if close else ""
            raise SettingsError(f"tune_search: {name!r} cannot be searched{hint} (searchable: {', '.join(SPACE)})")
    if len(set(names)) < len(names):
        raise SettingsError(f"tune_search names a setting twice: {names}")
    left_out: Dict[str, str] = {}
    if "head_steps_fraction" not in names:
        if settings.head_steps_fraction == 0 and "head_learning_rate" in names:
            left_out["head_learning_rate"] = "head_steps_fraction is 0: no step trains the head alone"
        if settings.head_steps_fraction == 1 and "fine_tune_learning_rate" in names:
            left_out["fine_tune_learning_rate"] = "head_steps_fraction is 1: no step fine-tunes"
    searched = [SPACE[n].including(getattr(settings, n)) for n in names if n not in left_out]
    if not searched:
        raise SettingsError(f"tune_search {names}: nothing left to search ({left_out})")
    return searched, left_out


def check_budget(budget: Mapping[str, Any], settings: TrainerSettings) -> None:
    """Refuses a search that cannot run: the pipeline calls it when the DAG is built, the Tuner when it starts.

    Args:
      budget: the ``TUNE_CONFIG`` entry (``pipeline.config.TuneSettings.custom_config``).

    Raises:
      SettingsError: trials or steps under 1, an unknown algorithm, or a search ``dimensions`` refuses.
    """
    for key in ("trials", "steps"):
        if int(budget.get(key, 0)) < 1:
            raise SettingsError(f"tune_{key} must be 1 or more, got {budget.get(key)}")
    if budget.get("algorithm", ALGORITHMS[0]) not in ALGORITHMS:
        raise SettingsError(f"tune_algorithm {budget.get('algorithm')!r}: use {' or '.join(ALGORITHMS)}")
    dimensions(settings, budget.get("search") or ())


def apply(settings: TrainerSettings, values: Mapping[str, Any], where: str = "the Tuner's hyperparameters"):
    """``settings`` with the searched ``values`` (a KerasTuner ``HyperParameters.values``) in place.

    Raises:
      SettingsError: a value names no Trainer setting, or does not fit its type.
    """
    fields = {f.name: f for f in dataclasses.fields(TrainerSettings)}
    unknown = sorted(set(values) - set(fields))
    if unknown:
        raise SettingsError(f"{where}: {unknown} are not Trainer settings")
    return dataclasses.replace(
        settings, **{name: typed(fields[name], value, f"{where}, {name}") for name, value in values.items()}
    )
