"""Faults a hostile tester tried: an output that cannot be written (read-only, full), a split that
stores nothing, a response without Content-Type. Each ends in one line that says what to do."""

import errno
import os

import pytest
from apache_beam.io.localfilesystem import LocalFileSystem

from components.download import job
from components.download.job import find_os_error
from tests.helpers import download_fails, FAST, FAST_GUARDED, example_ids, read_examples, statuses, write_json

N, PER_SHARD = 8, 2


def _split(tmp_path, server, n=N):
    return write_json(tmp_path / "train.json", {str(i): server.url(f"/good/{i}.jpg") for i in range(n)})


class _FullAfter:
    """A file of the output whose writes fail with ENOSPC once the output holds ``limit`` bytes."""

    written = 0
    limit = 0

    def __init__(self, f):
        self._f = f

    def write(self, data):
        if _FullAfter.written + len(data) > _FullAfter.limit:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        _FullAfter.written += len(data)
        return self._f.write(data)

    def __getattr__(self, name):
        return getattr(self._f, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self._f.close()


def test_a_full_disk_mid_download_ends_in_one_line_with_the_resume_command(tmp_path, fault_server, capsys, monkeypatch):
    source, out = _split(tmp_path, fault_server), str(tmp_path / "out")
    argv = [f"--input=train={source}", f"--output={out}", f"--images_per_shard={PER_SHARD}", "--concurrency=1"] + FAST
    create = LocalFileSystem.create
    # What a whole run writes (uncompressed, as the job hands it over), measured on another folder.
    _FullAfter.written, _FullAfter.limit = 0, 10**9
    monkeypatch.setattr(LocalFileSystem, "create", lambda self, path, *a, **k: _FullAfter(create(self, path, *a, **k)))
    job.run([f"--input=train={source}", f"--output={tmp_path / 'measure'}", f"--images_per_shard={PER_SHARD}"] + FAST)
    # The file-writing layer the job uses (Beam's FileSystems, locally LocalFileSystem): room for
    # the plan and half the shards and a bit, then every write fails as on a full disk.
    _FullAfter.written, _FullAfter.limit = 0, _FullAfter.written * 0.6
    line = download_fails(capsys, argv, job.EXIT_OUTPUT_ERROR)
    assert line.startswith(f"imat download: error: {out}: no space left on the device: free space there"), line
    assert "shards are finished and kept in" in line
    assert line.endswith("rerun the same command to resume: imat download " + " ".join(argv)), line
    done = len(os.listdir(os.path.join(out, "_status", "train"))) - 1  # less rejected.jsonl
    assert 1 <= done < N // PER_SHARD, "the disk did not fill mid-download"

    monkeypatch.setattr(LocalFileSystem, "create", create)  # room again: the rerun resumes
    hits = fault_server.good_hits()
    job.main(argv)
    assert fault_server.good_hits() - hits == N - done * PER_SHARD  # only the unfinished shards
    assert example_ids(read_examples(out, "train")) == sorted(str(i) for i in range(N))  # each once


def test_a_read_only_output_ends_in_one_line_naming_it(tmp_path, fault_server, capsys, monkeypatch):
    source, out = _split(tmp_path, fault_server), str(tmp_path / "out")
    argv = [f"--input=train={source}", f"--output={out}", f"--images_per_shard={PER_SHARD}"] + FAST
    create = LocalFileSystem.create

    def read_only(self, path, *args, **kwargs):
        # As os.makedirs or open fail on a read-only mount (root ignores chmod, so it is faked here).
        raise OSError(errno.EROFS, os.strerror(errno.EROFS), path)

    monkeypatch.setattr(LocalFileSystem, "create", read_only)
    line = download_fails(capsys, argv, job.EXIT_OUTPUT_ERROR)
    assert line.startswith(f"imat download: error: {out}/_plan/train/part-00000.jsonl: read-only file system: "), line
    assert "make it writable or choose another --output; then rerun the same command: imat download" in line
    assert fault_server.good_hits() == 0

    monkeypatch.setattr(LocalFileSystem, "create", create)
    job.main(argv)
    assert example_ids(read_examples(out, "train")) == sorted(str(i) for i in range(N))
    assert fault_server.good_hits() == N


def test_a_read_only_output_mid_download_is_found_through_beams_wrapping(tmp_path, fault_server, capsys, monkeypatch):
    source, out = _split(tmp_path, fault_server, 4), str(tmp_path / "out")
    argv = [f"--input=train={source}", f"--output={out}", "--images_per_shard=2"] + FAST
    create = LocalFileSystem.create

    def shards_read_only(self, path, *args, **kwargs):
        if "_tmp" in path:  # the plan is written; the shards' files are not
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), path)
        return create(self, path, *args, **kwargs)

    monkeypatch.setattr(LocalFileSystem, "create", shards_read_only)
    line = download_fails(capsys, argv, job.EXIT_OUTPUT_ERROR)
    assert f"{out}/_tmp/train/part-0000" in line and ": read-only file system: " in line, line
    assert "rerun the same command to resume: imat download" in line


@pytest.mark.parametrize(
    "error, expected",
    [
        (OSError(errno.ENOSPC, "No space left on device"), (errno.ENOSPC, "No space left on device", None)),
        # Beam's LocalFileSystem.mkdirs: IOError(err), whose own errno is None.
        (
            IOError(OSError(errno.EROFS, "Read-only file system", "/o/a")),
            (errno.EROFS, "Read-only file system", "/o/a"),
        ),
        # The FnApiRunner re-raises a worker's failure as a RuntimeError with its text only.
        (
            RuntimeError("OSError: [Errno 122] Disk quota exceeded: '/o/x' [while running 'DownloadShards/Download']"),
            (errno.EDQUOT, "Disk quota exceeded", "/o/x"),
        ),
        (RuntimeError("ValueError: not a file system error"), None),
    ],
)
def test_find_os_error_finds_the_errno_under_beams_wrapping(error, expected):
    assert find_os_error(error) == expected


def test_a_split_with_nothing_stored_fails_with_the_reason_and_the_flag(tmp_path, fault_server, capsys):
    source, out = _split(tmp_path, fault_server, 3), str(tmp_path / "out")
    # The guard on: every loopback URL is refused, nothing is stored.
    line = download_fails(
        capsys, [f"--input=train={source}", f"--output={out}"] + FAST_GUARDED, job.EXIT_TOO_FEW_STORED
    )
    assert line.startswith("imat download: error: train: 0 of 3 images stored, 3 ended in blocked_address"), line
    assert "--allow_private_networks" in line and f"{out}/_status/<split>/" in line
    assert os.path.exists(os.path.join(out, "summary.json"))  # the summary is written all the same


def test_a_split_under_the_min_stored_fraction_fails_and_zero_turns_it_off(tmp_path, fault_server, capsys):
    urls = {"1": fault_server.url("/good/1.jpg"), "2": fault_server.url("/missing"), "3": fault_server.url("/gone")}
    source, out = write_json(tmp_path / "train.json", urls), str(tmp_path / "out")
    argv = [f"--input=train={source}", f"--output={out}"] + FAST
    line = download_fails(capsys, argv, job.EXIT_TOO_FEW_STORED)
    assert "train: 1 of 3 images stored, 2 ended in http_error (less than --min_stored_fraction 0.5)" in line
    assert "403, 404 and 410 mean the links are dead" in line
    summary = job.run(argv + ["--min_stored_fraction=0.3"])  # a third is enough here
    assert summary["splits"]["train"]["ok"] == 1
    download_fails(capsys, argv + ["--min_stored_fraction=1.5"], 2)


@pytest.mark.parametrize(
    "flag,message",
    [
        ("--jpeg_quality=0", "--jpeg_quality must be between 1 and 100, got 0"),
        ("--jpeg_quality=101", "--jpeg_quality must be between 1 and 100, got 101"),
        ("--max_size=0", "--max_size must be at least 1"),
        ("--max_pixels=0", "--max_pixels must be at least 1"),
        ("--gzip_level=-1", "--gzip_level must be between 0 and 9, got -1"),
        ("--gzip_level=10", "--gzip_level must be between 0 and 9, got 10"),
    ],
)
def test_image_settings_out_of_range_are_refused_before_anything_is_written(tmp_path, capsys, flag, message):
    out = tmp_path / "out"
    line = download_fails(capsys, [f"--input=train={tmp_path / 'train.json'}", f"--output={out}", flag], 2)
    assert line.endswith(message) and not out.exists()


def test_a_response_without_content_type_is_judged_by_its_body(tmp_path, fault_server):
    urls = {"jpeg": fault_server.url("/untyped/1.jpg"), "page": fault_server.url("/untyped-page")}
    out = str(tmp_path / "out")
    job.run([f"--input=train={write_json(tmp_path / 'train.json', urls)}", f"--output={out}"] + FAST)
    status_of = statuses(out, "train")
    assert status_of["jpeg"]["status"] == "ok" and status_of["page"]["status"] == "not_image"
    assert example_ids(read_examples(out, "train")) == ["jpeg"]
