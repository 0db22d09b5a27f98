"""The similarity index on its own: every backend, save/load, the model fingerprint, bad input."""

import json
import os
import shutil

import numpy as np
import pytest

from components.similar import index as index_lib
from components.similar.backends import BACKENDS, make_backend
from components.similar.index import (
    EmptyCatalogueError,
    IndexFormatError,
    IndexMismatchError,
    Item,
    ModelInfo,
    SimilarError,
    SimilarityIndex,
)
from tests.helpers import SIMILAR

DIM = 64
MODEL = ModelInfo("f" * 64, "serving/17", "17")
ANN = [name for name in BACKENDS if name != "exact"]
FULL = [name for name in BACKENDS if not BACKENDS[name].lossy]  # the compressed backend: test_similar_compressed
pytestmark = [*SIMILAR, pytest.mark.usefixtures("one_faiss_thread")]


def _unit(x):
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


@pytest.fixture(scope="module")
def vectors():
    """400 unit vectors in 20 clusters: neighbours exist, as with product photos."""
    rng = np.random.default_rng(0)
    centres = rng.standard_normal((20, DIM))
    return _unit(centres[rng.integers(0, 20, 400)] + 0.6 * rng.standard_normal((400, DIM)))


def _items(n):
    return [Item(str(1000 + i), f"http://shop/{i}.jpg", (i % 7 + 1, 10 + i % 3)) for i in range(n)]


@pytest.mark.parametrize("backend", sorted(FULL))
def test_each_item_is_its_own_nearest_neighbour(vectors, backend):
    index = SimilarityIndex.build(vectors, _items(len(vectors)), MODEL, backend=backend)
    hits = index.search(vectors, k=1)
    assert [h[0].item.item_id for h in hits] == [item.item_id for item in index.items]
    np.testing.assert_allclose([h[0].score for h in hits], 1.0, atol=1e-4)


@pytest.mark.parametrize("backend", [name for name in ANN if name in FULL])
def test_approximate_search_agrees_with_brute_force(vectors, backend):
    queries = _unit(vectors[:50] + 0.3 * np.random.default_rng(1).standard_normal((50, DIM)))
    index = SimilarityIndex.build(vectors, _items(len(vectors)), MODEL, backend=backend)
    found = np.array([[h.row for h in hits] for hits in index.search(queries, k=10)])
    exact = index_lib.brute_force(vectors, queries, 10)
    assert index_lib.recall_at_k(found, exact) >= 0.95
    np.testing.assert_array_equal(found[:, 0], exact[:, 0])
    # Scores are cosine similarities, best first.
    scores = np.array([[h.score for h in hits] for hits in index.search(queries, k=10)])
    np.testing.assert_allclose(scores[:, 0], (queries * vectors[exact[:, 0]]).sum(1), atol=1e-5)
    assert (np.diff(scores, axis=1) <= 1e-6).all()


def test_brute_force_and_recall_helpers():
    vectors = _unit(np.eye(4) + 0.1)
    np.testing.assert_array_equal(index_lib.brute_force(vectors, vectors[[2]], 2)[0, 0], 2)
    assert index_lib.recall_at_k(np.array([[1, 2, 3]]), np.array([[3, 2, 9]])) == pytest.approx(2 / 3)


@pytest.mark.parametrize("backend", sorted(BACKENDS))
def test_index_round_trips_through_save_and_load(vectors, backend, tmp_path):
    items = _items(len(vectors))
    thumbnails = [bytes([i % 256]) * (i % 5) for i in range(len(items))]  # some items without one
    # IVF-PQ's default code (512 sub-quantizers) is for 2048-d embeddings; these vectors are narrower.
    params = {"m": 16} if backend == "faiss-ivfpq" else None
    index = SimilarityIndex.build(
        vectors,
        items,
        MODEL,
        backend=backend,
        params=params,
        thumbnails=thumbnails,
        label_names={1: ("category", "dress")},
        extra={"catalogue": ["a/*.gz"]},
    )
    path = str(tmp_path / "index")
    index.save(path)
    index.save(path)  # a rebuild replaces the folder
    assert sorted(os.listdir(tmp_path)) == ["index"]  # no temporary folder left behind
    loaded = SimilarityIndex.load(path, expected_fingerprint=MODEL.fingerprint)
    assert loaded.items == items and loaded.model == MODEL and loaded.dim == DIM
    assert loaded.label_names == {1: ("category", "dress")} and loaded.manifest["catalogue"] == ["a/*.gz"]
    assert loaded.manifest["backend"] == backend and loaded.manifest["params"] == index.backend.params
    assert [loaded.thumbnail(r) for r in range(len(items))] == thumbnails
    queries = vectors[:20]
    before = [[(h.item.item_id, round(h.score, 5)) for h in hits] for hits in index.search(queries, 5)]
    after = [[(h.item.item_id, round(h.score, 5)) for h in hits] for hits in loaded.search(queries, 5)]
    assert after == before
    # A lossy backend stores codes: the same decoded vector comes back after the round trip.
    stored = index.vector_of("1007") if BACKENDS[backend].lossy else vectors[7]
    np.testing.assert_allclose(loaded.vector_of("1007"), stored, atol=1e-6)


def test_query_item_is_left_out_of_its_own_results(vectors):
    index = SimilarityIndex.build(vectors, _items(len(vectors)), MODEL, backend="hnswlib")
    hits = index.search(index.vector_of("1003")[None], k=5, exclude=["1003"])[0]
    assert len(hits) == 5 and "1003" not in [h.item.item_id for h in hits]
    assert [h.rank for h in hits] == [1, 2, 3, 4, 5]


def _fake_saved_model(path, weights=b"w1"):
    os.makedirs(os.path.join(path, "variables"))
    with open(os.path.join(path, "saved_model.pb"), "wb") as f:
        f.write(b"graph")
    with open(os.path.join(path, "variables", "variables.data-00000-of-00001"), "wb") as f:
        f.write(weights)
    return path


def test_fingerprint_follows_the_weights_not_the_folder(tmp_path):
    first = _fake_saved_model(str(tmp_path / "trainer" / "Format-Serving"))
    pushed = str(tmp_path / "serving" / "1700000000")
    shutil.copytree(first, pushed)
    retrained = _fake_saved_model(str(tmp_path / "serving" / "1700000099"), weights=b"w2")
    assert index_lib.model_fingerprint(first) == index_lib.model_fingerprint(pushed)
    assert index_lib.model_fingerprint(first) != index_lib.model_fingerprint(retrained)
    assert index_lib.model_info(pushed).version == "1700000000"
    assert index_lib.model_info(first).version == ""
    with pytest.raises(SimilarError, match="not a SavedModel"):
        index_lib.model_fingerprint(str(tmp_path))


def test_an_index_refuses_another_models_embeddings(vectors, tmp_path):
    path = str(tmp_path / "index")
    SimilarityIndex.build(vectors, _items(len(vectors)), MODEL, backend="exact").save(path)
    with pytest.raises(IndexMismatchError, match="built from another model.*version 17.*serving/99"):
        SimilarityIndex.load(path, expected_fingerprint="0" * 64, model_path="serving/99")
    index = SimilarityIndex.load(path)
    with pytest.raises(IndexMismatchError, match="32 dimensions, the index 64"):
        index.search(_unit(np.ones((1, 32))), k=3)


def test_bad_input_gets_a_clear_error(vectors):
    items = _items(len(vectors))
    with pytest.raises(EmptyCatalogueError, match="catalogue is empty"):
        SimilarityIndex.build(np.zeros((0, DIM)), [], MODEL)
    with pytest.raises(SimilarError, match="unique; repeated: \\['1000'\\]"):
        SimilarityIndex.build(vectors[:2], [items[0], items[0]], MODEL)
    with pytest.raises(SimilarError, match="3 items but vectors of shape \\(2, 64\\)"):
        SimilarityIndex.build(vectors[:2], items[:3], MODEL)
    with pytest.raises(SimilarError, match="not unit length \\(row 1 has norm 2.0000\\)"):
        SimilarityIndex.build(vectors[:3] * np.array([[1], [2], [1]], np.float32), items[:3], MODEL)
    with pytest.raises(SimilarError, match="not all finite"):
        SimilarityIndex.build(np.full((1, DIM), np.nan), items[:1], MODEL)
    with pytest.raises(ValueError, match="unknown index backend 'annoy'"):
        SimilarityIndex.build(vectors, items, MODEL, backend="annoy")
    with pytest.raises(ValueError, match="has no parameter\\(s\\) \\['nprobe'\\]"):
        make_backend("hnswlib", DIM, nprobe=3)
    index = SimilarityIndex.build(vectors[:6], items[:6], MODEL, backend="exact")
    with pytest.raises(SimilarError, match="k=7 is larger than the catalogue: the index holds 6 item"):
        index.search(vectors[:1], k=7)
    with pytest.raises(SimilarError, match="k=6 is larger than the catalogue: the index holds 5 other item"):
        index.search(vectors[:1], k=6, exclude=["1000"])
    with pytest.raises(SimilarError, match="k must be at least 1"):
        index.search(vectors[:1], k=0)
    with pytest.raises(KeyError):
        index.vector_of("no-such-id")


def test_damaged_or_foreign_folders_are_refused(vectors, tmp_path):
    with pytest.raises(IndexFormatError, match="not a similarity index \\(no manifest.json\\)"):
        SimilarityIndex.load(str(tmp_path))
    path = str(tmp_path / "index")
    SimilarityIndex.build(vectors, _items(len(vectors)), MODEL).save(path)
    with open(os.path.join(path, "index.bin"), "r+b") as f:
        f.truncate(100)
    with pytest.raises(IndexFormatError, match="index.bin: expected \\d+ bytes, found 100 bytes: the index is damaged"):
        SimilarityIndex.load(path)
    manifest_path = os.path.join(path, "manifest.json")
    with open(manifest_path) as f:
        manifest = json.load(f)
    with open(manifest_path, "w") as f:
        json.dump({**manifest, "format_version": 99}, f)
    with pytest.raises(IndexFormatError, match="version 99; this code reads 'imat-similar-index' version 1"):
        SimilarityIndex.load(path)
    with open(manifest_path, "w") as f:
        f.write("{not json")
    with pytest.raises(IndexFormatError, match="manifest.json: not valid JSON"):
        SimilarityIndex.load(path)
