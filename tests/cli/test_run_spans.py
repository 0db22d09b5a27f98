"""imat run on a data folder of spans: detected, checked before anything runs."""

import os

import pytest

from cli import demo_data
from cli import run as run_command
from imat_common.features import write_label_map
from imat_common.settings import SettingsError


def _data(tmp_path, finished=(1, 2), unfinished=()):
    data = tmp_path / "data"
    for span in (*finished, *unfinished):
        os.makedirs(data / f"span-{span}" / "train")
        if span in finished:  # the download job writes summary.json last
            (data / f"span-{span}" / "summary.json").write_text("{}")
    write_label_map(demo_data.label_table(), str(tmp_path / "lm.csv"))
    return ["--workdir", str(tmp_path / "w"), "--data", str(data), "--label_map", str(tmp_path / "lm.csv")]


def _config(argv):
    return run_command.build_config(run_command.parse_args(argv))


def test_span_folders_are_read_by_span_unless_told_otherwise(tmp_path, capsys):
    argv = _data(tmp_path)
    config = _config(argv)
    assert (config.data.train_spans, config.data.span) == (1, -1)
    assert "holds spans [1, 2]: reading by span" in capsys.readouterr().out
    assert _config(argv + ["--train_spans", "2", "--span", "1"]).data.train_spans == 2
    # An explicit 0 stands: the user asked for the split folders, and ExampleGen will say they are missing.
    assert _config(argv + ["--train_spans", "0"]).data.train_spans == 0


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--span", "5"], r"--span 5: .* holds spans \[1, 2\]"),
        ([], r"span 3 in .* has no summary.json: its download has not finished; rerun `imat download \.\.\. --span 3`"),
    ],
)
def test_a_missing_or_unfinished_span_is_refused_before_anything_runs(tmp_path, extra, message):
    argv = _data(tmp_path, unfinished=(3,) if not extra else ())
    with pytest.raises(SettingsError, match=message):
        _config(argv + extra)


def test_train_spans_on_a_folder_without_spans_is_refused(tmp_path):
    argv = _data(tmp_path, finished=())
    os.makedirs(tmp_path / "data" / "train")
    with pytest.raises(SettingsError, match="holds no span-N folders"):
        _config(argv + ["--train_spans", "2"])
