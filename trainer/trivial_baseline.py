"""The trivial baseline printed beside every score: each task's most frequent train label, for every image.

Its micro-F1 is what a model must beat to have learnt anything from the pixels. The counts
come from Transform's analysis of ExampleGen's train split: ``preprocessing_fn`` writes a
vocabulary of the train label ids with their frequencies (``LABEL_FREQUENCIES``), so the
count is one more full pass Transform already makes, on Dataflow too, not a second read of
the images in the Trainer.
"""

import collections
from typing import Dict, Iterable, List, Mapping, Optional

from imat_common.features import LabelMap

LABEL_FREQUENCIES = "train_label_frequencies"  # the vocabulary's name in the transform output


def parse_frequencies(lines: Iterable[str], source: str = "<label frequencies>") -> Dict[int, int]:
    """Label id -> train examples carrying it, from TFT's ``store_frequency`` vocabulary lines ("count id").

    Raises:
      ValueError: naming the file and line that is not "count id".
    """
    result = {}
    for line_no, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        parts = line.split()
        try:
            count, label_id = int(parts[0]), int(parts[1])
        except (IndexError, ValueError):
            raise ValueError(f"{source}, line {line_no}: expected 'count label_id', got {line.strip()!r}") from None
        result[label_id] = result.get(label_id, 0) + count
    return result


def read_frequencies(tf_transform_output) -> Dict[int, int]:
    """The train label frequencies stored in a ``tft.TFTransformOutput``."""
    import tensorflow as tf

    path = tf_transform_output.vocabulary_file_by_name(LABEL_FREQUENCIES)
    with tf.io.gfile.GFile(path) as f:
        return parse_frequencies(f, source=path)


def most_frequent_per_task(frequencies: Mapping[int, int], label_map: Optional[LabelMap]) -> List[int]:
    """For each task of the label map, its label with the most train examples (the lowest id on a tie).

    Ids the label map does not list are ignored, and a task no train example carries gives no
    label. Without a label map all labels form one task.
    """
    task_of = (
        {label.label_id: label.task_id for label in label_map.labels}
        if label_map
        else {label_id: 0 for label_id in frequencies}
    )
    best: Dict[int, tuple] = collections.OrderedDict()
    for label_id, count in sorted(frequencies.items()):
        if label_id not in task_of or count <= 0:
            continue
        task = task_of[label_id]
        if task not in best or count > best[task][0]:
            best[task] = (count, label_id)
    return sorted(label_id for _, label_id in best.values())
