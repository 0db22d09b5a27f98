"""imat predict, imat similar and batch scoring fed hostile images: each bad one named, the others scored."""

import itertools
import json

import apache_beam as beam
import numpy as np
import pytest
import tensorflow as tf
from apache_beam.options.pipeline_options import PipelineOptions
from PIL import Image

from cli import batch_scoring, predict, similar
from components.download.images import ImageSettings
from imat_common import features, image_policy, serving
from tests import helpers
from tests.trainer.test_exporter_hostile import GOOD, export_small_model, png_of_size

# What each hostile file is, and the start of the line imat predict prints for it (after the file name).
FILES = {
    "truncated.jpg": (GOOD[0][: len(GOOD[0]) // 2], "JPEG does not decode: image file is truncated"),
    "page.jpg": (b"<!DOCTYPE html><html><body>Not found</body></html>\n", "body is not an image"),
    "empty.jpg": (b"", "body is not an image (no image signature in its 0 bytes)"),
    "bomb.png": (helpers.bomb_png(30000), "Image size (900000000 pixels) exceeds limit"),
    "huge.png": (png_of_size(20000, 20000), "Image size (400000000 pixels) exceeds limit"),
    # Under Pillow's own bomb limit, over the download job's: the project's check refuses it.
    "large.png": (png_of_size(7000, 7000), "7000x7000 is over the limit of 40000000 pixels"),
}


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return export_small_model(str(tmp_path_factory.mktemp("hostile_cli")))


@pytest.fixture
def folder(tmp_path):
    (tmp_path / "a_good.jpg").write_bytes(GOOD[0])
    (tmp_path / "z_good.jpg").write_bytes(GOOD[1])
    for name, (data, _) in FILES.items():
        (tmp_path / name).write_bytes(data)
    return tmp_path


def test_the_models_pixel_limit_is_the_download_jobs():
    assert image_policy.MAX_PIXELS == ImageSettings().max_pixels


def test_files_over_the_pixel_limit_are_refused_before_decoding(folder, monkeypatch):
    # Any decode would reach Image.load: a refusal from the header never does.
    def no_decoding(self):
        raise AssertionError("decoded")

    monkeypatch.setattr(Image.Image, "load", no_decoding)
    for name in ("bomb.png", "huge.png", "large.png"):
        jpeg, error = predict.try_load_image(str(folder / name))
        assert jpeg is None and error.startswith(f"{folder / name}: {FILES[name][1]}")


def test_imat_predict_names_each_bad_file_and_scores_the_rest(model_dir, folder, capsys):
    alone = predict.predict(model_dir, [predict.load_image(str(folder / n)) for n in ("a_good.jpg", "z_good.jpg")])
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_info:
        predict.main([str(folder), "--model", model_dir, "--batch_size", "8", "--top", "6", "--label_map", "no.csv"])
    assert exit_info.value.code == 1
    captured = capsys.readouterr()
    for name, (_, reason) in FILES.items():
        assert f"imat predict: {folder / name}: {reason}" in captured.err
    assert f"imat predict: {len(FILES)} of {len(FILES) + 2} images could not be scored" in captured.err
    # Both good files are in the batch with every bad one, and print what they score alone.
    for i, name in enumerate(("a_good.jpg", "z_good.jpg")):
        top = alone[serving.PROBABILITIES][i]
        best = top.argsort()[::-1]
        expected = "  top scores: " + ", ".join(f"{k + 1} {top[k]:.2f}" for k in best)
        after = captured.out.split(f"{folder / name}:\n", 1)[1].splitlines()
        assert expected in itertools.takewhile(lambda line: line.startswith("  "), after)


def test_predict_rows_isolates_a_row_only_the_decoder_refuses(model_dir):
    bad = bytearray(GOOD[0])
    bad[bad.find(b"\xff\xc0") + 4] = 3  # a sample precision libjpeg does not take
    model = tf.saved_model.load(model_dir)
    rows, errors = predict.predict_rows(model, [GOOD[0], None, bytes(bad), GOOD[1]])
    assert rows[1] is None and errors[1] == ""  # a file that did not load is the caller's to name
    assert rows[2] is None and errors[2].startswith("the model cannot decode it: jpeg::Uncompress failed")
    alone = predict.predict(model, GOOD)
    np.testing.assert_allclose([rows[0]["probabilities"], rows[3]["probabilities"]], alone["probabilities"])


def test_score_rows_retries_a_failed_batch_row_by_row():
    # A model exported before the checks: any bad row fails the whole call.
    calls = []

    def call(rows):
        calls.append(len(rows))
        if b"bad" in rows:
            raise tf.errors.InvalidArgumentError(
                None, None, "Graph execution error:\n\nInput is empty.\n\t [[{{node x}}]]"
            )
        return {"probabilities": np.array([[len(r)] for r in rows], np.float32)}

    rows, errors = image_policy.score_rows(call, [b"a", b"bad", b"ccc"])
    assert calls == [3, 1, 1, 1]
    assert [r and float(r["probabilities"][0]) for r in rows] == [1.0, None, 3.0]
    assert errors == ["", "the model cannot decode it: Input is empty.", ""]


def _example(image_id: str, image) -> bytes:
    feature = {features.IMAGE_ID_KEY: tf.train.Feature(bytes_list=tf.train.BytesList(value=[image_id.encode()]))}
    if image is not None:
        feature[features.IMAGE_KEY] = tf.train.Feature(bytes_list=tf.train.BytesList(value=[image]))
    return tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString()


def test_batch_scoring_writes_every_row_and_one_error_line_per_bad_example(model_dir, tmp_path):
    bad = {name.split(".")[0]: data for name, (data, _) in FILES.items()}
    bad["no_image"] = None
    examples = [_example("good0", GOOD[0])] + [_example(i, d) for i, d in bad.items()] + [_example("good1", GOOD[1])]
    records = str(tmp_path / "test.tfrecord")
    with tf.io.TFRecordWriter(records) as writer:
        for record in examples:
            writer.write(record)
    report = {
        "format": batch_scoring.rules.REPORT_FORMAT,
        "per_label_thresholds": [0.5] * 6,
        "tuned": [True] * 6,
        "global_threshold": 0.5,
        "baseline": {"label_ids": [2]},
    }
    labels = {"good0": [1], "truncated": [3], "good1": [2]}
    output = str(tmp_path / "submission.csv")
    counts_path = str(tmp_path / "counts.json")
    with beam.Pipeline(options=PipelineOptions(["--runner=FnApiRunner"])) as pipeline:
        batch_scoring.score_split(pipeline, records, model_dir, output, report, labels, counts_path, batch_size=16)
    with open(output) as f:
        ids = [line.split(",")[0] for line in f.read().splitlines()[1:]]
    assert sorted(ids) == sorted(["good0", "good1", *bad])
    with open(batch_scoring.errors_path(output)) as f:
        errors = dict(line.split(": ", 1) for line in f.read().splitlines())
    assert sorted(errors) == sorted(bad)
    assert errors["truncated"] == "JPEG is truncated: no end-of-image marker"
    assert errors["huge"] == "20000x20000 is over the limit of 40000000 pixels"
    assert errors["no_image"] == "empty (0 bytes)"
    with open(counts_path) as f:
        counts = json.loads(f.read())
    assert counts[batch_scoring.SCORED] == 2 and counts[batch_scoring.UNSCORABLE] == 1
    assert counts[batch_scoring.UNLABELLED] == len(bad) - 1
    # The truncated image's label is a miss under the submission and every rule.
    for rule in ("submission", "per_label", "global"):
        assert counts[rule][2] >= 1


def test_batch_scoring_handler_gives_the_good_rows_what_they_score_alone(model_dir):
    handler = batch_scoring.ServingModelHandler(model_dir)
    model = handler.load_model()
    batch = [_example("g0", GOOD[0]), _example("b", FILES["bomb.png"][0]), _example("g1", GOOD[1])]
    results = list(handler.run_inference(batch, model))
    alone = list(handler.run_inference([batch[0], batch[2]], model))
    assert results[1].inference == (None, [], "30000x30000 is over the limit of 40000000 pixels")
    for mixed, single in zip([results[0], results[2]], alone):
        np.testing.assert_allclose(mixed.inference[0], single.inference[0], atol=1e-6)
        assert mixed.inference[1:] == single.inference[1:]


@pytest.mark.parametrize("name", sorted(FILES))
def test_imat_similar_names_a_bad_query_image(name, model_dir, folder, capsys, monkeypatch):
    class Index:  # only what main touches before the query image is read
        def check_k(self, k):
            pass

    monkeypatch.setattr(similar.SimilarityIndex, "load", classmethod(lambda cls, *a, **k: Index()))
    monkeypatch.setattr(similar, "model_fingerprint", lambda model_dir: "")
    monkeypatch.setattr(similar, "embed", lambda *a: pytest.fail("a bad query reached the model"))
    with pytest.raises(SystemExit) as exit_info:
        similar.main([str(folder / name), "--model", model_dir, "--index", str(folder)])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith(f"imat similar: error: {folder / name}: {FILES[name][1]}")


def test_imat_similar_names_a_query_the_models_decoder_refuses(model_dir, folder, capsys, monkeypatch):
    class Index:
        def check_k(self, k):
            pass

    def refuse(*args):
        raise tf.errors.InvalidArgumentError(
            None, None, "Graph execution error:\n\nbad Huffman table\n\t [[{{node x}}]]"
        )

    monkeypatch.setattr(similar.SimilarityIndex, "load", classmethod(lambda cls, *a, **k: Index()))
    monkeypatch.setattr(similar, "model_fingerprint", lambda model_dir: "")
    monkeypatch.setattr(similar, "embed", refuse)
    with pytest.raises(SystemExit):
        similar.main([str(folder / "a_good.jpg"), "--model", model_dir, "--index", str(folder)])
    expected = f"imat similar: error: {folder / 'a_good.jpg'}: the model cannot decode it: bad Huffman table"
    assert capsys.readouterr().err.strip().splitlines()[-1] == expected


def test_the_embed_signature_refuses_a_bomb_query_before_decoding(model_dir):
    embed = tf.saved_model.load(model_dir).signatures[serving.EMBED_IMAGES]
    with pytest.raises(tf.errors.InvalidArgumentError) as error:
        embed(images=tf.constant([FILES["huge.png"][0]]))
    assert image_policy.decoder_message(error.value).startswith("assertion failed: [images the model refuses")
    assert "0: 20000x20000 is over the limit of 40000000 pixels" in error.value.message
