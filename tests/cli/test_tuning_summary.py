"""The Tuner's lines in ``imat run``'s summary: best first, the settings as given marked even when not shown."""

import json

import pytest

from cli import tuning


def _write(tmp_path, rows):
    (tmp_path / tuning.RESULTS_FILE).write_text(json.dumps(rows))
    return str(tmp_path)


def test_best_first_at_most_five_and_the_given_settings_always_shown(tmp_path):
    rows = [{"trial_id": f"{i:02d}", "score": 0.9 - i / 100, "dropout": i / 10} for i in range(1, 8)]
    rows.append({"trial_id": "00", "score": 0.5, "dropout": 0.3})  # the run's own settings scored last
    lines = tuning.tuning_lines(_write(tmp_path, rows))
    assert lines[0].startswith("tuner: 8 trials")
    assert [line.split()[2] for line in lines[1:]] == ["01", "02", "03", "04", "05", "00"]
    assert lines[-1].startswith("   8. trial 00  0.500  dropout=0.3") and lines[-1].endswith("(the settings as given)")


def test_values_print_floats_short():
    assert tuning.format_values({"dropout": 0.30000000000000004, "pooling": "max", "augment": True}) == (
        "dropout=0.3 pooling=max augment=True"
    )


def test_no_results_no_lines_and_a_bad_file_is_named(tmp_path):
    assert tuning.tuning_lines(None) == [] and tuning.tuning_lines(str(tmp_path)) == []
    assert "no trial completed" in tuning.tuning_lines(_write(tmp_path, []))[0]
    path = _write(tmp_path, {"trial_id": 1})
    with pytest.raises(ValueError, match=tuning.RESULTS_FILE):
        tuning.tuning_lines(path)
