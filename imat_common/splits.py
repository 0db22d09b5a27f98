"""The pipeline's split names and where TFX keeps a split's files: the one definition every module uses.

ExampleGen (``components/calibration_split.py``) writes ``train`` from the train folder and cuts
the holdout folder into ``calibration`` (thresholds and the decision rule) and ``eval`` (the
Evaluator's gate). A split's files lie where TFX's ``artifact_utils`` says, under the Examples
artifact's URI.
"""

import os
from typing import Optional

TRAIN, CALIBRATION, EVAL = "train", "calibration", "eval"
HELD_OUT = (CALIBRATION, EVAL)  # what the Trainer scores after training (its EvalArgs splits)
MODEL_SPLITS = (TRAIN, CALIBRATION, EVAL)  # the splits of images; the catalogue of "more like this"
# With spans (``imat_common/spans.py``): the newest span's and the previous span's train folders,
# slimmed to what drift is measured on (labels, image size and bytes), for StatisticsGen and the
# ValidationGate only (``components/drift.py``).
DRIFT_NEW, DRIFT_PREVIOUS = "drift_new", "drift_previous"
DRIFT_SPLITS = (DRIFT_NEW, DRIFT_PREVIOUS)


def split_uri(examples_uri: str, split: str) -> str:
    """The folder of one split of the Examples artifact at ``examples_uri`` (TFX's layout)."""
    from tfx.types import artifact_utils, standard_artifacts  # lazy: the download job has no TFX

    examples = standard_artifacts.Examples()
    examples.uri = examples_uri
    examples.split_names = artifact_utils.encode_split_names([split])
    return artifact_utils.get_split_uri([examples], split)


def split_pattern(examples_uri: str, split: str) -> str:
    """A glob of one split's files."""
    return os.path.join(split_uri(examples_uri, split), "*")


def split_of(file_pattern: str) -> Optional[str]:
    """The split a file pattern under an Examples artifact belongs to (``split_pattern``'s inverse), or None."""
    folder = os.path.basename(os.path.dirname(file_pattern.rstrip("/")))
    prefix = os.path.basename(split_uri("", "x"))[: -len("x")]
    return folder[len(prefix) :] if folder.startswith(prefix) and len(folder) > len(prefix) else None
