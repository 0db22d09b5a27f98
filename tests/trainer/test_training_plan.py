"""The training plan (``trainer/plan.py``): which phase, learning rate and image size each step has."""

import pytest

from trainer import plan
from trainer.settings import TrainerSettings


def _settings(**kw) -> TrainerSettings:
    return TrainerSettings(num_labels=3, image_size=75, head_learning_rate=1e-2, fine_tune_learning_rate=1e-4, **kw)


def _shape(segments):
    return [(s.first, s.last, s.phase, s.learning_rate, s.image_size, s.progressive) for s in segments]


H, F = plan.HEAD, plan.FINE_TUNE


def test_no_head_steps_fine_tunes_from_step_zero_at_the_fine_tuning_rate():
    # The regression: a head fraction of 0 trained only the sigmoids while the log said phase two.
    assert _shape(plan.training_plan(100, _settings(head_steps_fraction=0.0))) == [(0, 100, F, 1e-4, 75, False)]


def test_the_phases_split_at_the_head_fraction():
    assert _shape(plan.training_plan(100, _settings(head_steps_fraction=0.3))) == [
        (0, 30, H, 1e-2, 75, False),
        (30, 100, F, 1e-4, 75, False),
    ]
    assert _shape(plan.training_plan(100, _settings(head_steps_fraction=1.0))) == [(0, 100, H, 1e-2, 75, False)]


def test_progressive_resizing_cuts_each_phase_at_the_size_change():
    progressive = dict(progressive_image_size=48, progressive_fraction=0.5)
    assert _shape(plan.training_plan(100, _settings(head_steps_fraction=0.3, **progressive))) == [
        (0, 30, H, 1e-2, 48, True),
        (30, 50, F, 1e-4, 48, True),
        (50, 100, F, 1e-4, 75, False),
    ]
    assert _shape(plan.training_plan(100, _settings(head_steps_fraction=0.0, **progressive))) == [
        (0, 50, F, 1e-4, 48, True),
        (50, 100, F, 1e-4, 75, False),
    ]
    assert _shape(
        plan.training_plan(10, _settings(head_steps_fraction=0.0, progressive_image_size=48, progressive_fraction=1.0))
    ) == [(0, 10, F, 1e-4, 48, True)]


@pytest.mark.parametrize("total", [0, 1, 2, 7, 100])
@pytest.mark.parametrize("head", [0.0, 0.3, 0.5, 1.0])
@pytest.mark.parametrize("small", [0, 48])
def test_segments_cover_every_step_once_in_order(total, head, small):
    segments = plan.training_plan(total, _settings(head_steps_fraction=head, progressive_image_size=small))
    assert [s.first for s in segments] == ([0] + [s.last for s in segments[:-1]] if total else [])
    assert sum(s.steps for s in segments) == total and all(s.steps > 0 for s in segments)
    assert [s.phase for s in segments] == sorted((s.phase for s in segments), key=[H, F].index)  # head first


def test_the_log_line_says_what_trains():
    head, tune = plan.training_plan(10, _settings(head_steps_fraction=0.5))
    assert head.describe(10, "mixed9").startswith("phase 1: head only (backbone frozen), steps 1-5 of 10 at lr 0.01")
    assert tune.describe(10, "").startswith("phase 2: head and backbone from its first layer on, steps 6-10")


def test_bad_fractions_and_steps_are_refused():
    with pytest.raises(ValueError, match="head_steps_fraction must be between 0 and 1, got 1.5"):
        plan.training_plan(10, _settings(head_steps_fraction=1.5))
    with pytest.raises(ValueError, match="progressive_fraction"):
        plan.training_plan(10, _settings(progressive_image_size=48, progressive_fraction=-0.1))
    with pytest.raises(ValueError, match="training steps must be 0 or more"):
        plan.training_plan(-1, _settings())


def test_train_epochs_give_the_steps_from_the_train_splits_size():
    assert plan.training_steps(_settings(), 2000, None) == 2000  # train_epochs 0: the pipeline's steps
    assert plan.training_steps(_settings(train_epochs=2.0, batch_size=32), 2000, 1577) == 99  # ceil(3154 / 32)
    assert plan.training_steps(_settings(train_epochs=0.001, batch_size=32), 2000, 100) == 1  # at least a step
    assert plan.epochs_trained(99, 32, 1577) == pytest.approx(2.009, abs=1e-3)
    assert plan.epochs_trained(99, 32, None) is None
    with pytest.raises(ValueError, match="train_epochs 2.0 needs the train split's size"):
        plan.training_steps(_settings(train_epochs=2.0), 2000, None)
    with pytest.raises(ValueError, match="train_epochs must be 0"):
        plan.training_steps(_settings(train_epochs=-1.0), 2000, 10)
