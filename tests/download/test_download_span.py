"""--span N: each batch of new data in its own ``<output>/span-N/`` folder, resumed on its own, and
every line that names the output or the resume command names the span."""

import hashlib
import os

import pytest

from components.download import job
from components.download import shard as shard_lib
from tests.helpers import download_fails, FAST, example_ids, read_examples, write_json

PER_SHARD = 2


def _split(tmp_path, server, name, ids):
    """A train JSON of good images with the given ids, at ``tmp_path/<name>.json``."""
    return write_json(tmp_path / f"{name}.json", {i: server.url(f"/good/{i}.jpg") for i in ids})


def _argv(source, out, span):
    return [f"--input=train={source}", f"--output={out}", "--span", str(span), f"--images_per_shard={PER_SHARD}"] + FAST


def _snapshot(folder):
    """Relative path -> (size, mtime in ns, SHA-256) of every file under ``folder``."""
    files = {}
    for root, _, names in os.walk(folder):
        for name in names:
            path = os.path.join(root, name)
            with open(path, "rb") as f:
                digest = hashlib.sha256(f.read()).hexdigest()
            stat = os.stat(path)
            files[os.path.relpath(path, folder)] = (stat.st_size, stat.st_mtime_ns, digest)
    return files


def _two_spans(tmp_path, server):
    """Downloads span 1 (ids a0..a3) and span 2 (ids b0..b5) into one output; returns (out, span 2's argv)."""
    out = str(tmp_path / "out")
    job.run(_argv(_split(tmp_path, server, "week1", [f"a{i}" for i in range(4)]), out, 1))
    argv = _argv(_split(tmp_path, server, "week2", [f"b{i}" for i in range(6)]), out, 2)
    job.run(argv)
    return out, argv


def test_two_spans_in_one_output_land_in_their_own_folders(tmp_path, fault_server, capsys):
    out, argv = _two_spans(tmp_path, fault_server)

    assert sorted(os.listdir(out)) == ["span-1", "span-2"]  # nothing of either at the top
    assert example_ids(read_examples(os.path.join(out, "span-1"), "train")) == [f"a{i}" for i in range(4)]
    assert example_ids(read_examples(os.path.join(out, "span-2"), "train")) == [f"b{i}" for i in range(6)]
    for span in ("span-1", "span-2"):
        assert {"_plan", "_status", "summary.json", "train"} <= set(os.listdir(os.path.join(out, span)))
    assert fault_server.good_hits() == 10

    job.main(argv)  # nothing left to fetch: the summary line names the span's folder
    assert capsys.readouterr().out.startswith(f"Downloaded into {out}/span-2 in ")
    assert fault_server.good_hits() == 10


def test_a_rerun_of_a_span_resumes_it_and_leaves_the_other_span_untouched(tmp_path, fault_server):
    out, argv = _two_spans(tmp_path, fault_server)
    span1 = _snapshot(os.path.join(out, "span-1"))
    # A crash in span 2: shard 1 wrote its TFRecords but not its status file.
    os.remove(os.path.join(out, "span-2", "_status", "train", "part-00001.jsonl"))

    summary = job.run(argv)

    assert summary["output"] == f"{out}/span-2"
    assert summary["images_fetched_this_run"] == PER_SHARD and fault_server.good_hits() == 10 + PER_SHARD
    assert example_ids(read_examples(os.path.join(out, "span-2"), "train")) == [f"b{i}" for i in range(6)]
    assert _snapshot(os.path.join(out, "span-1")) == span1
    assert job.run(argv)["images_fetched_this_run"] == 0 and fault_server.good_hits() == 10 + PER_SHARD


@pytest.mark.parametrize("value", ["-1", "x", "1.5", "+2", " 3"])
def test_a_span_that_is_not_a_whole_number_from_0_is_one_line_and_exit_2(tmp_path, capsys, value):
    out = tmp_path / "out"
    source = write_json(tmp_path / "train.json", {"1": "http://127.0.0.1:9/1.jpg"})
    err = download_fails(capsys, [f"--input=train={source}", f"--output={out}", "--span", value], 2)
    assert err == f"imat download: error: --span takes a whole number >= 0 (the span's folder is span-N), got {value!r}"
    assert not out.exists()


def test_a_span_folder_that_is_a_file_is_one_line_naming_both_flags(tmp_path, capsys):
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "span-4").write_text("not a folder")
    source = write_json(tmp_path / "train.json", {"1": "http://127.0.0.1:9/1.jpg"})
    err = download_fails(capsys, [f"--input=train={source}", f"--output={tmp_path / 'out'}", "--span=4"], 2)
    assert err.endswith(f"--output {tmp_path / 'out'} --span 4: {tmp_path / 'out' / 'span-4'} is a file, not a folder")


def test_ctrl_c_names_the_span_folder_and_the_resume_command_with_span(tmp_path, fault_server, capsys, monkeypatch):
    out = str(tmp_path / "out")
    argv = _argv(_split(tmp_path, fault_server, "week3", [f"c{i}" for i in range(6)]), out, 3)
    download = shard_lib.download_shard
    calls = []

    def ctrl_c_on_the_second_shard(spec, *a, **kw):
        calls.append(spec.index)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return download(spec, *a, **kw)

    monkeypatch.setattr(job, "download_shard", ctrl_c_on_the_second_shard)
    line = download_fails(capsys, argv, 130)

    assert line.startswith(f"imat download: error: interrupted: 1 of 3 shards are finished and kept in {out}/span-3 ")
    assert line.endswith("rerun the same command to resume: imat download " + " ".join(argv)), line
    assert "--span 3" in line
    # The printed command resumes span 3: the finished shard is kept and only the others are fetched.
    monkeypatch.setattr(job, "download_shard", download)
    job.main(argv)
    assert fault_server.good_hits() == 6
    assert example_ids(read_examples(os.path.join(out, "span-3"), "train")) == [f"c{i}" for i in range(6)]
    assert os.listdir(out) == ["span-3"]
