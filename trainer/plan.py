"""The training plan: which layers train, at which learning rate and image size, step by step.

``run_fn`` cuts training into segments (a phase change, a progressive-resizing change) and
applies each segment's plan as it reaches it; nothing about phases is decided in the loop.
A plan of no head-only steps starts fine-tuning at step 0 with its own learning rate: a
from-scratch network must train its backbone from the first step (a frozen random backbone
gives the sigmoids random features, and the model learns nothing from the pixels).

This module imports neither TensorFlow nor Keras.
"""

import dataclasses
import math
from typing import List, Optional

from trainer.settings import TrainerSettings

HEAD = "head"  # the backbone frozen: only the layers after pooling train
FINE_TUNE = "fine_tune"  # the head and the backbone from ``fine_tune_from`` on


@dataclasses.dataclass(frozen=True)
class Segment:
    """Steps [first, last) trained with one trainable set, one learning rate and one image size."""

    first: int
    last: int
    phase: str  # HEAD or FINE_TUNE
    learning_rate: float
    image_size: int
    progressive: bool  # image_size is the progressive (smaller) size, resized in the input

    @property
    def steps(self) -> int:
        return self.last - self.first

    def describe(self, total: int, first_fine_tuned_layer: str) -> str:
        """One log line: the phase, what trains, the steps, the learning rate and the image size."""
        what = (
            "phase 1: head only (backbone frozen)"
            if self.phase == HEAD
            else f"phase 2: head and backbone from {first_fine_tuned_layer or 'its first layer'} on"
        )
        return (
            f"{what}, steps {self.first + 1}-{self.last} of {total} at lr {self.learning_rate:g}, {self.image_size} px"
        )


def training_steps(settings: TrainerSettings, train_steps: int, train_examples: Optional[int]) -> int:
    """The run's training steps: ``train_epochs`` passes over the train split, or else ``train_steps``.

    Args:
      train_steps: the pipeline's fixed count (the Trainer's ``TrainArgs``), used when
        ``settings.train_epochs`` is 0.
      train_examples: the train split's size (``preprocessing.read_example_count``); needed
        only with ``train_epochs``.

    Raises:
      ValueError: ``train_epochs`` is negative, or set while the train split's size is unknown or 0.
    """
    epochs = settings.train_epochs
    if epochs < 0:
        raise ValueError(f"train_epochs must be 0 (train by train_steps) or more, got {epochs}")
    if not epochs:
        return int(train_steps)
    if not train_examples:
        raise ValueError(f"train_epochs {epochs} needs the train split's size, and it is {train_examples}")
    return max(1, math.ceil(epochs * train_examples / settings.batch_size))


def epochs_trained(steps: int, batch_size: int, train_examples: Optional[int]) -> Optional[float]:
    """Passes over the train split that ``steps`` batches make; None when its size is unknown."""
    return steps * batch_size / train_examples if train_examples else None


def head_steps(total: int, settings: TrainerSettings) -> int:
    """Phase one's steps: ``head_steps_fraction`` of ``total``, rounded, within [0, total]."""
    return max(0, min(total, int(round(total * settings.head_steps_fraction))))


def training_plan(total: int, settings: TrainerSettings) -> List[Segment]:
    """The segments of ``total`` training steps, in order; they cover [0, total) without gaps.

    Phase one (``HEAD``, at ``head_learning_rate``) covers the first ``head_steps_fraction``
    of the steps, phase two (``FINE_TUNE``, at ``fine_tune_learning_rate``) the rest; with
    progressive resizing, the first ``progressive_fraction`` of the steps see
    ``progressive_image_size`` images. A fraction of 0 gives no phase-one segment, 1 no
    phase-two segment.

    Raises:
      ValueError: ``total`` is negative or a fraction is outside [0, 1].
    """
    if total < 0:
        raise ValueError(f"training steps must be 0 or more, got {total}")
    for name in ("head_steps_fraction", "progressive_fraction"):
        value = getattr(settings, name)
        if not 0.0 <= value <= 1.0:
            raise ValueError(f"{name} must be between 0 and 1, got {value}")
    head = head_steps(total, settings)
    small = (
        max(0, min(total, int(round(total * settings.progressive_fraction)))) if settings.progressive_image_size else 0
    )
    cuts = sorted({0, total, head, small})
    segments = []
    for first, last in zip(cuts, cuts[1:]):
        if last <= first:
            continue
        in_head, progressive = first < head, first < small
        segments.append(
            Segment(
                first=first,
                last=last,
                phase=HEAD if in_head else FINE_TUNE,
                learning_rate=settings.head_learning_rate if in_head else settings.fine_tune_learning_rate,
                image_size=settings.progressive_image_size if progressive else settings.image_size,
                progressive=progressive,
            )
        )
    return segments
