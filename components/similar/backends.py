"""Nearest-neighbour backends behind one small interface: exact numpy, FAISS (HNSW, IVF, IVF-PQ), hnswlib.

Every backend indexes L2-normalised float32 vectors by row number (0..n-1) and scores by
inner product, which for unit vectors is the cosine similarity. The index (``index.py``)
keeps the item metadata and maps rows back to items; the benchmark compares these
backends on the same vectors. Libraries are imported when a backend is made, so the
numpy-only ``exact`` backend works without them.
"""

import io
import os
import tempfile
from typing import Dict, Type

import numpy as np

from components.similar.backend_base import Backend, FaissBackend
from components.similar.compressed import FaissIVFPQBackend


class ExactBackend(Backend):
    """Brute force: one matrix product per query batch. The ground truth for recall."""

    name = "exact"

    def build(self, vectors):
        self._vectors = np.ascontiguousarray(vectors, np.float32)

    def search(self, queries, k):
        scores = queries @ self._vectors.T
        k = min(k, scores.shape[1])
        top = np.argpartition(-scores, k - 1, axis=1)[:, :k]
        order = np.argsort(-np.take_along_axis(scores, top, axis=1), axis=1, kind="stable")
        rows = np.take_along_axis(top, order, axis=1)
        return np.take_along_axis(scores, rows, axis=1), rows

    def vectors(self, rows):
        return self._vectors[rows]

    def to_bytes(self):
        buf = io.BytesIO()
        np.save(buf, self._vectors, allow_pickle=False)
        return buf.getvalue()

    def load_bytes(self, data):
        self._vectors = np.load(io.BytesIO(data), allow_pickle=False)


class FaissHNSWBackend(FaissBackend):
    """FAISS ``IndexHNSWFlat`` on inner product: a graph index, vectors kept exactly."""

    name = "faiss-hnsw"
    # ef_search 16 already reached recall@10 0.998 in the benchmark; 32 (recall 1.000 there, still
    # ~13k queries/s on one core) keeps headroom for catalogues much larger than the 10k measured.
    defaults = {"M": 32, "ef_construction": 200, "ef_search": 32}

    def build(self, vectors):
        import faiss

        self._index = faiss.IndexHNSWFlat(self.dim, self.params["M"], faiss.METRIC_INNER_PRODUCT)
        self._index.hnsw.efConstruction = self.params["ef_construction"]
        self._index.add(np.ascontiguousarray(vectors, np.float32))

    def add(self, vectors: np.ndarray) -> None:
        """Adds vectors after those already there: a large set can be added a chunk at a time."""
        self._index.add(np.ascontiguousarray(vectors, np.float32))

    def _set_search_params(self, k):
        # The candidate list must hold at least k, or fewer than k neighbours come back.
        self._index.hnsw.efSearch = max(self.params["ef_search"], k)


class FaissIVFBackend(FaissBackend):
    """FAISS ``IndexIVFFlat``: k-means cells, ``nprobe`` of them scanned per query.

    ``nlist`` 0 picks about sqrt(n) cells, kept at or below n / 39 where FAISS would
    warn that k-means has too few points per centroid.
    """

    name = "faiss-ivf"
    defaults = {"nlist": 0, "nprobe": 8}

    def build(self, vectors):
        import faiss

        n = len(vectors)
        nlist = self.params["nlist"] or max(1, min(int(round(np.sqrt(n))), n // 39))
        self.params["nlist"] = nlist
        quantizer = faiss.IndexFlatIP(self.dim)
        index = faiss.IndexIVFFlat(quantizer, self.dim, nlist, faiss.METRIC_INNER_PRODUCT)
        vectors = np.ascontiguousarray(vectors, np.float32)
        index.train(vectors)
        index.add(vectors)
        self._index = index
        self._quantizer = quantizer  # the IVF index refers to it; keep it alive
        self._after_load()

    def _after_load(self):
        self._index.make_direct_map()  # lets reconstruct() find a row's vector

    def _set_search_params(self, k):
        self._index.nprobe = min(self.params["nprobe"], self._index.nlist)


class HnswlibBackend(Backend):
    """hnswlib's HNSW graph on inner product (its distance is 1 - score)."""

    name = "hnswlib"
    defaults = {"M": 32, "ef_construction": 200, "ef_search": 64, "seed": 100}

    def build(self, vectors):
        import hnswlib

        self._index = hnswlib.Index(space="ip", dim=self.dim)
        self._index.init_index(
            max_elements=max(1, len(vectors)),
            ef_construction=self.params["ef_construction"],
            M=self.params["M"],
            random_seed=self.params["seed"],
        )
        self._index.add_items(
            np.ascontiguousarray(vectors, np.float32), np.arange(len(vectors)), num_threads=self.threads
        )

    def search(self, queries, k):
        self._index.set_ef(max(self.params["ef_search"], k))
        labels, distances = self._index.knn_query(
            np.ascontiguousarray(queries, np.float32), k=k, num_threads=self.threads
        )
        return (1.0 - distances).astype(np.float32), labels.astype(np.int64)

    def vectors(self, rows):
        return np.asarray(self._index.get_items(list(map(int, rows)), return_type="numpy"), np.float32).reshape(
            len(rows), self.dim
        )

    def to_bytes(self):
        # hnswlib saves to and loads from local paths only; a temporary file carries the bytes.
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "index.bin")
            self._index.save_index(path)
            with open(path, "rb") as f:
                return f.read()

    def load_bytes(self, data):
        import hnswlib

        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "index.bin")
            with open(path, "wb") as f:
                f.write(data)
            self._index = hnswlib.Index(space="ip", dim=self.dim)
            self._index.load_index(path)


# "auto" picks by catalogue size. Below COMPRESSED_FROM items, FAISS HNSW (benchmarks/similar_benchmark.py:
# it tied hnswlib on recall and answered and built faster; IVF-Flat needed 8 probes for the same
# recall and was then 4x slower). From there on the compressed IVF-PQ (benchmarks/
# index_scale_benchmark.py): HNSW keeps ~8.5 KB an item, so 200k items already take 1.7 GB on the
# machine that serves them and ~3x that on the one Beam worker that builds them.
AUTO_BACKEND, SMALL_BACKEND, LARGE_BACKEND = "auto", "faiss-hnsw", "faiss-ivfpq"
COMPRESSED_FROM = 200_000
BACKENDS: Dict[str, Type[Backend]] = {
    b.name: b for b in (ExactBackend, FaissHNSWBackend, FaissIVFBackend, HnswlibBackend, FaissIVFPQBackend)
}


def make_backend(name: str, dim: int, **params: int) -> Backend:
    """A backend by name (``exact``, ``faiss-hnsw``, ``faiss-ivf``, ``hnswlib``, ``faiss-ivfpq``) for ``dim``-wide
    vectors.

    Raises:
      ValueError: an unknown backend or parameter.
    """
    if name not in BACKENDS:
        raise ValueError(f"unknown index backend {name!r}: use one of {sorted(BACKENDS)}")
    return BACKENDS[name](dim, **params)


def choose_backend(name: str, count: int) -> str:
    """The backend for a catalogue of ``count`` items: ``name`` itself unless it is "auto".

    Raises:
      ValueError: an unknown backend name.
    """
    if name == AUTO_BACKEND:
        return LARGE_BACKEND if count >= COMPRESSED_FROM else SMALL_BACKEND
    if name not in BACKENDS:
        raise ValueError(f"unknown index backend {name!r}: use one of {[AUTO_BACKEND] + sorted(BACKENDS)}")
    return name
