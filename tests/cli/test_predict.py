"""imat predict streams: images read batch by batch, a progress line, folders expanded, bad files named."""

import io
import random

import pytest
from PIL import Image

from cli import demo_data, predict


def _images(folder, n):
    rng = random.Random(0)
    paths = []
    for i in range(n):
        image, _ = demo_data.render(rng, 64)
        path = folder / f"{i:02d}.png"
        image.save(path)
        paths.append(str(path))
    return paths


def test_batches_read_each_image_only_when_its_batch_is_due(tmp_path, monkeypatch):
    paths = _images(tmp_path, 4)
    (tmp_path / "broken.jpg").write_bytes(b"not an image")
    read = []
    load = predict.load_image
    monkeypatch.setattr(predict, "load_image", lambda path: read.append(path) or load(path))
    stream = predict.batches(paths + [str(tmp_path / "broken.jpg")], batch_size=2)
    assert [len(next(stream)[1]) for _ in range(2)] == [2, 2]
    assert read == paths  # the broken file's batch is not read yet
    chunk, jpegs, errors = next(stream)
    assert jpegs == [None] and errors[0].startswith(str(tmp_path / "broken.jpg") + ": body is not an image")
    chunk, jpegs, errors = next(predict.batches(paths, batch_size=10))
    assert chunk == paths and all(Image.open(io.BytesIO(j)).format == "JPEG" for j in jpegs)
    assert errors == [""] * 4
    with pytest.raises(ValueError, match="batch size must be at least 1"):
        next(predict.batches(paths, 0))


def test_folders_expand_to_their_image_files(tmp_path):
    paths = _images(tmp_path, 3)
    (tmp_path / "notes.txt").write_text("x")
    (tmp_path / "sub").mkdir()
    assert predict.expand([str(tmp_path), "other.jpg"]) == paths + ["other.jpg"]


def test_progress_writes_lines_when_not_a_terminal():
    out = io.StringIO()
    progress = predict.Progress(250, stream=out, every_s=3600)
    for _ in range(4):
        progress.update(50)  # within the interval: silent
    assert out.getvalue() == ""
    progress.update(50)  # the last batch always reports
    assert out.getvalue().startswith("250 / 250 images, ") and out.getvalue().endswith(" images/s\n")
