"""Flags a command passes on to Beam: Beam's own options pass; a typo exits 2 in one line with a suggestion."""

import pytest

from imat_common import beam_flags

OWN = ["--allow_private_networks", "--output", "--images_per_shard"]


@pytest.mark.parametrize(
    "args",
    [
        ["--runner=DataflowRunner"],
        ["--temp_location", "gs://x"],
        ["--direct_num_workers", "2"],
        ["--runner=DataflowRunner", "--project=p", "--region=us-central1", "--setup_file=./setup.py"],
        [],
    ],
)
def test_beam_flags_pass(args):
    assert beam_flags.unknown_arg_message(args, OWN) is None
    beam_flags.check_beam_args("download", args, OWN)  # raises nothing


@pytest.mark.parametrize(
    "args, expected",
    [
        (["--allow-private-networks"], "unknown flag --allow-private-networks; did you mean --allow_private_networks?"),
        (["--images_per_shrd=3"], "unknown flag --images_per_shrd; did you mean --images_per_shard?"),
        (["--temp_locaton", "gs://x"], "unknown flag --temp_locaton; did you mean --temp_location?"),
        (["--runer=DataflowRunner"], "unknown flag --runer; did you mean --runner?"),
        (["--runner=FnApiRunner", "--bogus_flag", "3"], "unknown flag --bogus_flag (neither"),
        (["stray"], "unexpected argument 'stray'"),
        (["--direct_num_workers=two"], "invalid int value: 'two'"),
    ],
)
def test_typos_fail_with_one_line_naming_the_flag(capsys, args, expected):
    with pytest.raises(SystemExit) as exit_info:
        beam_flags.check_beam_args("download", args, OWN)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("imat download: error: ") and err.count("\n") == 1, err
    assert expected in err


def _one_line_exit_2(capsys, call, command):
    with pytest.raises(SystemExit) as exit_info:
        call()
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "Traceback" not in err, err
    assert err.startswith(f"imat {command}: error: unknown flag "), err
    return err


def test_imat_download_exits_2_on_a_typo(tmp_path, capsys):
    from components.download import job

    argv = [f"--input=train={tmp_path / 'train.json'}", f"--output={tmp_path / 'out'}", "--allow-private-networks"]
    err = _one_line_exit_2(capsys, lambda: job.main(argv), "download")
    assert err.endswith("unknown flag --allow-private-networks; did you mean --allow_private_networks?")
    assert not (tmp_path / "out").exists()


def test_imat_submission_exits_2_on_a_typo(tmp_path, capsys):
    from cli import submission

    argv = ["--workdir", str(tmp_path), "--bacth_size", "8"]
    err = _one_line_exit_2(capsys, lambda: submission.main(argv), "submission")
    assert err.endswith("unknown flag --bacth_size; did you mean --batch_size?")


def test_imat_index_exits_2_on_a_typo(tmp_path, capsys):
    from cli import index

    argv = ["--workdir", str(tmp_path), "--thumbnail-size=0"]
    err = _one_line_exit_2(capsys, lambda: index.main(argv), "index")
    assert err.endswith("unknown flag --thumbnail-size; did you mean --thumbnail_size?")


def test_imat_demo_exits_2_on_a_typo_before_generating_anything(tmp_path, capsys):
    from cli import demo

    # --max_size is the download job's, --num_images the demo's own: both are known.
    argv = ["--workdir", str(tmp_path / "w"), "--num_images=5", "--max_size=64", "--alow_private_networks"]
    err = _one_line_exit_2(capsys, lambda: demo.main(argv), "demo")
    assert err.endswith("unknown flag --alow_private_networks; did you mean --allow_private_networks?")
    assert not (tmp_path / "w").exists()
    argv = ["--workdir", str(tmp_path / "w"), "--num_imgs=5"]
    err = _one_line_exit_2(capsys, lambda: demo.main(argv), "demo")
    assert err.endswith("did you mean --num_images?")


def test_imat_run_checks_its_beam_args_before_the_demo_download(tmp_path, capsys):
    from cli import run

    argv = ["--workdir", str(tmp_path / "w"), "--beam_arg=--direct_num_workers=2", "--beam_arg=--direct_num_worker=2"]
    err = _one_line_exit_2(capsys, lambda: run.main(argv), "run")
    assert err.endswith("unknown flag --direct_num_worker; did you mean --direct_num_workers?")
    assert not (tmp_path / "w").exists()
    assert run.parse_args(["--beam_arg=--direct_num_workers=2"]).beam_arg == ["--direct_num_workers=2"]
