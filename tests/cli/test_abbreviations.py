"""No command takes a flag's prefix for the flag: `--num_image 5` is a typo to name, not `--num_images`."""

import pytest

from cli import main as imat

# (command, a prefix of one of its flags, that flag)
CASES = [
    ("run", "--workdi", "--workdir"),
    ("predict", "--mode", "--model"),
    ("report", "--workdi", "--workdir"),
    ("submission", "--label", "--labels"),
    ("schema", "--label_ma", "--label_map"),
    ("similar", "--mode", "--model"),
    ("index", "--outpu", "--output"),
    ("compile", "--pipeline_roo", "--pipeline_root"),
    ("submit", "--pipelin", "--pipeline"),
    ("schedule", "--cro", "--cron"),
    ("demo", "--num_image", "--num_images"),
    ("demo-data", "--num_image", "--num_images"),
    ("download", "--label_ma", "--label_map"),
]


@pytest.mark.parametrize("command, prefix, flag", CASES, ids=[c[0] for c in CASES])
def test_a_flags_prefix_is_refused_with_exit_2(tmp_path, monkeypatch, capsys, command, prefix, flag):
    monkeypatch.chdir(tmp_path)  # whatever a command would write lands here, and nothing should
    with pytest.raises(SystemExit) as e:
        imat.main([command, prefix, "x"])
    err = capsys.readouterr().err
    assert e.value.code == 2 and prefix in err, err
    assert list(tmp_path.iterdir()) == []
