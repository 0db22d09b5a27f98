"""imat submission: the Beam RunInference job on a small stand-in model, the CSV, and the rule scores."""

import gzip
import json
import os

import numpy as np
import pytest
import tensorflow as tf

from components.download.tfrecord import serialize_example, write_records
from cli import batch_scoring, submission
from trainer import rules
from imat_common.serving import thresholds_path

NUM_LABELS = 3


class _StandIn(tf.Module):
    """Scores label (id % 3) + 1 at 0.9 and the others at 0.2; decides at 0.5, as an export would."""

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="examples")])
    def serve(self, examples):
        ids = tf.io.parse_example(examples, {"image_id": tf.io.FixedLenFeature([], tf.string)})["image_id"]
        probabilities = tf.one_hot(tf.strings.to_number(ids, tf.int32) % 3, NUM_LABELS) * 0.7 + 0.2
        label_ids = tf.range(1, NUM_LABELS + 1, dtype=tf.int64)
        return {
            "probabilities": probabilities,
            "label_ids": tf.where(probabilities >= 0.5, label_ids, tf.zeros_like(label_ids)),
        }


def _report():
    return {
        "format": rules.REPORT_FORMAT,
        "served_rule": rules.FIXED,
        "thresholds": [0.5] * 3,
        "per_label_thresholds": [0.5, 0.1, 0.95],
        "tuned": [True, True, True],
        "global_threshold": 0.15,
        "baseline": {"rule": rules.BASELINE_RULE, "label_ids": [2]},
    }


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    path = str(tmp_path_factory.mktemp("model"))
    module = _StandIn()
    tf.saved_model.save(module, path, signatures={"serving_default": module.serve.get_concrete_function()})
    os.makedirs(os.path.dirname(thresholds_path(path)))
    with open(thresholds_path(path), "w") as f:
        json.dump(_report(), f)
    return path


def test_counts_per_image_and_their_sum():
    counts = batch_scoring.example_counts(
        np.array([0.9, 0.2, 0.2], np.float32), [1], [1, 2], batch_scoring.rule_thresholds(_report()), [2]
    )
    assert counts["submission"] == [1, 0, 1] and counts[rules.FIXED] == [1, 0, 1]
    assert counts[rules.PER_LABEL] == [2, 0, 0]  # label 2's threshold 0.1 catches it
    assert counts[rules.GLOBAL] == [2, 1, 0] and counts[rules.BASELINE] == [1, 0, 1]
    assert batch_scoring.sum_counts([{"a": [1, 2, 3], "n": 1}, {"a": [1, 0, 0], "n": 1}]) == {"a": [2, 2, 3], "n": 2}
    assert batch_scoring.csv_line("17", [3, 105]) == "17,3 105" and batch_scoring.csv_line("18", []) == "18,"
    with pytest.raises(ValueError, match="not format 2"):
        batch_scoring.rule_thresholds({"thresholds": [0.5]})


def test_job_writes_the_submission_and_scores_the_rules(model_dir, tmp_path, capsys):
    examples = str(tmp_path / "test-00000.tfrecord.gz")
    with gzip.open(examples, "wb") as f:
        write_records(f, [serialize_example({"image_id": str(i).encode(), "image/encoded": b"x"}) for i in range(6)])
    # True labels: (i % 3) + 1 for every image, plus label 2 on images 0 and 3; image 99 was never downloaded.
    truth = {str(i): [(i % 3) + 1] + ([2] if i in (0, 3) else []) for i in range(6)}
    truth["99"] = [1, 3]
    labels_file = tmp_path / "test_labels.json"
    labels_file.write_text(
        json.dumps({"annotations": [{"imageId": k, "labelId": [str(v) for v in vs]} for k, vs in truth.items()]})
    )
    output = str(tmp_path / "submission.csv")
    result = submission.main(
        [
            "--model",
            model_dir,
            "--examples",
            examples,
            "--output",
            output,
            "--labels",
            str(labels_file),
            "--batch_size",
            "4",
        ]
    )
    rows = open(output).read().splitlines()
    assert rows[0] == "image_id,label_id"
    assert sorted(rows[1:], key=lambda r: int(r.split(",")[0])) == [f"{i},{i % 3 + 1}" for i in range(6)]

    def f1(tp, fp, fn):
        return 2 * tp / (2 * tp + fp + fn)

    # 6 images each decide their one true-scoring label: tp 6; misses: label 2 on images 0 and 3, and image 99's 2.
    assert result["micro_f1"]["submission"] == pytest.approx(f1(6, 0, 4))
    assert result["micro_f1"][rules.FIXED] == result["micro_f1"]["submission"]
    # per_label: label 2 at 0.1 is decided for all 6 (2 of them false before: images 0/3 now true),
    # label 3 at 0.95 never.
    assert result["micro_f1"][rules.PER_LABEL] == pytest.approx(f1(4 + 2 + 0, 2, 2 + 2))
    assert result["micro_f1"][rules.BASELINE] == pytest.approx(f1(4, 2, 6))  # label 2 for all
    assert result["labelled_without_example"] == 1 and result["scored"] == 6
    printed = capsys.readouterr().out
    assert f"wrote {output}: 6 images" in printed and "baseline: most frequent train label per task" in printed
    assert json.load(open(str(tmp_path / "submission_scores.json")))["micro_f1"] == result["micro_f1"]


def test_a_bad_labels_file_is_named(tmp_path):
    path = tmp_path / "labels.json"
    path.write_text(
        json.dumps({"annotations": [{"imageId": "1", "labelId": ["3"]}, {"imageId": "2", "labelId": ["x"]}]})
    )
    with pytest.raises(
        ValueError, match=r"labels\.json, annotations\[1\] \(imageId 2\): label id 'x' is not an integer"
    ):
        submission.read_labels(str(path))
    path.write_text(json.dumps({"images": []}))
    with pytest.raises(ValueError, match="no annotations"):
        submission.read_labels(str(path))
