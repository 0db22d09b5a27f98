"""The download job end to end against the loopback fault server: outcomes, contents, resume."""

import glob
import gzip
import hashlib
import json
import os

import apache_beam as beam
import pytest
import tensorflow as tf
from apache_beam.pipeline import PipelineVisitor

from components.download import job
from components.download.fetch import FetchSettings
from components.download.images import ImageSettings
from components.download.plan import PlanMismatchError
from components.download.shard import ShardSpec
from tests.helpers import FAST, example_ids, read_examples, statuses, write_json
from tests.fault_server import FAKE_BODY
from imat_common import features

# image id -> (path on the fault server, expected status)
CASES = {
    "1": ("/good/1.jpg", "ok"),
    "2": ("/good/2.jpg", "ok"),
    "3": ("/png/3.png", "ok"),
    "4": ("/flaky/4", "ok"),
    "5": ("/to-good/5.jpg", "ok"),
    "10": ("/missing", "http_error"),
    "11": ("/gone", "http_error"),
    "12": ("/busy", "http_error"),
    "13": ("/stall", "timeout"),
    "14": ("/truncated.jpg", "corrupt_image"),
    "15": ("/page.html", "not_image"),
    "16": ("/bomb.png", "too_many_pixels"),
    "17": ("/loop-a", "bad_redirect"),
    "18": ("/to-file", "bad_redirect"),
    "19": ("/huge", "too_large"),
    "20": ("/huge-stream", "too_large"),
    "21": ("/noai.jpg", "opted_out"),
    "22": ("/two-robots.jpg", "opted_out"),
    "23": ("/fake.jpg", "not_image"),
}


def _labels(image_id):
    return [int(image_id) % 7 + 1, int(image_id) % 5 + 8]


def _write_split(tmp_path, server, name="train.json", extra_images=(), extra_annotations=()):
    images = [{"imageId": i, "url": server.url(p)} for i, (p, _) in CASES.items()] + list(extra_images)
    annotations = [{"imageId": i, "labelId": [str(k) for k in _labels(i)]} for i in CASES] + list(extra_annotations)
    path = tmp_path / name
    path.write_text(json.dumps({"images": images, "annotations": annotations}))
    return str(path)


def _label_map(tmp_path, num=12):
    path = tmp_path / "label_map.csv"
    path.write_text("labelId,taskId,labelName,taskName\n" + "".join(f"{i},1,l{i},t\n" for i in range(1, num + 1)))
    return str(path)


def test_every_fault_ends_in_its_status_and_good_images_arrive_intact(tmp_path, fault_server):
    extra_images = [
        {"imageId": "1", "url": fault_server.url("/good/other.jpg")},  # duplicate id
        {"imageId": "30", "url": fault_server.url("/good/30.jpg")},  # label outside the map
        {"imageId": "31", "url": "file:///etc/passwd"},
    ]
    source = _write_split(
        tmp_path, fault_server, extra_images=extra_images, extra_annotations=[{"imageId": "30", "labelId": ["999"]}]
    )
    out = str(tmp_path / "out")
    summary = job.run(
        [f"--input=train={source}", f"--output={out}", f"--label_map={_label_map(tmp_path)}", "--images_per_shard=4"]
        + FAST
        + ["--min_stored_fraction=0"]  # a split of faults: most of it is meant to fail
    )

    status_of = statuses(out, "train")
    for image_id, (_, expected) in CASES.items():
        assert status_of[image_id]["status"] == expected, (image_id, status_of[image_id])
    assert status_of["1/dup"]["status"] == "duplicate_id"
    assert status_of["30"]["status"] == "unknown_label" and "[999]" in status_of["30"]["reason"]
    assert status_of["31"]["status"] == "bad_url"
    assert status_of["10"]["http_status"] == 404 and status_of["11"]["http_status"] == 410
    # Retries only where they can help: never for 404/410, once (retries=1) for 429 and 500.
    assert fault_server.hits["/missing"] == 1 and fault_server.hits["/gone"] == 1
    assert fault_server.hits["/busy"] == 2 and status_of["4"]["attempts"] == 2
    assert fault_server.hits["/good/other.jpg"] == 0 and fault_server.hits["/good/30.jpg"] == 0
    # A status file names outcomes and headers, never the body of what answered.
    status_text = "".join(open(p).read() for p in glob.glob(os.path.join(out, "_status", "train", "*.jsonl")))
    assert "secret" not in status_text and "<html" not in status_text
    assert status_of["23"]["reason"] == f"body is not an image (no image signature in its {len(FAKE_BODY)} bytes)"

    examples = read_examples(out, "train")
    by_id = {e.features.feature[features.IMAGE_ID_KEY].bytes_list.value[0].decode(): e for e in examples}
    assert sorted(by_id) == ["1", "2", "3", "4", "5"]  # each good image once, nothing else
    for image_id, example in by_id.items():
        f = example.features.feature
        assert list(f[features.LABELS_KEY].int64_list.value) == _labels(image_id)
        jpeg = f[features.IMAGE_KEY].bytes_list.value[0]
        decoded = tf.io.decode_jpeg(jpeg).numpy()
        assert decoded.shape == (
            f[features.HEIGHT_KEY].int64_list.value[0],
            f[features.WIDTH_KEY].int64_list.value[0],
            3,
        )
        assert decoded.shape[:2] == (75, 100)  # 400x300 JPEGs and the 120x90 PNG, fitted to 100 px
        assert f[features.SHA256_KEY].bytes_list.value[0].decode() == hashlib.sha256(jpeg).hexdigest()
    assert by_id["5"].features.feature[features.URL_KEY].bytes_list.value[0].decode().endswith("/good/5.jpg")

    s = summary["splits"]["train"]
    assert s["ok"] == 5 and s["records"] == len(CASES) + 3
    assert s["outcomes"]["http_error"] == 3 and s["outcomes"]["bad_redirect"] == 2
    with open(os.path.join(out, "summary.json")) as f:
        assert json.load(f)["splits"]["train"]["ok"] == 5


def _good_split(tmp_path, server, n, name="train"):
    doc = {
        "images": [{"imageId": str(i), "url": server.url(f"/good/{i}.jpg")} for i in range(n)],
        "annotations": [{"imageId": str(i), "labelId": [str(i % 3 + 1)]} for i in range(n)],
    }
    path = tmp_path / f"{name}.json"
    path.write_text(json.dumps(doc))
    return str(path)


def test_resume_fetches_exactly_the_missing_shards(tmp_path, fault_server):
    source, out = _good_split(tmp_path, fault_server, 10), str(tmp_path / "out")
    args = [f"--input=train={source}", f"--output={out}", "--images_per_shard=3"] + FAST
    job.run(args)
    assert fault_server.good_hits() == 10

    # A crash: shard 1 wrote its TFRecords but not its status file; shard 3 wrote nothing; a temp file was left.
    os.remove(os.path.join(out, "_status", "train", "part-00001.jsonl"))
    os.remove(os.path.join(out, "_status", "train", "part-00003.jsonl"))
    os.remove(os.path.join(out, "train", "part-00003-of-00004.tfrecord.gz"))
    summary = job.run(args)

    assert fault_server.good_hits() == 10 + 3 + 1  # shard 1 (3 images) and shard 3 (1 image) only
    assert summary["images_fetched_this_run"] == 4
    ids = sorted(
        int(e.features.feature[features.IMAGE_ID_KEY].bytes_list.value[0]) for e in read_examples(out, "train")
    )
    assert ids == list(range(10))  # nothing lost, nothing twice

    job.run(args)  # nothing missing: nothing fetched
    assert fault_server.good_hits() == 14


def test_rerun_with_other_inputs_is_refused(tmp_path, fault_server):
    out = str(tmp_path / "out")
    job.run([f"--input=train={_good_split(tmp_path, fault_server, 3)}", f"--output={out}"] + FAST)
    with pytest.raises(
        PlanMismatchError,
        match=r"other inputs or settings: --input train=\S+train.json now gives "
        r"another plan \(3 images in 1 shards then, 4 in 1 now",
    ):
        job.run([f"--input=train={_good_split(tmp_path, fault_server, 4)}", f"--output={out}"] + FAST)


def test_test_split_has_empty_label_lists(tmp_path, fault_server):
    path = tmp_path / "test.json"
    path.write_text(json.dumps({"images": [{"imageId": "1", "url": fault_server.url("/good/1.jpg")}]}))
    out = str(tmp_path / "out")
    job.run([f"--input=test={path}", f"--output={out}"] + FAST)
    (example,) = read_examples(out, "test")
    assert list(example.features.feature[features.LABELS_KEY].int64_list.value) == []


def test_gzip_level_changes_the_files_compression_not_their_records(tmp_path, fault_server):
    source = _good_split(tmp_path, fault_server, 6)
    files, records = {}, {}
    for level in (0, 9):
        out = str(tmp_path / f"level-{level}")
        job.run([f"--input=train={source}", f"--output={out}", "--images_per_shard=10", f"--gzip_level={level}"] + FAST)
        (files[level],) = glob.glob(os.path.join(out, "train", "*.tfrecord.gz"))
        records[level] = sorted(e.SerializeToString(deterministic=True) for e in read_examples(out, "train"))
    assert len(records[0]) == 6 and records[0] == records[9]  # TensorFlow reads both, the same examples
    with open(files[0], "rb") as f:
        stored = f.read()
    with open(files[9], "rb") as f:
        squeezed = f.read()
    framed = gzip.decompress(stored)
    assert gzip.decompress(squeezed) != b"" and len(stored) > len(framed)  # level 0: stored blocks, no smaller
    assert len(squeezed) < len(framed) / 2  # six copies of one JPEG: level 9 finds the repeats


def test_a_retry_reads_a_shard_written_at_another_gzip_level(tmp_path, fault_server):
    urls = {"good": fault_server.url("/good/1.jpg"), "flaky": fault_server.url("/flaky/2")}
    out = str(tmp_path / "out")
    args = [f"--input=train={write_json(tmp_path / 'train.json', urls)}", f"--output={out}"] + FAST
    job.run(args + ["--retries=0", "--min_stored_fraction=0", "--gzip_level=0"])
    assert statuses(out, "train")["flaky"]["status"] == "http_error"
    job.run(args + ["--retries=0", "--retry_failed", "--gzip_level=9"])
    assert example_ids(read_examples(out, "train")) == ["flaky", "good"]


def test_the_shards_are_reshuffled_once():
    # Create reshuffles by default; a second reshuffle costs the local runner a stage of its own.
    class CountReshuffles(PipelineVisitor):
        count = 0

        def enter_composite_transform(self, node):
            self.count += isinstance(node.transform, beam.Reshuffle)

    shards = [ShardSpec("train", i, 3, f"/p{i}", f"/o{i}", f"/s{i}", "/t") for i in range(3)]
    p = beam.Pipeline()
    _ = p | job.DownloadShards(shards, FetchSettings(), ImageSettings())
    visitor = CountReshuffles()
    p.visit(visitor)
    assert visitor.count == 1
