"""The Evaluator's blessing, decided on three conditions: the bound, the trivial baseline, the last blessed model.

TFMA's gate (``pipeline.pipeline.eval_config``) blesses a model whose eval micro-F1 is at least
``micro_f1_lower_bound`` and not below the last blessed model's. Neither tells a model that learnt
nothing: each task's most frequent train label, given to every image (the trivial baseline,
``trainer/trivial_baseline.py``), scored 0.53 on unseen photos of a real catalogue, well above a
bound of 0.3. So a blessed model must also score above the trivial baseline on the same eval
split, plus ``baseline_margin``. The baseline's eval micro-F1 is the one the Trainer (or the
Ensembler) wrote into the candidate's ``thresholds.json`` (``micro_f1["baseline"]["eval"]``).

The Evaluator's executor (``pipeline.run_parameters.EvaluatorExecutor``) applies ``gate_blessing``
to its own ModelBlessing once TFMA has written it, rather than a component after the Evaluator
writing a second blessing: the Evaluator's ModelBlessing is what the Pusher reads and what both
baseline resolvers look for (``components/baseline.py`` here, TFX's ``LatestBlessedModelStrategy``,
the only one KFP v2 compiles, on Kubeflow). A second blessing would leave the Evaluator's
``blessed=1`` in ML Metadata, and on Kubeflow a model refused for the trivial baseline would still
become the next run's baseline model.

``decide`` is the decision on plain numbers; the blessing's custom properties record each
condition's value, which failed and one line that names them (``imat run`` prints it).
"""

import dataclasses
import math
from typing import Dict, List, Optional, Tuple

MICRO_F1 = "micro_f1"  # the gate metric's name in the EvalConfig
# TFMA's change threshold against the last blessed model: not lower, up to float noise.
CHANGE_TOLERANCE = 1e-10

# The conditions, by the name the blessing's ``gate_failed`` property lists.
LOWER_BOUND = "micro_f1_lower_bound"
TRIVIAL_BASELINE = "trivial_baseline"
LAST_BLESSED = "last_blessed_model"
EVALUATOR = "evaluator"  # TFMA refused for a reason none of the above names (should not happen)

# The blessing's custom properties.
BLESSED = "blessed"  # TFX's: what the Pusher and the resolvers read
TFMA_BLESSED = "tfma_blessed"  # TFMA's own verdict on the bound and the last blessed model
GATE_MICRO_F1 = "gate_micro_f1"
GATE_LOWER_BOUND = "gate_micro_f1_lower_bound"
GATE_TRIVIAL_BASELINE = "gate_trivial_baseline"
GATE_BASELINE_MARGIN = "gate_baseline_margin"
GATE_LAST_BLESSED = "gate_last_blessed_micro_f1"
# TFMA's 95 % interval of candidate minus last blessed model, paired on the same eval examples.
GATE_DIFFERENCE_LOWER = "gate_difference_lower"
GATE_DIFFERENCE_UPPER = "gate_difference_upper"
GATE_FAILED = "gate_failed"  # the failed conditions' names, comma-separated; "" when blessed
GATE_MESSAGE = "gate_message"  # "blessed: ..." or "NOT blessed: ...", one line


@dataclasses.dataclass(frozen=True)
class Condition:
    """One condition of the blessing.

    Attributes:
      name: ``LOWER_BOUND``, ``TRIVIAL_BASELINE``, ``LAST_BLESSED`` or ``EVALUATOR``.
      passed: whether it holds.
      text: what was found, a clause ready for the summary.
    """

    name: str
    passed: bool
    text: str


@dataclasses.dataclass(frozen=True)
class Decision:
    """The blessing and why: every condition, and the numbers they compared."""

    micro_f1: float
    lower_bound: float
    trivial_baseline: Optional[float]
    margin: float
    last_blessed: Optional[float]
    conditions: Tuple[Condition, ...]
    difference_interval: Optional[Tuple[float, float]] = None

    @property
    def blessed(self) -> bool:
        return all(c.passed for c in self.conditions)

    @property
    def failed(self) -> List[str]:
        """The names of the conditions that do not hold, in the order checked."""
        return [c.name for c in self.conditions if not c.passed]

    def message(self) -> str:
        """One line: "NOT blessed: " and every failed condition, or "blessed: " and every condition."""
        if self.blessed:
            return f"blessed: eval micro-F1 {_f1(self.micro_f1)} is " + _join([c.text for c in self.conditions])
        return "NOT blessed: " + "; ".join(c.text for c in self.conditions if not c.passed)

    def custom_properties(self) -> Dict[str, object]:
        """The blessing's custom properties (``GATE_*``) and ``blessed`` as 0 or 1."""
        properties: Dict[str, object] = {
            BLESSED: int(self.blessed),
            GATE_MICRO_F1: self.micro_f1,
            GATE_LOWER_BOUND: self.lower_bound,
            GATE_BASELINE_MARGIN: self.margin,
            GATE_FAILED: ",".join(self.failed),
            GATE_MESSAGE: self.message(),
        }
        if self.trivial_baseline is not None:
            properties[GATE_TRIVIAL_BASELINE] = self.trivial_baseline
        if self.last_blessed is not None:
            properties[GATE_LAST_BLESSED] = self.last_blessed
        if self.difference_interval is not None:
            properties[GATE_DIFFERENCE_LOWER], properties[GATE_DIFFERENCE_UPPER] = self.difference_interval
        return properties


def _f1(value: float) -> str:
    return "(missing)" if math.isnan(value) else f"{value:.3f}"


def difference_text(micro_f1: float, last_blessed: float, interval: Optional[Tuple[float, float]]) -> str:
    """ "difference +0.012 (95 % interval -0.020 to +0.044)", the interval left out where there is none."""
    text = f"difference {micro_f1 - last_blessed:+.3f}"
    if interval is not None and not any(math.isnan(v) for v in interval):
        text += f" (95 % interval {interval[0]:+.3f} to {interval[1]:+.3f})"
    return text


def _join(parts: List[str]) -> str:
    return parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]


def decide(
    micro_f1: float,
    lower_bound: float,
    trivial_baseline: Optional[float],
    margin: float,
    last_blessed: Optional[float] = None,
    evaluator_blessed: bool = True,
    difference_interval: Optional[Tuple[float, float]] = None,
) -> Decision:
    """Whether the model is blessed: each condition, the failed ones named.

    Args:
      micro_f1: the model's micro-F1 on the eval split (TFMA's, the gated number); NaN if missing.
      lower_bound: ``micro_f1_lower_bound``: blessed at or above it.
      trivial_baseline: the trivial baseline's micro-F1 on the same split; None where the model's
        ``thresholds.json`` has none, which refuses the model (nothing shows it learnt anything).
      margin: ``baseline_margin``: blessed only above ``trivial_baseline + margin``.
      last_blessed: the last blessed model's micro-F1 on the same split; None for the first model.
      evaluator_blessed: TFMA's verdict. Where it refused but every condition here holds, an
        ``EVALUATOR`` condition fails, so a refusal is never turned into a blessing.
      difference_interval: TFMA's 95 % interval of ``micro_f1 - last_blessed`` on the same
        examples, if it computed one; reported, not gated (the gate compares the point values).
    """
    score = _f1(micro_f1)
    # NaN compares False: a missing score fails the bound and the baseline.
    conditions = [
        Condition(LOWER_BOUND, True, f"at least the lower bound {lower_bound:g}")
        if micro_f1 >= lower_bound
        else Condition(LOWER_BOUND, False, f"eval micro-F1 {score} is below the lower bound {lower_bound:g}")
    ]
    if trivial_baseline is None:
        conditions.append(
            Condition(
                TRIVIAL_BASELINE,
                False,
                "the model's thresholds.json gives no trivial baseline on the eval split: retrain it",
            )
        )
    elif micro_f1 > trivial_baseline + margin:
        conditions.append(
            Condition(TRIVIAL_BASELINE, True, f"above the trivial baseline {trivial_baseline:.3f} + margin {margin:g}")
        )
    else:
        conditions.append(
            Condition(
                TRIVIAL_BASELINE,
                False,
                f"eval micro-F1 {score} is not above the trivial baseline {trivial_baseline:.3f} + margin {margin:g}",
            )
        )
    if last_blessed is None:
        conditions.append(Condition(LAST_BLESSED, True, "the first to be compared (no blessed model before it)"))
    elif micro_f1 - last_blessed >= -CHANGE_TOLERANCE:
        difference = difference_text(micro_f1, last_blessed, difference_interval)
        conditions.append(
            Condition(LAST_BLESSED, True, f"not worse than the last blessed model's {last_blessed:.3f}, {difference}")
        )
    else:
        difference = difference_text(micro_f1, last_blessed, difference_interval)
        worse = f"eval micro-F1 {score} is worse than the last blessed model's {last_blessed:.3f}, {difference}"
        conditions.append(Condition(LAST_BLESSED, False, worse))
    if not evaluator_blessed and all(c.passed for c in conditions):
        conditions.append(
            Condition(EVALUATOR, False, "TFMA's validation failed: see the evaluation's validations file")
        )
    interval = difference_interval if last_blessed is not None else None
    return Decision(micro_f1, lower_bound, trivial_baseline, margin, last_blessed, tuple(conditions), interval)


def trivial_baseline_of(report: dict) -> Optional[float]:
    """The trivial baseline's eval micro-F1 in a ``thresholds.json`` report, or None without one."""
    from trainer.rules import BASELINE

    value = report.get("micro_f1", {}).get(BASELINE, {}).get("eval")
    return None if value is None else float(value)


@dataclasses.dataclass(frozen=True)
class Scores:
    """The gate metric in a TFMA evaluation's overall slice.

    Attributes:
      candidate: the candidate's micro-F1; NaN when the evaluation lacks it.
      last_blessed: the last blessed model's; None when the Evaluator had no baseline model.
      difference_interval: TFMA's 95 % interval of candidate minus last blessed (``diff``
        metric), None without a baseline model or without ``confidence_intervals``.
    """

    candidate: float = math.nan
    last_blessed: Optional[float] = None
    difference_interval: Optional[Tuple[float, float]] = None


def read_micro_f1(evaluation_uri: str) -> Scores:
    """The gated micro-F1 of the overall slice in a TFMA evaluation, the last blessed model's and the difference."""
    import tensorflow_model_analysis as tfma
    from imat_common.serving import DECISIONS

    candidate, last, interval = math.nan, None, None
    for metrics in tfma.load_metrics(evaluation_uri):
        if metrics.slice_key.single_slice_keys:  # the overall slice only
            continue
        for item in metrics.metric_keys_and_values:
            key = item.key
            if key.name != MICRO_F1 or key.output_name != DECISIONS or key.HasField("sub_key"):
                continue
            if key.is_diff:
                bounds = item.confidence_interval
                if bounds.HasField("lower_bound") and bounds.HasField("upper_bound"):
                    interval = (bounds.lower_bound.double_value.value, bounds.upper_bound.double_value.value)
            # Without a baseline model the candidate's metrics have no model name.
            elif key.model_name == tfma.BASELINE_KEY:
                last = item.value.double_value.value
            else:
                candidate = item.value.double_value.value
    return Scores(candidate, last, interval if last is not None else None)


def gate_blessing(model, evaluation_uri: str, blessing, lower_bound: float, margin: float) -> Decision:
    """Decides on the Evaluator's output and rewrites its blessing where a condition fails.

    Args:
      model: the candidate Model artifact (its ``thresholds.json`` gives the trivial baseline).
      evaluation_uri: the Evaluator's ModelEvaluation folder, as TFMA wrote it.
      blessing: the Evaluator's ModelBlessing, as TFMA blessed it; its ``blessed`` property and
        its ``BLESSED`` / ``NOT_BLESSED`` file are replaced by the decision, TFMA's verdict kept
        as ``tfma_blessed``.
      lower_bound: the bound TFMA applied.
      margin: ``baseline_margin``.

    Returns:
      The decision, also recorded in the blessing's custom properties.
    """
    import logging
    import os

    from tfx.components.evaluator import constants
    from tfx.dsl.io import fileio
    from tfx.utils import io_utils, path_utils

    from imat_common.serving import read_thresholds

    try:
        trivial = trivial_baseline_of(read_thresholds(path_utils.serving_model_path(model.uri)))
    except (OSError, ValueError) as e:  # no thresholds.json, or not JSON: nothing to compare with
        logging.warning("no trivial baseline for %s: %s", model.uri, e)
        trivial = None
    scores = read_micro_f1(evaluation_uri)
    tfma_blessed = blessing.get_int_custom_property(BLESSED) == constants.BLESSED_VALUE
    decision = decide(
        scores.candidate, lower_bound, trivial, margin, scores.last_blessed, tfma_blessed, scores.difference_interval
    )
    blessing.set_int_custom_property(TFMA_BLESSED, int(tfma_blessed))
    for name, value in decision.custom_properties().items():
        if isinstance(value, int):
            blessing.set_int_custom_property(name, value)
        elif isinstance(value, float):
            blessing.set_float_custom_property(name, value)
        else:
            blessing.set_string_custom_property(name, str(value))
    if tfma_blessed and not decision.blessed:
        # The Pusher and the resolvers read the property; a reader of the folder, the file.
        fileio.remove(os.path.join(blessing.uri, constants.BLESSED_FILE_NAME))
        io_utils.write_string_file(os.path.join(blessing.uri, constants.NOT_BLESSED_FILE_NAME), "")
    logging.info("%s", decision.message())
    return decision
