"""Starting weights: a no-top .h5 file (local or through Beam's file systems), and ImageNet checked before a run."""

import os
import tempfile

import numpy as np
import pytest
import tf_keras as keras
from apache_beam.io.filesystems import FileSystems
from apache_beam.io.localfilesystem import LocalFileSystem
from tf_keras.src.utils import data_utils

from cli import main as imat
from trainer import model as model_lib, weights

SIZE, NUM_LABELS = 48, 5


def _no_top_file(path) -> dict:
    """Writes a no-top MobileNetV3Small's weights (random, seeded) to ``path``; returns them by name."""
    keras.utils.set_random_seed(11)
    backbone = keras.applications.MobileNetV3Small(include_top=False, weights=None, input_shape=(SIZE, SIZE, 3))
    backbone.save_weights(str(path))
    return {w.name: w.numpy() for w in backbone.weights}


def _backbone_weights(model) -> dict:
    return {w.name: w.numpy() for w in model_lib.backbone_of(model).weights}


class _FakeBucket(LocalFileSystem):
    """Beam's local file system serving gs://bucket/path from a folder: the layer ``FileSystems`` dispatches to."""

    root = ""
    opened = []

    @classmethod
    def scheme(cls):
        return "gs"

    def open(self, path, mime_type="application/octet-stream", compression_type=None):
        type(self).opened.append(path)
        return super().open(os.path.join(self.root, path[len("gs://") :]), mime_type, compression_type)


@pytest.fixture
def bucket(tmp_path, monkeypatch):
    """A folder that Beam's FileSystems reads as gs://; real paths still go to the local file system."""
    _FakeBucket.root, _FakeBucket.opened = str(tmp_path / "gcs"), []
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # the default cache: no copy from another run
    real = FileSystems.get_filesystem
    monkeypatch.setattr(
        FileSystems,
        "get_filesystem",
        staticmethod(lambda path: _FakeBucket(None) if path.startswith("gs://") else real(path)),
    )
    return tmp_path / "gcs"


def test_a_local_weights_file_starts_the_backbone(tmp_path):
    saved = _no_top_file(tmp_path / "backbone.h5")
    config = model_lib.ModelConfig(NUM_LABELS, SIZE, str(tmp_path / "backbone.h5"), backbone="mobilenetv3small")
    loaded = _backbone_weights(model_lib.build_model(config))
    assert loaded.keys() == saved.keys()
    for name, value in saved.items():
        np.testing.assert_array_equal(loaded[name], value, err_msg=name)


def test_a_gs_weights_file_is_read_through_beams_file_systems(tmp_path, bucket):
    (bucket / "models").mkdir(parents=True)
    saved = _no_top_file(bucket / "models" / "backbone.h5")
    config = model_lib.ModelConfig(NUM_LABELS, SIZE, "gs://models/backbone.h5", backbone="mobilenetv3small")
    loaded = _backbone_weights(model_lib.build_model(config))
    for name, value in saved.items():
        np.testing.assert_array_equal(loaded[name], value, err_msg=name)
    assert _FakeBucket.opened == ["gs://models/backbone.h5"]
    cache = str(tmp_path / "cache")
    first = weights.resolve("gs://models/backbone.h5", cache)
    assert weights.resolve("gs://models/backbone.h5", cache) == first  # copied once
    assert _FakeBucket.opened == ["gs://models/backbone.h5"] * 2
    assert os.listdir(cache) == [os.path.basename(first)]  # no partial copy left behind


def test_missing_weights_files_name_the_file_and_the_flags(tmp_path, bucket):
    with pytest.raises(weights.WeightsUnavailable, match=r"'gs://models/none\.h5' cannot be read .*--weights none"):
        weights.resolve("gs://models/none.h5", str(tmp_path / "cache"))
    assert not os.listdir(tmp_path / "cache")
    with pytest.raises(weights.WeightsUnavailable, match=r"file '/no/such\.h5' does not exist: use --weights none"):
        weights.resolve("/no/such.h5")
    assert weights.resolve("imagenet") == "imagenet" and weights.resolve("none") is None


def _offline(*args, **kwargs):
    raise Exception("URL fetch failure on https://example.invalid/w.h5: None -- [Errno -2] Name or service not known")


def test_imagenet_weights_are_checked_in_keras_cache_or_downloaded(tmp_path, monkeypatch):
    monkeypatch.setattr(data_utils, "get_file", _offline)
    with pytest.raises(weights.WeightsUnavailable, match="mobilenetv3small are not in Keras' cache .*Name or service"):
        weights.check_imagenet("mobilenetv3small")
    # Cached (or downloaded): Keras' get_file gives the path of a file of the right network.
    keras.applications.MobileNetV3Small(include_top=False, weights=None, input_shape=(75, 75, 3)).save_weights(
        str(tmp_path / "cached.h5")
    )
    monkeypatch.setattr(data_utils, "get_file", lambda *a, **k: str(tmp_path / "cached.h5"))
    weights.check_imagenet("mobilenetv3small")


@pytest.mark.slow
def test_imat_run_stops_before_the_pipeline_when_imagenet_cannot_be_had(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(data_utils, "get_file", _offline)
    workdir = tmp_path / "work"
    with pytest.raises(SystemExit) as stopped:
        imat.main(["run", "--workdir", str(workdir), "--num_images", "30", "--weights", "imagenet"])
    assert stopped.value.code == 2
    error = capsys.readouterr().err.strip().splitlines()
    assert len(error) == 1 and error[0].startswith("imat run: error: ImageNet weights for inception_v3"), error
    assert "--weights none" in error[0] and "--weights FILE.h5" in error[0]
    assert not (workdir / "pipeline").exists()  # no component ran
    with pytest.raises(SystemExit):
        imat.main(["run", "--workdir", str(workdir), "--num_images", "30", "--weights", str(tmp_path / "x.h5")])
    assert "x.h5' does not exist" in capsys.readouterr().err
