"""``Ensembler``: several Trainers' models combined into one, for the Evaluator and the Pusher.

The members are scored on the calibration split; weights (hill climbing) or a stacker are
fitted there, the decision thresholds tuned on the combination, and one SavedModel that runs
every member is exported (``trainer/ensemble_export.py``). The eval split is only scored.

In ``create_pipeline`` (``config.ensemble.members`` lists the members' settings)::

    trainers = [Trainer(...).with_id(f"Trainer_{i}") for i, member in enumerate(members)]
    ensembler = Ensembler(examples=example_gen.outputs["examples"],
                          **{member_key(i): t.outputs["model"] for i, t in enumerate(trainers)},
                          method=config.ensemble.method, min_positives=settings.min_positives,
                          calibration_folds=settings.calibration_folds,
                          eval_batch_size=settings.eval_batch_size, seed=settings.seed)
"""

from tfx import v1 as tfx
from tfx.utils import path_utils

from trainer import ensemble_export

InputArtifact, OutputArtifact = tfx.dsl.components.InputArtifact, tfx.dsl.components.OutputArtifact
Parameter = tfx.dsl.components.Parameter
standard_artifacts = tfx.types.standard_artifacts
MAX_MEMBERS = 8  # a @component has a fixed set of inputs: members are model_1 .. model_8


def member_key(index: int) -> str:
    """The Ensembler's input name of the member at ``index`` (0-based)."""
    if not 0 <= index < MAX_MEMBERS:
        raise ValueError(f"an ensemble has at most {MAX_MEMBERS} members, not {index + 1}")
    return f"model_{index + 1}"


@tfx.dsl.components.component
def Ensembler(
    examples: InputArtifact[standard_artifacts.Examples],
    model_1: InputArtifact[standard_artifacts.Model],
    model: OutputArtifact[standard_artifacts.Model],
    # No defaults: the pipeline passes PipelineConfig's (trainer/settings.py defines them).
    method: Parameter[str],
    min_positives: Parameter[int],
    calibration_folds: Parameter[int],
    eval_batch_size: Parameter[int],
    seed: Parameter[int],
    model_2: InputArtifact[standard_artifacts.Model] = None,
    model_3: InputArtifact[standard_artifacts.Model] = None,
    model_4: InputArtifact[standard_artifacts.Model] = None,
    model_5: InputArtifact[standard_artifacts.Model] = None,
    model_6: InputArtifact[standard_artifacts.Model] = None,
    model_7: InputArtifact[standard_artifacts.Model] = None,
    model_8: InputArtifact[standard_artifacts.Model] = None,
) -> None:
    """Combines the member models (``model_1`` .. ``model_8``) into ``model``."""
    members = [m for m in (model_1, model_2, model_3, model_4, model_5, model_6, model_7, model_8) if m is not None]
    report = ensemble_export.combine_and_export(
        [path_utils.serving_model_path(m.uri) for m in members],
        examples.uri,
        path_utils.serving_model_dir(model.uri),
        method,
        min_positives,
        calibration_folds,
        eval_batch_size,
        seed,
    )
    model.set_string_custom_property("ensemble_method", method)
    model.set_int_custom_property("ensemble_members", len(members))
    model.set_string_custom_property("served_rule", report["served_rule"])
