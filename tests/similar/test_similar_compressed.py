"""The compressed (IVF-PQ) backend, its sharded Beam build, the size-based default, and old index folders."""

import os

import apache_beam as beam
import numpy as np
import pytest
from apache_beam.metrics.metric import MetricsFilter
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.testing.util import assert_that, equal_to

from components.similar import backends, embed_job
from components.similar import index as index_lib
from components.similar.backends import choose_backend, make_backend
from components.similar.compressed import FaissIVFPQBackend, sample_key, training_rows
from components.similar.index import Item, ModelInfo, SimilarityIndex
from components.similar.sharded_build import BuildCompressedIndex, encode_part, merge_parts, train_template
from components.similar.write_index import WriteIndex
from tests.helpers import REPO, SIMILAR

MODEL = ModelInfo("c" * 64, "serving/21", "21")
BEAM = ["--runner=FnApiRunner"]
FIXTURE = os.path.join(REPO, "tests", "data", "similar_index_v1")
pytestmark = [*SIMILAR, pytest.mark.usefixtures("one_faiss_thread")]


def clustered(n, dim, clusters, seed, spread=0.5):
    """Unit vectors around random centres, variance falling off over the dimensions as in embeddings."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((clusters, dim))
    scale = (np.arange(1, dim + 1) ** -0.5)[rng.permutation(dim)]
    x = (centres[rng.integers(0, clusters, n)] + spread * rng.standard_normal((n, dim))) * scale
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def _items(vectors):
    return [
        {
            "id": f"train/{i}",
            "url": f"http://shop.test/{i}.jpg",
            "labels": (i % 4,),
            "vector": v,
            "thumbnail": b"\xff\xd8" + i.to_bytes(2, "big"),
        }
        for i, v in enumerate(vectors)
    ]


def _hits(index, queries, k=10):
    return [[(h.item.item_id, round(h.score, 4)) for h in hits] for hits in index.search(queries, k)]


def test_compressed_recall_against_brute_force_and_its_size():
    data = clustered(3100, 128, 30, seed=0)
    vectors, queries = data[:3000], data[3000:]  # held-out queries from the same clusters
    exact = index_lib.brute_force(vectors, queries, 10)
    recall = {}
    for m in (32, 128):
        backend = make_backend("faiss-ivfpq", 128, m=m)
        backend.build(vectors)
        recall[m] = index_lib.recall_at_k(backend.search(queries, 10)[1], exact)
        assert backend.params["nlist"] == 55 and backend.params["nbits"] == 6  # sqrt(3000) cells; 3000/39 > 2^6
        # An m-byte code and an 8-byte id per item, and the centroids: well under the float32 vectors' 512 bytes.
        assert len(backend.to_bytes()) < (m + 8) * len(vectors) + 4 * 128 * (55 + 64) + 4096
    # Measured 0.66 and 0.93; chance is 10 / 3000.
    assert recall[32] >= 0.55 and recall[128] >= 0.85 and recall[128] > recall[32]


def test_lossy_vectors_come_back_decoded_and_normalised():
    vectors = clustered(2000, 64, 20, seed=1)
    index = SimilarityIndex.build(
        vectors, [Item(f"i{n}") for n in range(2000)], MODEL, backend="faiss-ivfpq", params={"m": 16}
    )
    decoded = index.vector_of("i5")
    assert abs(np.linalg.norm(decoded) - 1) < 1e-5 and float(decoded @ vectors[5]) > 0.9
    hits = index.search(decoded[None], k=5, exclude=["i5"])[0]  # what `imat similar ID` does
    assert len(hits) == 5 and "i5" not in [h.item.item_id for h in hits]


def test_training_sample_follows_the_id_hash_not_the_order():
    ids = [f"train/{i}" for i in range(50)]
    rows = training_rows(ids, 10)
    assert [ids[r] for r in rows] == sorted(ids, key=sample_key)[:10]
    reversed_ids = ids[::-1]
    assert sorted(reversed_ids[r] for r in training_rows(reversed_ids, 10)) == sorted(ids[r] for r in rows)


def test_parts_merged_hold_every_row_once():
    vectors = clustered(1200, 64, 12, seed=2)
    items = _items(vectors)
    template = train_template([(sample_key(i["id"]), i["vector"]) for i in items], len(items), {"m": 16})
    duplicates = []
    parts = [encode_part(template, items[:500] + [items[3]], duplicates.append), encode_part(template, items[500:])]
    backend, merged_items, thumbnails = merge_parts(template, parts)
    assert duplicates == ["train/3"] and backend.count == len(merged_items) == 1200
    assert [i.item_id for i in merged_items] == [i["id"] for i in items] and thumbnails[700] == items[700]["thumbnail"]
    whole = FaissIVFPQBackend(64, **template["params"])  # the same trained index, filled in one go
    whole.load_bytes(template["index"])
    whole.add(vectors)
    for got, expected in zip(backend.search(vectors[:100], 5), whole.search(vectors[:100], 5)):
        np.testing.assert_array_equal(got, expected)


def test_beam_sharded_build_equals_one_build(tmp_path):
    vectors = clustered(1500, 64, 15, seed=3)
    items = _items(vectors)
    out = str(tmp_path / "index")
    with beam.Pipeline(options=PipelineOptions(BEAM)) as p:
        written = (
            p
            | beam.Create(items + [dict(items[9])])  # a repeated id: one is kept, counted
            | BuildCompressedIndex(out, MODEL, {2: ("task", "red")}, {"build_id": "b1"}, params={"m": 16}, shards=3)
        )
        assert_that(written, equal_to([1500]))
    counters = {
        c.key.metric.name: c.committed
        for c in p.result.metrics().query(MetricsFilter().with_namespace("imat_similar"))["counters"]
    }
    assert counters == {"duplicate_ids": 1, "items_indexed": 1500}
    sharded = SimilarityIndex.load(out, expected_fingerprint=MODEL.fingerprint)
    one = SimilarityIndex.build(
        vectors, [Item(i["id"], i["url"], i["labels"]) for i in items], MODEL, backend="faiss-ivfpq", params={"m": 16}
    )
    assert sharded.manifest["backend"] == "faiss-ivfpq" and sharded.manifest["params"] == one.backend.params
    assert sharded.manifest["build_id"] == "b1" and sharded.label_names == {2: ("task", "red")}
    assert sorted(i.item_id for i in sharded.items) == sorted(i["id"] for i in items)
    assert sharded.thumbnail(sharded.row_of("train/77")) == items[77]["thumbnail"]
    queries = clustered(40, 64, 15, seed=3, spread=0.6)
    assert _hits(sharded, queries) == _hits(one, queries)  # same training sample, same codes, same neighbours


def test_auto_backend_follows_the_catalogue_size():
    assert choose_backend("auto", backends.COMPRESSED_FROM - 1) == "faiss-hnsw"
    assert choose_backend("auto", backends.COMPRESSED_FROM) == "faiss-ivfpq"
    assert choose_backend("hnswlib", 10**7) == "hnswlib"
    with pytest.raises(ValueError, match="unknown index backend 'annoy'.*'auto'"):
        choose_backend("annoy", 1)


@pytest.mark.parametrize(
    "backend, n, expected",
    [
        ("auto", 799, "faiss-hnsw"),
        ("auto", 800, "faiss-ivfpq"),
        ("faiss-ivfpq", 300, "faiss-ivfpq"),
        ("exact", 900, "exact"),
    ],
)
def test_the_job_writes_with_the_backend_chosen(backend, n, expected, tmp_path, monkeypatch):
    monkeypatch.setattr(backends, "COMPRESSED_FROM", 800)  # a small "large" catalogue, to run it here
    monkeypatch.setitem(FaissIVFPQBackend.defaults, "m", 16)
    out = str(tmp_path / "index")
    with beam.Pipeline(options=PipelineOptions(BEAM)) as p:
        written = p | beam.Create(_items(clustered(n, 64, 10, seed=4))) | WriteIndex(out, backend, MODEL, {}, {})
        assert_that(written, equal_to([n]))
    index = SimilarityIndex.load(out)
    assert index.manifest["backend"] == expected and index.count == n


def test_imat_index_offers_the_compressed_backend():
    _, args, _ = embed_job.parse_args(["--backend", "faiss-ivfpq", "--shards", "64"])
    assert args.backend == "faiss-ivfpq" and args.shards == 64
    assert embed_job.parse_args([])[1].backend == "auto"
    with pytest.raises(SystemExit):
        embed_job.parse_args(["--backend", "annoy"])


def test_an_index_folder_written_before_the_compressed_backend_still_loads():
    # Written by the code before this change (faiss-hnsw, then the default) from these vectors.
    rng = np.random.default_rng(13)
    vectors = rng.standard_normal((6, 8))
    vectors = (vectors / np.linalg.norm(vectors, axis=1, keepdims=True)).astype(np.float32)
    index = SimilarityIndex.load(FIXTURE, expected_fingerprint="a" * 64)
    assert index.manifest["backend"] == "faiss-hnsw" and index.count == 6
    assert index.label_names == {7: ("colour", "red")}
    assert index.items[4] == Item("train/4", "http://shop.test/4.jpg", (1, 7)) and index.thumbnail(4) == b"\xff\xd8\x04"
    found = np.array([[h.row for h in hits] for hits in index.search(vectors, 3)])
    np.testing.assert_array_equal(found, index_lib.brute_force(vectors, vectors, 3))
