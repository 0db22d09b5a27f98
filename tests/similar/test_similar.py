"""Similar-product search with a tiny exported model: the embed signature, the index job, imat similar."""

import io
import os
import random
import shutil

import apache_beam as beam
import numpy as np
import pytest
import tensorflow as tf
import tf_keras as keras
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.testing.util import assert_that, equal_to
from PIL import Image

from components.similar import embed_job
from components.similar.index import EmptyCatalogueError, SimilarityIndex, model_fingerprint
from cli import demo_data, similar as similar_command
from tests import helpers
from trainer import exporter, model as model_lib
from imat_common import features
from trainer.preprocessing import IMAGE_FEATURE
from tests.helpers import SIMILAR

pytestmark = SIMILAR

SIZE, NUM_LABELS, VERSION = 75, 18, "1700000000"
BEAM = ["--runner=FnApiRunner"]


def _jpeg(im: Image.Image, fmt="JPEG") -> bytes:
    buf = io.BytesIO()
    im.save(buf, format=fmt)
    return buf.getvalue()


def _example(image_id: str, jpeg: bytes, labels) -> bytes:
    feature = {
        features.IMAGE_ID_KEY: tf.train.Feature(bytes_list=tf.train.BytesList(value=[image_id.encode()])),
        features.URL_KEY: tf.train.Feature(
            bytes_list=tf.train.BytesList(value=[f"http://shop.test/{image_id}.jpg".encode()])
        ),
        features.LABELS_KEY: tf.train.Feature(int64_list=tf.train.Int64List(value=labels)),
    }
    if jpeg is not None:
        feature[features.IMAGE_KEY] = tf.train.Feature(bytes_list=tf.train.BytesList(value=[jpeg]))
    return tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString()


def _write(path: str, records) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with tf.io.TFRecordWriter(path, options="GZIP") as writer:
        for record in records:
            writer.write(record)


def export_tiny_model(out: str, seed: int = 0) -> keras.Model:
    """InceptionV3 at 75 px with random weights, exported with the Transform graph like the Trainer does."""
    rows = [{features.IMAGE_KEY: [_jpeg(Image.new("RGB", (8, 8)))], features.LABELS_KEY: [1]}]
    _, tf_transform_output = helpers.transform(rows, os.path.join(out, "tft"), NUM_LABELS, SIZE)
    keras.utils.set_random_seed(seed)
    model = model_lib.build_model(model_lib.ModelConfig(num_labels=NUM_LABELS, image_size=SIZE, weights="none"))
    exporter.export(
        model, tf_transform_output, np.full(NUM_LABELS, 0.5, np.float32), os.path.join(out, "serving", VERSION)
    )
    return model


# About 2 minutes to build on 2 busy cores (the tiny model's export): every test that uses it is slow.
@pytest.fixture(scope="module")
def work(tmp_path_factory):
    """A workdir: a pushed tiny model, a catalogue of 10 + 4 good records and 4 bad ones, a label map."""
    work = str(tmp_path_factory.mktemp("similar"))
    rng = random.Random(5)
    good = {}
    for split, n in (("train", 10), ("validation", 4)):
        good[split] = []
        for i in range(n):
            im, labels = demo_data.render(rng, 90)
            good[split].append((str(100 + i), _jpeg(im), labels))
    bad = [
        _example("900", b"\xff\xd8\xff truncated jpeg", [1]),
        _example("901", None, [1]),
        _example("", _jpeg(Image.new("RGB", (9, 9))), [1]),
        b"not a tf.Example at all",
    ]
    _write(
        os.path.join(work, "data", "train", "part-00000-of-00002.tfrecord.gz"),
        [_example(*g) for g in good["train"][:6]] + bad,
    )
    _write(
        os.path.join(work, "data", "train", "part-00001-of-00002.tfrecord.gz"),
        [_example(*g) for g in good["train"][6:]],
    )
    # The same image ids as train, in another split: distinct items.
    _write(
        os.path.join(work, "data", "validation", "part-00000-of-00001.tfrecord.gz"),
        [_example(*g) for g in good["validation"]],
    )
    os.makedirs(os.path.join(work, "source"))
    from imat_common.features import write_label_map

    write_label_map(demo_data.label_table(), os.path.join(work, "source", "label_map.csv"))
    model = export_tiny_model(work)
    return {"dir": work, "good": good, "model": model, "model_dir": os.path.join(work, "serving", VERSION)}


@pytest.fixture(scope="module")
def built(work):
    """The index job with its defaults: the newest pushed model, every split of WORKDIR/data."""
    summary = embed_job.run(["--workdir", work["dir"], "--batch_size", "4"])
    return summary


@pytest.mark.slow
def test_embed_signature_is_the_normalised_pooled_features_and_deterministic(work):
    loaded = tf.saved_model.load(work["model_dir"])
    jpegs = [j for _, j, _ in work["good"]["train"][:3]]
    embed = lambda images: loaded.signatures["embed_images"](images=tf.constant(images))["embedding"].numpy()
    first, again = embed(jpegs), embed(jpegs)
    assert first.shape == (3, 2048) and first.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(first, axis=1), 1.0, atol=1e-5)
    np.testing.assert_array_equal(first, again)
    np.testing.assert_allclose(embed(jpegs[1:2])[0], first[1], atol=1e-5)  # independent of the batch
    assert np.abs(first[0] - first[1]).max() > 1e-3  # different images, different vectors
    # Through the same Transform layer as classification: the model's pooled features on the transformed image.
    examples = [
        tf.train.Example(
            features=tf.train.Features(
                feature={features.IMAGE_KEY: tf.train.Feature(bytes_list=tf.train.BytesList(value=[j]))}
            )
        ).SerializeToString()
        for j in jpegs
    ]
    images = loaded.signatures["transform_features"](examples=tf.constant(examples))[IMAGE_FEATURE]
    pooled = keras.Model(work["model"].inputs, work["model"].get_layer(model_lib.EMBEDDING_LAYER).output)(
        images, training=False
    ).numpy()
    np.testing.assert_allclose(first, pooled / np.linalg.norm(pooled, axis=1, keepdims=True), atol=1e-5)


@pytest.mark.slow
def test_embed_transforms_keep_good_items_and_drop_bad_ones(work):
    catalogue = {"train": os.path.join(work["dir"], "data", "train", "*.tfrecord.gz")}
    expected = sorted(f"train/{i}" for i, _, _ in work["good"]["train"])
    with beam.Pipeline(options=PipelineOptions(BEAM)) as p:
        items = p | embed_job.ReadCatalogue(catalogue) | embed_job.EmbedItems(work["model_dir"], 4, 32)
        summaries = items | beam.Map(
            lambda item: (
                item["id"],
                round(float(np.linalg.norm(item["vector"])), 4),
                item["thumbnail"][:3] == b"\xff\xd8\xff",
            )
        )
        assert_that(summaries, equal_to([(i, 1.0, True) for i in expected]))


@pytest.mark.slow
def test_index_job_indexes_the_catalogue_and_counts_bad_records(work, built):
    assert built["items"] == 14 and built["records_read"] == 18
    assert built["skipped"] == {
        "images_undecodable": 1,
        "records_without_image": 1,
        "records_without_id": 1,
        "records_unparseable": 1,
    }
    assert built["output"] == os.path.join(work["dir"], "similar", VERSION)
    index = SimilarityIndex.load(built["output"], expected_fingerprint=model_fingerprint(work["model_dir"]))
    assert index.model.version == VERSION and index.manifest["backend"] == "faiss-hnsw"
    assert sorted(index.manifest["catalogue"]) == ["train", "validation"]
    item = index.items[index.row_of("validation/101")]
    assert item.url == "http://shop.test/101.jpg" and list(item.labels) == work["good"]["validation"][1][2]
    assert index.label_names[1] == ("category", "t-shirt")
    assert Image.open(io.BytesIO(index.thumbnail(0))).size[0] <= 96
    # Each catalogue photo, embedded again as a query, finds itself first.
    for split, rows in work["good"].items():
        vectors = similar_command.embed(work["model_dir"], [j for _, j, _ in rows])
        found = [hits[0] for hits in index.search(vectors, k=1)]
        assert [h.item.item_id for h in found] == [f"{split}/{i}" for i, _, _ in rows]
        np.testing.assert_allclose([h.score for h in found], 1.0, atol=1e-4)


@pytest.mark.slow
def test_imat_similar_prints_neighbours_and_writes_a_contact_sheet(work, built, capsys, tmp_path):
    photo = str(tmp_path / "shopper.png")  # not a JPEG: normalised as the download job stores images
    Image.open(io.BytesIO(work["good"]["train"][3][1])).save(photo)
    sheet = str(tmp_path / "sheet.png")
    similar_command.main([photo, "--k", "3", "--workdir", work["dir"], "--sheet", sheet])
    lines = capsys.readouterr().out.splitlines()
    results = [line for line in lines if line[:4].strip().rstrip(".").isdigit()]
    assert len(results) == 3 and "train/103" in results[0]
    assert float(results[0].split()[1]) > 0.99
    assert "category: " in results[0] and "http://shop.test/103.jpg" in lines[lines.index(results[0]) + 1]
    assert Image.open(sheet).size[0] == 4 * (similar_command.TILE + 8) + 8

    similar_command.main(["validation/102", "--k", "13", "--workdir", work["dir"]])  # every other item
    results = [
        line.split()[2] for line in capsys.readouterr().out.splitlines() if line[:4].strip().rstrip(".").isdigit()
    ]
    assert len(results) == 13 and "validation/102" not in results
    with pytest.raises(SystemExit):
        similar_command.main(["102", "--workdir", work["dir"]])  # train and validation both have it
    assert "several catalogue items have this id (train/102, validation/102)" in capsys.readouterr().err


@pytest.mark.parametrize(
    "argv, message",
    [
        (["notes.txt"], "notes.txt: body is not an image"),
        (["train/101", "--k", "14"], "k=14 is larger than the catalogue: the index holds 13 other item"),
        (["photo.jpg", "--k", "15"], "k=15 is larger than the catalogue: the index holds 14 item"),
        (["photo.jpg", "--k", "0"], "--k must be at least 1"),
        (["train/555"], "train/555: no such image file, and no catalogue item with that id"),
        ([".."], "..: a folder, not an image file"),
    ],
)
@pytest.mark.slow
def test_imat_similar_explains_bad_input(work, built, argv, message, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "notes.txt").write_text("size guide: S M L")
    (tmp_path / "photo.jpg").write_bytes(work["good"]["train"][0][1])
    with pytest.raises(SystemExit) as exit_info:
        similar_command.main(argv + ["--workdir", work["dir"]])
    assert exit_info.value.code != 0
    assert message in capsys.readouterr().err


@pytest.mark.slow
def test_imat_similar_refuses_an_index_of_another_model(work, built, capsys, tmp_path):
    other = str(tmp_path / "serving" / "1800000000")
    shutil.copytree(work["model_dir"], other)
    with open(os.path.join(other, "variables", "variables.data-00000-of-00001"), "r+b") as f:
        f.seek(1000)
        f.write(b"retrained")
    with pytest.raises(SystemExit):
        similar_command.main(["train/101", "--model", other, "--index", built["output"], "--workdir", work["dir"]])
    err = capsys.readouterr().err
    assert "the index was built from another model" in err and "version 1700000000" in err and other in err
    with pytest.raises(SystemExit):
        similar_command.main(["train/101", "--model", other, "--workdir", work["dir"]])
    err = capsys.readouterr().err
    assert f"no index for model {other}" in err and "imat index --model" in err


@pytest.mark.slow
def test_imat_index_explains_an_empty_catalogue(work, capsys, tmp_path):
    with pytest.raises(SystemExit):
        embed_job.main(
            [
                "--workdir",
                work["dir"],
                "--examples",
                f"train={tmp_path}/nothing-*.tfrecord.gz",
                "--output",
                str(tmp_path / "index"),
            ]
        )
    assert "catalogue split 'train': no file matches" in capsys.readouterr().err
    only_bad = str(tmp_path / "bad" / "part-0.tfrecord.gz")
    _write(only_bad, [_example("1", b"\xff\xd8\xff not really", [1]), b"junk"])
    with pytest.raises(
        EmptyCatalogueError,
        match="no item of the catalogue could be indexed.*2 records read.*"
        "'images_undecodable': 1.*'records_unparseable': 1",
    ):
        embed_job.run(["--workdir", work["dir"], "--examples", f"train={only_bad}", "--output", str(tmp_path / "i")])
    assert not os.path.exists(str(tmp_path / "i"))


@pytest.mark.slow
def test_component_indexes_the_pushed_model_after_pusher(work, tmp_path):
    from tfx import v1 as tfx

    from components.similar.component import SimilarityIndexArtifact, SimilarityIndexer
    from cli import runs

    examples = str(tmp_path / "examples")  # laid out as ExampleGen writes its splits
    for split, source in (("train", "train"), ("eval", "validation")):
        shutil.copytree(os.path.join(work["dir"], "data", source), os.path.join(examples, f"Split-{split}"))
    example_gen = tfx.dsl.Importer(
        source_uri=examples,
        artifact_type=tfx.types.standard_artifacts.Examples,
        properties={"split_names": '["train", "eval"]'},
    ).with_id("examples")
    pushed = str(tmp_path / "Pusher" / "pushed_model" / "7")  # Pusher's copy of the model, in its artifact
    shutil.copytree(work["model_dir"], pushed)
    pusher = tfx.dsl.Importer(
        source_uri=pushed,
        artifact_type=tfx.types.standard_artifacts.PushedModel,
        custom_properties={"pushed": 1, "pushed_destination": work["model_dir"], "pushed_version": VERSION},
    ).with_id("pusher")
    indexer = SimilarityIndexer(
        examples=example_gen.outputs["result"],
        pushed_model=pusher.outputs["result"],
        label_map=os.path.join(work["dir"], "source", "label_map.csv"),
        splits="eval",
        index_destination=str(tmp_path / "similar"),
    )
    metadata = str(tmp_path / "metadata.sqlite")
    tfx.orchestration.LocalDagRunner().run(
        tfx.dsl.Pipeline(
            pipeline_name="similar-test",
            pipeline_root=str(tmp_path / "root"),
            components=[example_gen, pusher, indexer],
            metadata_connection_config=tfx.orchestration.metadata.sqlite_metadata_connection_config(metadata),
            beam_pipeline_args=BEAM,
        )
    )

    artifact = max(
        runs.open_store(metadata).get_artifacts_by_type(SimilarityIndexArtifact.TYPE_NAME), key=lambda a: a.id
    )
    assert artifact.custom_properties["built"].int_value == 1
    assert artifact.custom_properties["items"].int_value == 4
    assert artifact.custom_properties["model_version"].string_value == VERSION
    copied = artifact.custom_properties["index_destination"].string_value
    assert copied == str(tmp_path / "similar" / VERSION)
    for path in (artifact.uri, copied):
        index = SimilarityIndex.load(path, expected_fingerprint=model_fingerprint(work["model_dir"]))
        assert sorted(item.item_id for item in index.items) == [f"eval/{i}" for i, _, _ in work["good"]["validation"]]
        assert index.model.version == VERSION and index.model.path == pushed


def test_component_builds_no_index_for_a_model_that_was_not_pushed(tmp_path):
    from tfx import v1 as tfx

    from components.similar.component import SimilarityIndexArtifact, index_pushed_model

    pushed_model, index = tfx.types.standard_artifacts.PushedModel(), SimilarityIndexArtifact()
    pushed_model.uri, index.uri = str(tmp_path / "pushed"), str(tmp_path / "index")
    pushed_model.set_int_custom_property("pushed", 0)
    index_pushed_model(examples=None, pushed_model=pushed_model, index=index, beam_pipeline=None)
    assert index.get_int_custom_property("built") == 0 and not os.path.exists(index.uri)
