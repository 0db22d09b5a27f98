"""``imat audit`` end to end on generated TFRecords with known flipped labels.

The model is a stand-in SavedModel with the exported model's ``serving_default`` interface
(serialized tf.Examples in, ``probabilities`` out) whose probabilities come from each example's
true labels, stored beside the given ones, with noise: what a good model trained on clean labels
would say. It refuses an example without image bytes, as the real model does.
"""

import csv
import io
import os

import numpy as np
import pytest

import imat_common.keras2  # noqa: F401  (Keras 2 before TensorFlow)
from cli import audit, label_issues
from imat_common import features
from imat_common.features import Label, write_label_map

NUM_LABELS = 8
TRUE_KEY = "true_labels"


def _jpeg(seed):
    from PIL import Image

    out = io.BytesIO()
    Image.new("RGB", (12, 12), (seed * 37 % 256, 90, 160)).save(out, "JPEG")
    return out.getvalue()


def _example(image_id, given, true, jpeg):
    import tensorflow as tf

    def ints(values):
        return tf.train.Feature(int64_list=tf.train.Int64List(value=values))

    def one_bytes(value):
        return tf.train.Feature(bytes_list=tf.train.BytesList(value=[value]))

    feature = {
        features.IMAGE_ID_KEY: one_bytes(image_id.encode()),
        features.IMAGE_KEY: one_bytes(jpeg),
        features.LABELS_KEY: ints(given),
        TRUE_KEY: ints(true),
    }
    return tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString()


def _stand_in_model(path):
    import tensorflow as tf

    class Model(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None], tf.string)])
        def serve(self, examples):
            parsed = tf.io.parse_example(
                examples,
                {
                    TRUE_KEY: tf.io.VarLenFeature(tf.int64),
                    features.IMAGE_KEY: tf.io.FixedLenFeature([], tf.string),
                    features.IMAGE_ID_KEY: tf.io.FixedLenFeature([], tf.string),
                },
            )
            tf.debugging.assert_greater(tf.strings.length(parsed[features.IMAGE_KEY]), 0, message="no image")
            true = tf.sparse.to_indicator(parsed[TRUE_KEY], NUM_LABELS + 1)[:, 1:]
            # Noise fixed by (image id, label): logits spread around +2.5 / -2.5, -1.5 to +1.5.
            keys = parsed[features.IMAGE_ID_KEY][:, None] + tf.strings.as_string(tf.range(NUM_LABELS))[None, :]
            noise = tf.cast(tf.strings.to_hash_bucket_fast(keys, 1000), tf.float32) / 1000 * 3 - 1.5
            logits = tf.where(true, 2.5, -2.5) + noise
            return {"probabilities": tf.sigmoid(logits)}

    model = Model()
    tf.saved_model.save(model, path, signatures={"serving_default": model.serve})


def _data(tmp_path, images=400, share=0.05):
    rng = np.random.default_rng(0)
    true = (rng.random((images, NUM_LABELS)) < 0.3).astype(np.int64)
    given, flipped = label_issues.flip_labels(true, share, seed=1)
    folder = tmp_path / "work" / "data" / "validation"
    folder.mkdir(parents=True)
    import tensorflow as tf

    options = tf.io.TFRecordOptions(compression_type="GZIP")
    ids = [f"img{i:04d}" for i in range(images)]
    with tf.io.TFRecordWriter(str(folder / "part-00000.tfrecord.gz"), options) as writer:
        for i in range(images):
            jpeg = b"" if i == images - 1 else _jpeg(i)  # the last one cannot be scored
            writer.write(_example(ids[i], list(np.flatnonzero(given[i]) + 1), list(np.flatnonzero(true[i]) + 1), jpeg))
    return ids, flipped


def test_audit_finds_the_flipped_labels_and_writes_the_csv_and_the_contact_sheet(tmp_path, capsys):
    ids, flipped = _data(tmp_path)
    model = str(tmp_path / "model")
    _stand_in_model(model)
    label_map = str(tmp_path / "labels.csv")
    tasks = {k: "colour" if k > 4 else "category" for k in range(1, NUM_LABELS + 1)}
    write_label_map([Label(k, 1 + (k > 4), f"name{k}", tasks[k]) for k in tasks], label_map)
    work = str(tmp_path / "work")
    rows = audit.main(["--workdir", work, "--model", model, "--label_map", label_map, "--top", "5"])

    flipped_pairs = {(ids[r], c + 1) for r, c in flipped if r != len(ids) - 1}
    found = {(r["image_id"], r["label_id"]) for r in rows}
    hits = len(found & flipped_pairs)
    assert hits / len(found) >= 0.8 and hits / len(flipped_pairs) >= 0.8
    with open(os.path.join(work, "audit", "label_issues.csv")) as f:
        written = list(csv.DictReader(f))
    assert tuple(written[0]) == audit.CSV_COLUMNS and len(written) == len(rows)
    assert [int(r["rank"]) for r in written] == list(range(1, len(rows) + 1))
    for row in written:
        label_id, given = int(row["label_id"]), int(row["given"])
        assert row["label_name"] == f"name{label_id}" and row["task"] == ("colour" if label_id > 4 else "category")
        assert row["suggested_action"] == (label_issues.WRONG if given else label_issues.MISSING)
        # A wrong label has a low probability, a missing one a high one.
        assert (float(row["probability"]) < 0.5) == bool(given)
    page = open(os.path.join(work, "audit", "label_issues.html")).read()
    assert page.count('class="card"') == 5 and page.count("data:image/jpeg;base64,") == 5
    assert written[0]["image_id"] in page
    # The unscorable image is counted and listed, and the others were audited.
    errors = open(os.path.join(work, "audit", "label_issues_errors.txt")).read().splitlines()
    assert len(errors) == 1 and errors[0].startswith(ids[-1] + ": ")
    out = capsys.readouterr().out
    assert f"{len(ids) - 1:,} images audited (1 the model could not score" in out
    assert f"{len(rows)} label issues" in out


def test_no_data_or_labels_outside_the_model_stop_in_one_line(tmp_path, capsys):
    model = str(tmp_path / "model")
    _stand_in_model(model)
    with pytest.raises(SystemExit) as stopped:
        audit.main(["--workdir", str(tmp_path), "--model", model, "--examples", str(tmp_path / "none*.gz")])
    assert stopped.value.code == 2 and "no TFRecord files match" in capsys.readouterr().err
    with pytest.raises(ValueError, match="image 1: label id 9 is outside the model's 1..8"):
        audit.multi_hot([[1], [9]], 8)


def test_the_default_split_is_validation_of_the_newest_span_when_there_are_spans(tmp_path):
    from imat_common.workdir import Workdir

    workdir = Workdir(str(tmp_path))
    assert audit.default_patterns(workdir) == [str(tmp_path / "data" / "validation" / "*.tfrecord.gz")]
    for span in (2, 10, 9):
        (tmp_path / "data" / f"span-{span}").mkdir(parents=True)
    assert audit.default_patterns(workdir) == [str(tmp_path / "data" / "span-10" / "validation" / "*.tfrecord.gz")]
