"""The Evaluator's baseline: the latest blessed model other than the one being evaluated.

TFX's ``LatestBlessedModelStrategy`` runs before the Trainer, so a rerun with nothing
changed hands the Evaluator the model it is about to evaluate as its own baseline: the
Evaluator's inputs differ from the first run's, it re-evaluates the model against itself,
and Pusher pushes the same model a second time. This strategy also receives the Trainer's
output of the current run and leaves it out, so an unchanged rerun resolves the same
baseline as before and every execution is reused.
"""

from typing import Dict, List, Optional, Sequence

from tfx import types
from tfx.dsl.components.common import resolver

# The custom properties the Evaluator sets on its ModelBlessing artifacts. ``blessed`` is the
# gate's final decision, every condition included (components/quality_gate.py): a model refused
# for the trivial baseline after TFMA blessed it is not blessed here, so never a baseline.
_CURRENT_MODEL_ID = "current_model_id"
_BLESSED = "blessed"

MODEL_KEY = "model"
BLESSING_KEY = "model_blessing"
CANDIDATE_KEY = "candidate"


def latest_blessed(
    models: Sequence[types.Artifact], blessings: Sequence[types.Artifact], exclude_ids: Sequence[int] = ()
) -> Dict[str, List[types.Artifact]]:
    """Picks the newest blessed model whose id is not excluded, with its blessing.

    Args:
      models: Model artifacts.
      blessings: ModelBlessing artifacts, blessed or not.
      exclude_ids: ids of models that may not be the answer (the candidate itself).

    Returns:
      ``{"model": [m], "model_blessing": [b]}``, or empty lists when no model qualifies.
    """
    blessed = {
        b.get_int_custom_property(_CURRENT_MODEL_ID): b for b in blessings if b.get_int_custom_property(_BLESSED) == 1
    }
    for model in sorted(models, key=lambda m: m.id, reverse=True):
        if model.id in blessed and model.id not in set(exclude_ids):
            return {MODEL_KEY: [model], BLESSING_KEY: [blessed[model.id]]}
    return {MODEL_KEY: [], BLESSING_KEY: []}


class LatestBlessedOtherModelStrategy(resolver.ResolverStrategy):
    """Resolves the latest blessed model that is not this run's candidate.

    Inputs: ``model`` (every Model), ``model_blessing`` (every ModelBlessing) and
    ``candidate`` (the Trainer's output in this run).
    """

    def resolve_artifacts(
        self, store, input_dict: Dict[str, List[types.Artifact]]
    ) -> Optional[Dict[str, List[types.Artifact]]]:
        candidates = input_dict.get(CANDIDATE_KEY, [])
        result = latest_blessed(
            input_dict.get(MODEL_KEY, []), input_dict.get(BLESSING_KEY, []), exclude_ids=[c.id for c in candidates]
        )
        result[CANDIDATE_KEY] = list(candidates)
        return result
