"""The backend interface, and the FAISS base class that the FAISS backends share.

Kept apart from ``backends.py`` (the registry and the full-vector backends) so that the
compressed backend (``compressed.py``) can subclass it without an import cycle.
"""

import os
from typing import Dict, Tuple

import numpy as np


class Backend:
    """A k-NN structure over unit vectors; rows are the vectors' positions at build time."""

    name = ""
    defaults: Dict[str, int] = {}
    # True where stored vectors are approximations (compressed codes): scores are then
    # approximate too, and ``vectors`` returns the decoded vectors, normalised.
    lossy = False
    # True where the backend is trained on a sample, then filled (``train``, ``add``) and can
    # merge copies filled elsewhere (``merge``): the Beam job then builds it on many workers.
    trains_on_sample = False

    def __init__(self, dim: int, **params: int):
        unknown = set(params) - set(self.defaults)
        if unknown:
            raise ValueError(
                f"backend {self.name!r} has no parameter(s) {sorted(unknown)}; "
                f"it takes {sorted(self.defaults) or 'none'}"
            )
        self.dim = dim
        self.params = {**self.defaults, **{k: int(v) for k, v in params.items()}}
        self.threads = -1  # -1: the library's default (all cores)

    def set_threads(self, threads: int) -> None:
        """Threads for building and searching, so the benchmark compares backends at equal threads.

        numpy's BLAS (the exact backend) is limited by the caller, e.g. with threadpoolctl.
        """
        self.threads = threads

    def build(self, vectors: np.ndarray) -> None:
        raise NotImplementedError

    def search(self, queries: np.ndarray, k: int) -> Tuple[np.ndarray, np.ndarray]:
        """(scores, rows), each [num_queries, k], best first; row -1 where fewer were found."""
        raise NotImplementedError

    def vectors(self, rows: np.ndarray) -> np.ndarray:
        """The stored vectors of the given rows."""
        raise NotImplementedError

    def to_bytes(self) -> bytes:
        raise NotImplementedError

    def load_bytes(self, data: bytes) -> None:
        raise NotImplementedError


class FaissBackend(Backend):
    """What the FAISS backends share: search, reconstruction, (de)serialisation, threads."""

    def search(self, queries, k):
        self._set_search_params(k)
        scores, rows = self._index.search(np.ascontiguousarray(queries, np.float32), k)
        return scores, rows

    def vectors(self, rows):
        return np.stack([self._index.reconstruct(int(r)) for r in rows]) if len(rows) else np.zeros((0, self.dim))

    def to_bytes(self):
        import faiss

        return faiss.serialize_index(self._index).tobytes()

    def load_bytes(self, data):
        import faiss

        self._index = faiss.deserialize_index(np.frombuffer(data, np.uint8))
        self._after_load()

    def set_threads(self, threads):
        import faiss

        super().set_threads(threads)
        faiss.omp_set_num_threads(threads if threads > 0 else os.cpu_count() or 1)  # process-wide in FAISS

    def _set_search_params(self, k: int) -> None:
        pass

    def _after_load(self) -> None:
        pass
