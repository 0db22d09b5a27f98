"""Mistakes a user can fix end the download job with one line naming the file, and exit code 2."""

import os
import subprocess
import sys

import pytest

from components.download import job
from tests.helpers import REPO, FAST, write_json


def _fails(capsys, argv):
    """Runs the job's command line; returns its one line of stderr after checking exit code 2."""
    with pytest.raises(SystemExit) as exit_info:
        job.main(argv)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("imat download: error: ") and "\n" not in err and "Traceback" not in err, err
    return err


@pytest.fixture
def source(tmp_path):
    return write_json(tmp_path / "train.json", {"1": "http://127.0.0.1:9/1.jpg"})


def test_a_missing_input_file(tmp_path, capsys):
    missing = tmp_path / "nope.json"
    err = _fails(capsys, [f"--input=train={missing}", f"--output={tmp_path / 'out'}"])
    assert err.endswith(f"--input train={missing}: no such file")
    assert not os.path.exists(tmp_path / "out")


def test_an_input_that_is_a_folder(tmp_path, capsys):
    err = _fails(capsys, [f"--input=train={tmp_path}", f"--output={tmp_path / 'out'}"])
    assert err.endswith(f"--input train={tmp_path}: is a folder, not a file")


def test_a_missing_label_map(tmp_path, capsys, source):
    err = _fails(
        capsys, [f"--input=train={source}", f"--output={tmp_path / 'out'}", f"--label_map={tmp_path / 'labels.csv'}"]
    )
    assert err.endswith(f"--label_map {tmp_path / 'labels.csv'}: no such file")


def test_a_label_map_neither_utf8_nor_latin1(tmp_path, capsys, source):
    data = b"labelId,taskId,labelName,taskName\n1,1,caf\x81,style\n"  # 0x81: undefined in Windows-1252
    (tmp_path / "labels.csv").write_bytes(data)
    err = _fails(
        capsys, [f"--input=train={source}", f"--output={tmp_path / 'out'}", f"--label_map={tmp_path / 'labels.csv'}"]
    )
    offset = data.index(b"\x81")
    expected = f"neither UTF-8 nor Latin-1 (Windows-1252) text (line 2, byte 0x81 at offset {offset})"
    assert f"{tmp_path / 'labels.csv'}: {expected}" in err


def test_a_malformed_label_map_names_the_line(tmp_path, capsys, source):
    (tmp_path / "labels.csv").write_text("labelId,taskId,labelName,taskName\n1,1,a,t\nx,1,b,t\n")
    err = _fails(
        capsys, [f"--input=train={source}", f"--output={tmp_path / 'out'}", f"--label_map={tmp_path / 'labels.csv'}"]
    )
    assert f"{tmp_path / 'labels.csv'}, line 3: labelId and taskId must be integers" in err


def test_an_output_that_names_a_file(tmp_path, capsys, source):
    (tmp_path / "file").write_text("not a folder")
    err = _fails(capsys, [f"--input=train={source}", f"--output={tmp_path / 'file'}"])
    assert err.endswith(f"--output {tmp_path / 'file'}: {tmp_path / 'file'} is a file, not a folder")
    err = _fails(capsys, [f"--input=train={source}", f"--output={tmp_path / 'file' / 'sub'}"])
    assert err.endswith(f"{tmp_path / 'file'} is a file, not a folder")


def test_malformed_json(tmp_path, capsys):
    path = tmp_path / "train.json"
    path.write_text('{"images": [{"imageId": "1", "url": "http://h/1.jpg"}, {"imageId": "2", "url": ')
    err = _fails(capsys, [f"--input=train={path}", f"--output={tmp_path / 'out'}"])
    assert f"{path}: malformed JSON at byte " in err and "inside images[1]" in err


def test_a_rerun_with_a_changed_setting(tmp_path, capsys, fault_server):
    source = write_json(tmp_path / "train.json", {"1": fault_server.url("/good/1.jpg")})
    job.main([f"--input=train={source}", f"--output={tmp_path / 'out'}"] + FAST)
    capsys.readouterr()
    err = _fails(capsys, [f"--input=train={source}", f"--output={tmp_path / 'out'}"] + FAST + ["--max_size=50"])
    assert "--max_size was 100, now 50" in err and "use a new --output folder" in err


@pytest.mark.slow  # a fresh interpreter imports Beam: some 20 s on a busy 2-core machine
def test_the_imat_command_prints_one_line_and_exits_2(tmp_path):
    missing = tmp_path / "train.json"
    result = subprocess.run(
        [sys.executable, "-m", "cli.main", "download", f"--input=train={missing}", f"--output={tmp_path / 'out'}"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "PYTHONPATH": REPO},
    )
    assert result.returncode == 2
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert lines == [f"imat download: error: --input train={missing}: no such file"], result.stderr
    assert result.stdout == ""
