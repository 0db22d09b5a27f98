"""The Pusher's local versions appear whole or not at all, even when the copy is cut short."""

import errno
import json
import os

import pytest
from tfx.components.pusher import executor as tfx_pusher
from tfx.dsl.io import fileio
from tfx.proto import pusher_pb2
from tfx.types import standard_artifacts, standard_component_specs
from tfx.utils import proto_utils

from components import atomic_pusher
from imat_common.workdir import latest_pushed_model

FILES = ("saved_model.pb", "fingerprint.pb", "variables/variables.index", "variables/variables.data-00000-of-00001")


def _push(executor_class, tmp_path, serving, blessed=True):
    model = standard_artifacts.Model()
    model.uri = str(tmp_path / "model")
    for name in FILES:
        path = os.path.join(model.uri, "Format-Serving", name)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w") as f:
            f.write(name)
    blessing = standard_artifacts.ModelBlessing()
    blessing.uri = str(tmp_path / "blessing")
    blessing.set_int_custom_property("blessed", int(blessed))
    pushed = standard_artifacts.PushedModel()
    pushed.uri = str(tmp_path / "pushed" / str(len(os.listdir(tmp_path))))
    destination = pusher_pb2.PushDestination(filesystem=pusher_pb2.PushDestination.Filesystem(base_directory=serving))
    executor_class().Do(
        {standard_component_specs.MODEL_KEY: [model], standard_component_specs.MODEL_BLESSING_KEY: [blessing]},
        {standard_component_specs.PUSHED_MODEL_KEY: [pushed]},
        {standard_component_specs.PUSH_DESTINATION_KEY: proto_utils.proto_to_json(destination)},
    )
    return pushed


def _disk_fills_after(monkeypatch, files):
    copy, done = fileio.copy, []

    def failing_copy(src, dst, overwrite=False):
        if len(done) == files:
            raise OSError(errno.ENOSPC, "No space left on device", dst)
        done.append(dst)
        copy(src, dst, overwrite)

    monkeypatch.setattr(fileio, "copy", failing_copy)


@pytest.mark.parametrize("executor_class", [tfx_pusher.Executor, atomic_pusher.Executor], ids=["tfx", "atomic"])
def test_a_copy_cut_short_leaves_no_numbered_folder(tmp_path, monkeypatch, executor_class):
    serving = str(tmp_path / "serving")
    with monkeypatch.context() as m:
        _disk_fills_after(m, 2)
        with pytest.raises(OSError, match="No space left"):
            _push(executor_class, tmp_path, serving)
    versions = [v for v in os.listdir(serving) if v.isdigit()]
    if executor_class is tfx_pusher.Executor:
        assert len(versions) == 1  # TFX's own Pusher leaves a partial version: what this executor fixes
        return
    assert versions == [] and latest_pushed_model(serving) is None
    # The next push (the rerun) clears what the cut copy staged and puts a whole version in place.
    pushed = _push(executor_class, tmp_path, serving)
    (version,) = [v for v in os.listdir(serving) if v.isdigit()]
    assert sorted(os.listdir(serving)) == [version]
    final = os.path.join(serving, version)
    assert pushed.get_string_custom_property("pushed_destination") == final
    assert pushed.get_int_custom_property("pushed") == 1 and latest_pushed_model(serving) == final
    for name in FILES:
        with open(os.path.join(final, name)) as f:
            assert f.read() == name


def test_a_model_that_is_not_blessed_is_not_pushed(tmp_path):
    serving = str(tmp_path / "serving")
    pushed = _push(atomic_pusher.Executor, tmp_path, serving, blessed=False)
    assert pushed.get_int_custom_property("pushed") == 0
    assert not os.path.exists(serving) or [v for v in os.listdir(serving) if v.isdigit()] == []


def test_a_remote_destination_keeps_tfxs_own_copy(tmp_path, monkeypatch):
    calls = []
    record = lambda self, inputs, outputs, properties: calls.append(json.loads(properties["push_destination"]))
    monkeypatch.setattr(tfx_pusher.Executor, "Do", record)
    _push(atomic_pusher.Executor, tmp_path, "gs://bucket/serving")
    assert calls == [{"filesystem": {"base_directory": "gs://bucket/serving"}}]
