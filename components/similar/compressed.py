"""The compressed backend: FAISS IVF-PQ, trained on a sample, filled in parts, parts merged.

HNSW keeps every float32 vector: 8 KB per 2048-d item, about 8.5 GB with its graph at a
million items, on one machine. IVF-PQ keeps an ``m``-byte code and an 8-byte id per item:
k-means cells (``nlist``) pick the candidates, a product quantizer (``m`` sub-vectors, 256
centroids each) approximates the inner products. It is trained once on a sample, then any
number of workers encode their part of the catalogue into copies of the trained, empty
index and the parts are merged (``merge_from``): no worker ever holds all the vectors.

The training sample is chosen by a hash of the item ids (``sample_key``), so a build on
one machine (``SimilarityIndex.build``) and the Beam job's sharded build train on the same
items and produce the same index.
"""

import hashlib
from typing import List, Sequence, Tuple

import numpy as np

from components.similar.backend_base import FaissBackend

# Vectors encoded per FAISS call. Encoding n vectors with m sub-quantizers of 32 or 16 dimensions
# allocates n x 256 x m floats of distance tables (512 MB for 8,192 vectors at m=64): 1,024 keep it
# under 128 MB at m=128 (m=256's 8-dimension sub-vectors are encoded without the tables).
ADD_CHUNK = 1024
MIN_POINTS_PER_CENTROID = 39  # below this FAISS's k-means warns that the cells are poorly trained


def sample_key(item_id: str) -> Tuple[int, str]:
    """An item's place in the training order: a stable pseudo-random order, the same on every worker."""
    return int.from_bytes(hashlib.blake2b(item_id.encode("utf-8"), digest_size=8).digest(), "big"), item_id


def training_rows(item_ids: Sequence[str], size: int) -> np.ndarray:
    """Rows of the ``size`` items first in ``sample_key`` order, in that order."""
    order = sorted(range(len(item_ids)), key=lambda row: sample_key(item_ids[row]))
    return np.asarray(order[:size], np.int64)


def auto_nlist(count: int, sample_size: int) -> int:
    """About sqrt(count) cells, no more than the sample trains well (39 points per cell)."""
    return max(
        1, min(int(round(np.sqrt(count))), count // MIN_POINTS_PER_CENTROID, sample_size // MIN_POINTS_PER_CENTROID)
    )


class FaissIVFPQBackend(FaissBackend):
    """FAISS ``IndexIVFPQ`` on inner product.

    Parameters: ``m`` bytes per item (sub-quantizers, a divisor of the dimension); ``nlist``
    cells (0: ``auto_nlist`` of the catalogue's size); ``nprobe`` cells scanned per query;
    ``train_size`` vectors in the training sample; ``nbits`` bits per sub-quantizer code
    (0: 8, or fewer for a sample under 256 x 39 vectors).
    """

    name = "faiss-ivfpq"
    lossy = True
    trains_on_sample = True
    # Chosen by benchmarks/index_scale_benchmark.py (README, "Similar products at a million items").
    defaults = {"nlist": 0, "m": 512, "nbits": 0, "nprobe": 16, "train_size": 65536}

    def train(self, sample: np.ndarray, count: int) -> None:
        """Trains an empty index on ``sample`` for a catalogue of ``count`` items.

        Raises:
          ValueError: ``m`` does not divide the dimension, or the sample is empty.
        """
        import faiss

        m = self.params["m"]
        if m < 1 or self.dim % m:
            raise ValueError(f"faiss-ivfpq: m={m} must divide the dimension {self.dim}")
        if len(sample) == 0:
            raise ValueError("faiss-ivfpq: an empty training sample")
        self.params["nlist"] = self.params["nlist"] or auto_nlist(count, len(sample))
        # 2^nbits centroids per sub-quantizer, each trained on 39 points or more: a small catalogue gets fewer.
        bits = int(np.clip(np.log2(len(sample) / MIN_POINTS_PER_CENTROID), 1, 8))
        self.params["nbits"] = self.params["nbits"] or bits
        factory = f"IVF{self.params['nlist']},PQ{m}x{self.params['nbits']}"
        self._index = faiss.index_factory(self.dim, factory, faiss.METRIC_INNER_PRODUCT)
        # The factory turns on polysemous training: minutes of CPU for a Hamming filter that
        # only L2 search uses.
        faiss.downcast_index(faiss.extract_index_ivf(self._index)).do_polysemous_training = False
        self._index.train(np.ascontiguousarray(sample, np.float32))

    def add(self, vectors: np.ndarray) -> None:
        """Encodes vectors into the index; their rows follow the rows already there."""
        for start in range(0, len(vectors), ADD_CHUNK):
            self._index.add(np.ascontiguousarray(vectors[start : start + ADD_CHUNK], np.float32))

    def merge(self, parts: List["FaissIVFPQBackend"]) -> None:
        """Moves the parts' items into this index, after its own rows, part after part.

        Every part must be a copy of the same trained index (``to_bytes`` of it after
        ``train``); the parts are left empty.
        """
        import faiss

        ivf = faiss.extract_index_ivf(self._index)
        for part in parts:
            # Each part numbered its rows from 0: they follow the rows merged so far.
            ivf.merge_from(faiss.extract_index_ivf(part._index), ivf.ntotal)

    @property
    def count(self) -> int:
        return int(self._index.ntotal)

    def build(self, vectors, sample_rows=None):
        """Trains on ``vectors[sample_rows]`` (default: the first ``train_size``) and adds them all."""
        sample_rows = np.arange(min(len(vectors), self.params["train_size"])) if sample_rows is None else sample_rows
        self.train(vectors[sample_rows], len(vectors))
        self.add(vectors)

    def vectors(self, rows):
        import faiss

        ivf = faiss.extract_index_ivf(self._index)
        if ivf.direct_map.type == faiss.DirectMap.NoMap:
            # Made on first use, not stored: 8 bytes an item that only `imat similar ID` needs.
            ivf.make_direct_map()
        decoded = super().vectors(rows)
        return (decoded / np.maximum(np.linalg.norm(decoded, axis=1, keepdims=True), 1e-12)).astype(np.float32)

    def _set_search_params(self, k):
        import faiss

        faiss.extract_index_ivf(self._index).nprobe = min(self.params["nprobe"], self.params["nlist"])
