"""The Evaluator's baseline resolution: the newest blessed model that is not the candidate."""

from tfx.types import standard_artifacts

from components.baseline import BLESSING_KEY, CANDIDATE_KEY, MODEL_KEY, LatestBlessedOtherModelStrategy, latest_blessed


def _model(model_id):
    model = standard_artifacts.Model()
    model.id = model_id
    return model


def _blessing(model_id, blessed, blessing_id):
    blessing = standard_artifacts.ModelBlessing()
    blessing.id = blessing_id
    blessing.set_int_custom_property("current_model_id", model_id)
    blessing.set_int_custom_property("blessed", int(blessed))
    return blessing


MODELS = [_model(1), _model(2), _model(3)]
BLESSINGS = [_blessing(1, True, 11), _blessing(2, True, 12), _blessing(3, False, 13)]


def test_newest_blessed_model_wins_and_unblessed_are_skipped():
    result = latest_blessed(MODELS, BLESSINGS)
    assert [m.id for m in result[MODEL_KEY]] == [2]
    assert [b.id for b in result[BLESSING_KEY]] == [12]


def test_the_candidate_is_never_its_own_baseline():
    assert [m.id for m in latest_blessed(MODELS, BLESSINGS, exclude_ids=[2])[MODEL_KEY]] == [1]
    # A rerun of the first training: its model is the only blessed one, so there is no baseline, as before.
    assert latest_blessed(MODELS[:1], BLESSINGS[:1], exclude_ids=[1]) == {MODEL_KEY: [], BLESSING_KEY: []}


def test_strategy_passes_the_candidate_through():
    result = LatestBlessedOtherModelStrategy().resolve_artifacts(
        None, {MODEL_KEY: MODELS, BLESSING_KEY: BLESSINGS, CANDIDATE_KEY: [MODELS[1]]}
    )
    assert [m.id for m in result[MODEL_KEY]] == [1]
    assert [m.id for m in result[CANDIDATE_KEY]] == [2]
    empty = LatestBlessedOtherModelStrategy().resolve_artifacts(
        None, {MODEL_KEY: [], BLESSING_KEY: [], CANDIDATE_KEY: []}
    )
    assert empty[MODEL_KEY] == [] and empty[BLESSING_KEY] == []
