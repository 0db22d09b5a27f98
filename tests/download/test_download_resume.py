"""Resuming: the same inputs and settings or a clear refusal, --retry_failed, stale temporary files,
the hash order of records across shards, and refused annotations."""

import collections
import dataclasses
import glob
import json
import os
import shutil

import pytest
import tensorflow as tf

from components.download import job
from components.download import options as options_lib
from components.download import shard as shard_lib
from components.download import plan as plan_lib
from components.download.plan import PlanMismatchError
from tests.helpers import FAST, example_ids, read_examples, statuses, write_json


def test_a_changed_setting_is_refused_naming_it_with_both_values(tmp_path, fault_server):
    source = write_json(tmp_path / "train.json", {"1": fault_server.url("/good/1.jpg")})
    out = str(tmp_path / "out")
    job.run([f"--input=train={source}", f"--output={out}"] + FAST)
    with pytest.raises(PlanMismatchError) as err:
        job.run([f"--input=train={source}", f"--output={out}", "--ignore_opt_out"] + FAST + ["--retries=3"])
    message = str(err.value)
    assert "--ignore_opt_out was false, now true" in message and "--retries was 1, now 3" in message
    assert "\n" not in message
    with pytest.raises(PlanMismatchError, match=r"--input validation was \(not given\), now \S+train.json"):
        job.run([f"--input=train={source}", f"--input=validation={source}", f"--output={out}"] + FAST)
    assert fault_server.good_hits() == 1  # refused before anything was fetched


def test_the_same_file_by_another_spelling_resumes(tmp_path, fault_server, monkeypatch):
    write_json(tmp_path / "train.json", {"1": fault_server.url("/good/1.jpg")})
    monkeypatch.chdir(tmp_path)
    job.run(["--input=train=train.json", "--output=out"] + FAST)
    summary = job.run(["--input=train=./train.json", f"--output={tmp_path / 'out'}/"] + FAST)
    assert summary["images_fetched_this_run"] == 0 and fault_server.good_hits() == 1
    assert summary["splits"]["train"]["source"] == str(tmp_path / "train.json")


def test_retry_failed_fetches_only_retryable_failures_and_keeps_everything_else(tmp_path, fault_server):
    urls = {
        "good": fault_server.url("/good/1.jpg"),
        "flaky": fault_server.url("/flaky/2"),
        "busy": fault_server.url("/busy"),
        "missing": fault_server.url("/missing"),
        "bad": fault_server.url("/truncated.jpg"),
    }
    out = str(tmp_path / "out")
    args = (
        [f"--input=train={write_json(tmp_path / 'train.json', urls)}", f"--output={out}", "--images_per_shard=3"]
        + FAST
        + ["--retries=0", "--min_stored_fraction=0"]  # four of five fail on purpose
    )
    job.run(args)
    first = statuses(out, "train")
    assert {i: s["status"] for i, s in first.items()} == {
        "good": "ok",
        "flaky": "http_error",
        "busy": "http_error",
        "missing": "http_error",
        "bad": "corrupt_image",
    }
    job.run(args)  # a plain rerun: every shard is done, nothing is fetched
    assert dict(fault_server.hits) == {"/good/1.jpg": 1, "/flaky/2": 1, "/busy": 1, "/missing": 1, "/truncated.jpg": 1}

    summary = job.run(args + ["--retry_failed"])
    assert summary["images_fetched_this_run"] == 2  # flaky (500) and busy (429); not 404, not a corrupt image
    assert dict(fault_server.hits) == {"/good/1.jpg": 1, "/flaky/2": 2, "/busy": 2, "/missing": 1, "/truncated.jpg": 1}
    assert statuses(out, "train")["flaky"]["status"] == "ok" and summary["splits"]["train"]["ok"] == 2
    assert example_ids(read_examples(out, "train")) == ["flaky", "good"]

    # A retry interrupted after its TFRecord rename but before its status rename: the old status
    # file says flaky failed, while the shard already holds it. Retrying again must not store it twice.
    shard_of = {s["image_id"]: path for path in _status_files(out) for s in _lines(path)}
    earlier = [first[s["image_id"]] for s in _lines(shard_of["flaky"])]
    with open(shard_of["flaky"], "w") as f:
        f.write("".join(json.dumps(s) + "\n" for s in earlier))
    job.run(args + ["--retry_failed"])
    assert fault_server.hits["/flaky/2"] == 3 and fault_server.hits["/good/1.jpg"] == 1
    assert example_ids(read_examples(out, "train")) == ["flaky", "good"]


def _status_files(out):
    folder = os.path.join(out, "_status", "train")
    return [os.path.join(folder, n) for n in sorted(os.listdir(folder)) if n.startswith("part-")]


def _lines(path):
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def test_a_rerun_removes_stale_temporary_files_and_readers_never_see_them(tmp_path, fault_server):
    source = write_json(tmp_path / "train.json", {str(i): fault_server.url(f"/good/{i}.jpg") for i in range(4)})
    out = str(tmp_path / "out")
    args = [f"--input=train={source}", f"--output={out}", "--images_per_shard=2"] + FAST
    job.run(args)
    os.remove(os.path.join(out, "_status", "train", "part-00001.jsonl"))
    stale = os.path.join(out, "_tmp", "train", "part-00001-of-00002.tfrecord.gz.0123abcd.partial")
    shutil.copy(os.path.join(out, "train", "part-00001-of-00002.tfrecord.gz"), stale)
    job.run(args)
    assert not os.path.exists(stale) and os.listdir(os.path.join(out, "_tmp", "train")) == []
    assert example_ids(read_examples(out, "train")) == ["0", "1", "2", "3"]


def test_records_sorted_by_label_are_spread_evenly_and_identically_across_shards(tmp_path):
    """3,000 records in label order (1,000 of each of three labels), ten shards of 300.

    Tolerance: each label's share of every shard within 0.10 of its share of the split
    (1/3). A random shard of 300 has a standard deviation of 0.027 there, so 0.10 is 3.7
    of them; catalogue order would put one label alone in each shard, 0.67 away.
    """
    images = {str(i): f"http://h/{i}.jpg" for i in range(3000)}
    labels = {str(i): [1 + i // 1000] for i in range(3000)}
    source = write_json(tmp_path / "train.json", images, labels)
    plans = [plan_lib.plan_split("train", source, str(tmp_path / f"out{run}"), 300, None) for run in (1, 2)]
    assert [len(p.shards) for p in plans] == [10, 10] and plans[0].fingerprint == plans[1].fingerprint
    for first, second in zip(*(p.shards for p in plans)):
        with open(first.plan_path) as f1, open(second.plan_path) as f2:
            assert f1.read() == f2.read()  # the same plan on every run
    for spec in plans[0].shards:
        rows = _lines(spec.plan_path)
        shares = collections.Counter(r["labels"][0] for r in rows)
        assert len(rows) == 300
        assert all(abs(shares[label] / 300 - 1 / 3) <= 0.10 for label in (1, 2, 3)), (spec.index, shares)
        assert [r["id"] for r in rows] != sorted((r["id"] for r in rows), key=int)  # not catalogue order within


def test_downloaded_shards_mix_labels_of_a_label_sorted_catalogue(tmp_path, fault_server):
    images = {str(i): fault_server.url(f"/good/{i}.jpg") for i in range(30)}
    labels = {str(i): [1 + i // 10] for i in range(30)}
    out = str(tmp_path / "out")
    job.run(
        [
            f"--input=train={write_json(tmp_path / 'train.json', images, labels)}",
            f"--output={out}",
            "--images_per_shard=10",
        ]
        + FAST
    )
    for n in range(3):
        examples = _shard_examples(out, n)
        assert len(examples) == 10 and len({e.features.feature["labels"].int64_list.value[0] for e in examples}) >= 2


def _shard_examples(out, n):
    path = os.path.join(out, "train", f"part-{n:05d}-of-00003.tfrecord.gz")
    return [tf.train.Example.FromString(r.numpy()) for r in tf.data.TFRecordDataset(path, compression_type="GZIP")]


def test_an_image_with_a_refused_annotation_is_not_downloaded_and_counted_once(tmp_path, fault_server):
    doc = {
        "images": [{"imageId": str(i), "url": fault_server.url(f"/good/{i}.jpg")} for i in range(4)],
        "annotations": [
            {"imageId": "0", "labelId": ["1"]},
            {"imageId": "1", "labelId": ["not a number"]},
            {"imageId": "2", "labelId": ["2"]},
            {"imageId": "3", "labelId": ["3"]},
        ],
    }
    source = tmp_path / "train.json"
    source.write_text(json.dumps(doc))
    out = str(tmp_path / "out")
    summary = job.run([f"--input=train={source}", f"--output={out}"] + FAST)
    split = summary["splits"]["train"]
    assert split["records"] == 4 and split["outcomes"] == {"bad_annotation": 1, "ok": 3}
    assert fault_server.hits["/good/1.jpg"] == 0
    assert example_ids(read_examples(out, "train")) == ["0", "2", "3"]
    with open(os.path.join(out, "_status", "train", "rejected.jsonl")) as f:
        (rejected,) = [json.loads(line) for line in f]
    assert rejected["image_id"] == "1" and "annotations[1]" in rejected["reason"]


def test_retry_failed_writes_the_plans_it_needs_and_leaves_none(tmp_path, fault_server):
    urls = {"good": fault_server.url("/good/1.jpg?token=tok-s3cr3t"), "flaky": fault_server.url("/flaky/2?sig=s1g")}
    out = str(tmp_path / "out")
    args = (
        [f"--input=train={write_json(tmp_path / 'train.json', urls)}", f"--output={out}", "--images_per_shard=1"]
        + FAST
        + ["--retries=0", "--min_stored_fraction=0"]
    )
    job.run(args)
    assert _plan_files(out) == [] and statuses(out, "train")["flaky"]["status"] == "http_error"
    summary = job.run(args + ["--retry_failed"])  # the finished shard's plan is written again, then deleted
    assert summary["images_fetched_this_run"] == 1 and statuses(out, "train")["flaky"]["status"] == "ok"
    assert _plan_files(out) == [] and example_ids(read_examples(out, "train")) == ["flaky", "good"]
    with open(os.path.join(out, "_plan", "plan.json")) as f:
        record = f.read()
    assert "s3cr3t" not in record and "s1g" not in record  # the plans' fingerprints are hashes


def test_a_beam_retry_of_a_bundle_skips_the_shards_its_first_attempt_finished(tmp_path, fault_server):
    source = write_json(tmp_path / "train.json", {str(i): fault_server.url(f"/good/{i}.jpg") for i in range(2)})
    out = str(tmp_path / "out")
    args, _, _ = options_lib.parse_args([f"--input=train={source}", f"--output={out}"] + FAST)
    (spec,) = plan_lib.plan_split("train", source, out, 2, None).shards
    fn = job.DownloadShardFn(*options_lib.settings_of(args))
    assert list(fn.process(spec)) == [("train", {"ok": 2})]
    assert not os.path.exists(spec.plan_path) and os.path.exists(spec.status_path)  # done: its plan is gone
    assert list(fn.process(spec)) == [] and fault_server.good_hits() == 2  # Beam's retry: nothing fetched again
    retried = dataclasses.replace(spec, retry=True)  # --retry_failed: the run wrote the plan, the retry deleted it
    assert list(fn.process(retried)) == [] and fault_server.good_hits() == 2
    assert example_ids(read_examples(out, "train")) == ["0", "1"]


def test_a_failed_run_leaves_no_plan_and_its_rerun_stores_every_image_once(tmp_path, fault_server, monkeypatch):
    source = write_json(tmp_path / "train.json", {str(i): fault_server.url(f"/good/{i}.jpg?sig=s3") for i in range(6)})
    out = str(tmp_path / "out")
    args = [f"--input=train={source}", f"--output={out}", "--images_per_shard=2"] + FAST
    download = shard_lib.download_shard
    calls = []

    def fails_on_the_second_shard(spec, *a, **kw):
        calls.append(spec.index)
        if len(calls) == 2:
            raise ValueError("a worker's failure")
        return download(spec, *a, **kw)

    monkeypatch.setattr(job, "download_shard", fails_on_the_second_shard)
    with pytest.raises(Exception, match="a worker's failure"):
        job.run(args)
    assert _plan_files(out) == []  # not even the unfinished shards' plans
    done = len(_status_files(out))
    assert 1 <= done < 3
    monkeypatch.setattr(job, "download_shard", download)
    summary = job.run(args)
    assert summary["images_fetched_this_run"] == 6 - 2 * done and fault_server.good_hits() == 6
    assert example_ids(read_examples(out, "train")) == [str(i) for i in range(6)] and _plan_files(out) == []


def _plan_files(out):
    return glob.glob(os.path.join(out, "_plan", "*", "part-*.jsonl"))
