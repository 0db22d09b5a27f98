"""The work folder's layout, and which model a command takes when none is named."""

import os

import pytest

from imat_common.workdir import Workdir, latest_pushed_model, model_or_newest


def test_the_layout_names_every_place_under_the_root(tmp_path):
    work = Workdir(str(tmp_path))
    assert work.label_map == os.path.join(tmp_path, "source", "label_map.csv")
    assert work.metadata == os.path.join(tmp_path, "pipeline", "metadata.sqlite")
    assert {work.data, work.serving, work.similar} == {
        os.path.join(tmp_path, d) for d in ("data", "serving", "similar")
    }


def test_the_newest_pushed_model_is_the_highest_complete_version_not_the_last_in_name_order(tmp_path):
    work = Workdir(str(tmp_path))
    with pytest.raises(FileNotFoundError, match=f"no pushed model in {work.serving}.*--model"):
        model_or_newest(None, work.root)
    for name in ("9", "10", "notes", "2", "11"):
        os.makedirs(os.path.join(work.serving, name))
        if name != "11":  # 11: a copy cut short, without the saved_model.pb the Pusher copies last
            open(os.path.join(work.serving, name, "saved_model.pb"), "wb").close()
    assert latest_pushed_model(work.serving) == os.path.join(work.serving, "10")
    assert model_or_newest(None, work.root) == os.path.join(work.serving, "10")
    assert model_or_newest("gs://bucket/model", work.root) == "gs://bucket/model"
