"""The compressed backend: FAISS IVF-PQ, trained on a sample, filled in parts, parts merged.

HNSW keeps every float32 vector: 8 KB per 2048-d item, about 8.5 GB with its graph at a
million items, on one machine. IVF-PQ keeps an ``m``-byte code and an 8-byte id per item:
k-means cells (``nlist``) pick the candidates, a product quantizer (``m`` sub-vectors, 256
centroids each) approximates the inner products. It is trained once on a sample, then any
number of workers encode their part of the catalogue into copies of the trained, empty
index and the parts are merged (``merge_from``): no worker ever holds all the vectors.

FAISS needs ``m`` to divide the embedding width: ``choose_m`` takes the width's largest divisor
up to the ``m`` asked for (512 by default), so 512 for the 2,048-d InceptionV3, Xception and
ResNet50, 320 for EfficientNetV2B0's 1,280 and 288 for MobileNetV3Small's 576.

The training sample is chosen by a hash of the item ids (``sample_key``), so a build on
one machine (``SimilarityIndex.build``) and the Beam job's sharded build train on the same
items and produce the same index.
"""

import hashlib
import logging
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from components.similar.backend_base import FaissBackend

log = logging.getLogger(__name__)

# Vectors encoded per FAISS call. Encoding n vectors with m sub-quantizers of 32 or 16 dimensions
# allocates n x 256 x m floats of distance tables (512 MB for 8,192 vectors at m=64): 1,024 keep it
# under 128 MB at m=128 (m=256's 8-dimension sub-vectors are encoded without the tables).
ADD_CHUNK = 1024
MIN_POINTS_PER_CENTROID = 39  # below this FAISS's k-means warns that the cells are poorly trained
# Sub-quantizers asked for by default: 512-byte codes, chosen for 2,048-d embeddings by
# benchmarks/index_scale_benchmark.py (docs/benchmarks.md, "Similar products at 100,000 and 1,000,000 items").
DEFAULT_M = 512
# An m below a quarter of the one asked for (a prime width has no divisor but 1 and itself) is a
# coarse code, warned about: its sub-vectors are too wide for 2^nbits centroids to tell items apart.
COARSE_FACTOR = 4


def choose_m(width: int, target: int = DEFAULT_M) -> int:
    """Sub-quantizers for ``width``-wide vectors: the largest divisor of ``width`` that is at most ``target``.

    FAISS's product quantizer (CPU, any ``nbits``) needs ``m`` to divide the width; nothing else
    bounds it: sub-vectors of any width (1, 2, 5, ... dimensions) train, encode, merge and search.
    A ``target`` above the width gives the width itself (one dimension per sub-quantizer).

    Raises:
      ValueError: ``width`` or ``target`` below 1.
    """
    if width < 1 or target < 1:
        raise ValueError(f"faiss-ivfpq: needs a width and an m of at least 1, got width {width} and m={target}")
    return next(m for m in range(min(target, width), 0, -1) if width % m == 0)


def _m_note(width: int, asked: int, m: int) -> str:
    """The one line that says which ``m`` is used instead of the ``m`` asked for, and why."""
    note = (
        f"faiss-ivfpq: m={m} used instead of m={asked}: FAISS's m must divide the embedding width {width}, "
        f"and {m} is its largest divisor up to {asked}"
    )
    if m * COARSE_FACTOR < min(asked, width):
        note += (
            f"; a coarse code of {width // m}-dimension sub-vectors that finds near neighbours poorly "
            "(faiss-hnsw keeps the vectors whole)"
        )
    return note


def log_m_choice(width: int, asked: int) -> int:
    """``choose_m(width, asked)``, logging one line when it is not ``asked``: INFO for the default, else WARNING."""
    m = choose_m(width, asked)
    if m != asked:
        coarse = m * COARSE_FACTOR < min(asked, width)
        log.log(logging.INFO if asked == DEFAULT_M and not coarse else logging.WARNING, "%s", _m_note(width, asked, m))
    return m


def check_settings(params: Dict[str, int], width: Optional[int]) -> Dict[str, int]:
    """Checks the IVF-PQ settings a user gave, before hours of embedding; returns them with ``m`` chosen.

    Args:
      params: the parameters given (``m``, ``nprobe``, ...); the defaults are not checked.
      width: the embedding width (the model's ``embed_images`` output), None where unknown: ``m``
        is then checked against it when the index is trained.

    Returns:
      ``params`` with ``m`` replaced by ``choose_m(width, m)`` (one log line when that differs).

    Raises:
      ValueError: one line naming the setting, its value and the width: ``m`` below 1 or above
        the width, ``nprobe`` below 1.
    """
    on = f" for embeddings of width {width}" if width else ""
    m, nprobe = params.get("m"), params.get("nprobe")
    if m is not None and (m < 1 or (width and m > width)):
        limits = f"between 1 and {width} (default: {choose_m(width)})" if width else "at least 1"
        raise ValueError(f"faiss-ivfpq: m={m} is invalid{on}: m (sub-quantizers, bytes per item) must be {limits}")
    if nprobe is not None and nprobe < 1:
        raise ValueError(
            f"faiss-ivfpq: nprobe={nprobe} is invalid{on}: nprobe (cells scanned per query) must be at least 1"
        )
    if m is not None and width:
        return {**params, "m": log_m_choice(width, m)}
    return dict(params)


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

    Parameters: ``m`` bytes per item (sub-quantizers; ``train`` takes the largest divisor of the
    dimension up to it, ``choose_m``, and records that); ``nlist`` cells (0: ``auto_nlist`` of the
    catalogue's size); ``nprobe`` cells scanned per query; ``train_size`` vectors in the training
    sample; ``nbits`` bits per sub-quantizer code (0: 8, or fewer for a sample under 256 x 39 vectors).
    """

    name = "faiss-ivfpq"
    lossy = True
    trains_on_sample = True
    # m and nprobe: chosen by benchmarks/index_scale_benchmark.py (see DEFAULT_M).
    defaults = {"nlist": 0, "m": DEFAULT_M, "nbits": 0, "nprobe": 16, "train_size": 65536}

    def __init__(self, dim: int, **params: int):
        super().__init__(dim, **params)
        for name in ("m", "nprobe"):
            if self.params[name] < 1:
                raise ValueError(f"faiss-ivfpq: {name}={self.params[name]} must be at least 1 (dimension {dim})")

    def train(self, sample: np.ndarray, count: int) -> None:
        """Trains an empty index on ``sample`` for a catalogue of ``count`` items.

        ``m`` becomes the largest divisor of the dimension up to it (one log line when it changes).

        Raises:
          ValueError: the sample is empty.
        """
        import faiss

        m = self.params["m"] = log_m_choice(self.dim, self.params["m"])
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
