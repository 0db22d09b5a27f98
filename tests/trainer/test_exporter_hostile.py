"""The serving signatures fed hostile images: each bad row refused by name, the good rows scored as if alone.

A small network stands in for InceptionV3 (the checks sit before it, and exporting InceptionV3
takes minutes on a busy machine); the Transform graph is the real one, as the Trainer embeds it.
"""

import io
import os
import struct
import subprocess
import sys
import zlib

import numpy as np
import pytest
import tensorflow as tf
import tf_keras as keras

from imat_common import features, image_policy, serving
from tests import helpers
from trainer import exporter
from trainer.model import EMBEDDING_LAYER

SIZE, NUM_LABELS = 75, 6


def export_small_model(out: str) -> str:
    """A small network with the model's interface, exported with the Transform graph; returns the model folder."""
    rows = [{features.IMAGE_KEY: [helpers.jpeg_bytes(8, 8)], features.LABELS_KEY: [1]}]
    _, tf_transform_output = helpers.transform(rows, os.path.join(out, "tft"), NUM_LABELS, SIZE)
    keras.utils.set_random_seed(0)
    image = keras.Input((SIZE, SIZE, 3))
    pooled = keras.layers.GlobalAveragePooling2D()(keras.layers.Conv2D(8, 3, strides=3, activation="relu")(image))
    embedding = keras.layers.Activation("linear", name=EMBEDDING_LAYER)(pooled)
    model = keras.Model(image, keras.layers.Dense(NUM_LABELS, activation="sigmoid")(embedding))
    thresholds = np.full(NUM_LABELS, 0.5, np.float32)
    thresholds[0] = 0.0  # label 1 always decided: a refused row must still show none
    model_dir = os.path.join(out, "serving", "1")
    exporter.export(model, tf_transform_output, thresholds, model_dir, [f"name{i}" for i in range(1, NUM_LABELS + 1)])
    return model_dir


def png_of_size(width: int, height: int) -> bytes:
    """A real grey PNG of any size, a few hundred KB even at 20,000 x 20,000, built without holding its pixels."""
    chunk = lambda kind, data: (
        struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
    )
    compressor = zlib.compressobj(9)
    row = b"\0" + b"\xc8" * width  # filter type 0, then one grey byte per pixel
    idat = b"".join(compressor.compress(row) for _ in range(height)) + compressor.flush()
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)  # 8-bit greyscale
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


GOOD = [helpers.jpeg_bytes(120, 90), helpers.jpeg_bytes(90, 120, color=(10, 200, 30))]
GOOD_PNG = helpers.png_rgba_bytes(40, 30)


def hostile_cases():
    """name -> (bytes, the start of the model's reason)."""
    truncated = GOOD[0][: len(GOOD[0]) // 2]
    return {
        "truncated": (truncated, "JPEG is truncated: no end-of-image marker"),
        "html": (b"<!DOCTYPE html><html><body>404</body></html>\n", "not an image: no JPEG, PNG, GIF or BMP signature"),
        "empty": (b"", "empty (0 bytes)"),
        "bomb": (helpers.bomb_png(30000), "30000x30000 is over the limit of 40000000 pixels"),
        "huge": (png_of_size(20000, 20000), "20000x20000 is over the limit of 40000000 pixels"),
        "corrupt_header": (b"\xff\xd8\xff\xe0\x00\x01garbage", "JPEG header is corrupt"),
    }


CASES = hostile_cases()


def example(image=None) -> bytes:
    feature = (
        {} if image is None else {features.IMAGE_KEY: tf.train.Feature(bytes_list=tf.train.BytesList(value=[image]))}
    )
    return tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString()


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return export_small_model(str(tmp_path_factory.mktemp("hostile")))


@pytest.fixture(scope="module")
def loaded(model_dir):
    return tf.saved_model.load(model_dir)


def _run(loaded, signature, rows):
    name = serving.EXAMPLES if signature in (serving.SERVING_DEFAULT, serving.EVALUATE) else serving.IMAGES
    return {k: v.numpy() for k, v in loaded.signatures[signature](**{name: tf.constant(rows)}).items()}


@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("signature", [serving.PREDICT_IMAGES, serving.SERVING_DEFAULT])
def test_a_bad_row_is_named_and_the_good_rows_score_as_alone(loaded, signature, case):
    bad, reason = CASES[case]
    wrap = example if signature == serving.SERVING_DEFAULT else (lambda image: image)
    alone = _run(loaded, signature, [wrap(GOOD[0]), wrap(GOOD_PNG), wrap(GOOD[1])])
    mixed = _run(loaded, signature, [wrap(GOOD[0]), wrap(bad), wrap(GOOD_PNG), wrap(GOOD[1])])
    assert mixed[image_policy.OK].tolist() == [True, False, True, True]
    assert mixed[image_policy.ERROR][1].decode().startswith(reason)
    assert set(mixed[image_policy.ERROR][[0, 2, 3]]) == {b""}
    for key in (serving.PROBABILITIES, serving.DECISIONS, serving.LABEL_IDS, serving.LABEL_NAMES):
        if key == serving.PROBABILITIES:
            np.testing.assert_allclose(mixed[key][[0, 2, 3]], alone[key], atol=1e-6)
        else:
            np.testing.assert_array_equal(mixed[key][[0, 2, 3]], alone[key])
    # The refused row carries no score and no label, though label 1's threshold is 0.
    assert not mixed[serving.PROBABILITIES][1].any() and not mixed[serving.LABEL_IDS][1].any()
    assert set(mixed[serving.LABEL_NAMES][1]) == {b""}
    assert alone[serving.LABEL_NAMES][0][0] == b"name1"


def test_an_example_without_an_image_is_a_row_error(loaded):
    out = _run(loaded, serving.SERVING_DEFAULT, [example(GOOD[0]), example(None)])
    assert out[image_policy.OK].tolist() == [True, False]
    assert out[image_policy.ERROR][1] == b"empty (0 bytes)"


@pytest.mark.parametrize("signature", [serving.EMBED_IMAGES, serving.EVALUATE])
def test_signatures_without_an_error_output_refuse_the_batch_naming_the_row(loaded, signature):
    wrap = example if signature == serving.EVALUATE else (lambda image: image)
    good = _run(loaded, signature, [wrap(g) for g in GOOD])
    assert all(len(v) == 2 for v in good.values())
    with pytest.raises(tf.errors.InvalidArgumentError, match="1: 30000x30000 is over the limit of 40000000 pixels"):
        _run(loaded, signature, [wrap(GOOD[0]), wrap(CASES["bomb"][0])])


def test_damage_only_the_decoder_finds_fails_the_batch_and_score_rows_isolates_it(loaded):
    # A frame header with a sample precision libjpeg does not take: the header walk finds the
    # size and the end marker is there, but the decoder refuses it.
    cut = bytearray(GOOD[0])
    cut[cut.find(b"\xff\xc0") + 4] = 3
    cut = bytes(cut)
    predict = lambda rows: _run(loaded, serving.PREDICT_IMAGES, rows)
    with pytest.raises(tf.errors.InvalidArgumentError):
        predict([GOOD[0], cut])
    rows, errors = image_policy.score_rows(predict, [GOOD[0], cut, GOOD[1]])
    assert rows[1] is None and errors[1].startswith("the model cannot decode it: ")
    assert errors[1] == "the model cannot decode it: jpeg::Uncompress failed. Invalid JPEG data or crop window."
    alone = predict(GOOD)
    np.testing.assert_allclose([rows[0][serving.PROBABILITIES], rows[2][serving.PROBABILITIES]], alone["probabilities"])


def test_images_the_download_job_would_keep_pass_the_checks():
    jpeg_exif = io.BytesIO()
    from PIL import Image

    im = Image.new("RGB", (64, 48), (20, 40, 60))
    exif = Image.Exif()
    exif[0x010F] = "camera"  # an APP1 segment before the frame header: the marker walk skips it
    im.save(jpeg_exif, format="JPEG", exif=exif.tobytes())
    progressive = io.BytesIO()
    im.save(progressive, format="JPEG", progressive=True)
    gif, bmp = io.BytesIO(), io.BytesIO()
    im.save(gif, format="GIF")
    im.save(bmp, format="BMP")
    rows = [jpeg_exif.getvalue(), progressive.getvalue(), gif.getvalue(), bmp.getvalue(), GOOD_PNG, GOOD[0]]
    rows.append(GOOD[0] + b"\0" * 100)  # bytes after the end marker, as some cameras write
    _, ok, error = tf.function(image_policy.check_images)(tf.constant(rows))
    assert ok.numpy().all(), error.numpy()


_MEMORY_PROBE = """
import resource, sys
import tensorflow as tf
model = tf.saved_model.load(sys.argv[1])
good, huge = open(sys.argv[2], "rb").read(), open(sys.argv[3], "rb").read()
predict = model.signatures["predict_images"]
predict(images=tf.constant([good, good]))  # warm: the graph's own allocations
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
out = predict(images=tf.constant([good, huge, good]))
print(out["ok"].numpy().tolist(), (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) // 1024)
"""


def test_a_real_20000_px_png_is_refused_before_decoding(model_dir, tmp_path):
    # Decoded, it took 1.2 GB (400 M pixels, three channels) before the checks: bound it well under that.
    (tmp_path / "good.jpg").write_bytes(GOOD[0])
    (tmp_path / "huge.png").write_bytes(CASES["huge"][0])
    probe = subprocess.run(
        [sys.executable, "-c", _MEMORY_PROBE, model_dir, str(tmp_path / "good.jpg"), str(tmp_path / "huge.png")],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"},
    )
    ok, grown_mb = probe.stdout.strip().splitlines()[-1].rsplit(" ", 1)
    assert ok == "[True, False, True]"
    assert int(grown_mb) < 200, f"peak memory grew {grown_mb} MB"
