"""The similar-product index: vectors in a k-NN backend, items beside them, tied to one model.

An index is a folder (local or ``gs://``):

  manifest.json   format and version, backend and its parameters, dimension, item count,
                  the model it came from (fingerprint, path, version), label names, the
                  catalogue it was built from, and each file's size
  items.jsonl     one line per row: item id, URL, label ids, thumbnail offset and length
  index.bin       the backend's own serialised index
  thumbnails.bin  small JPEGs of the items, concatenated (for contact sheets); may be empty

The manifest is written last: a folder without one is not an index. A model's fingerprint
is a SHA-256 of its SavedModel files (graph and weights), so Pusher's copy of a model has
the same fingerprint as the Trainer's, and any retrained model a different one: an index
refuses queries embedded by another model (``IndexMismatchError``).
"""

import collections
import dataclasses
import hashlib
import json
import os
import shutil
import time
import uuid
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from components.similar.backends import AUTO_BACKEND, Backend, choose_backend, make_backend
from components.similar.compressed import training_rows

FORMAT, FORMAT_VERSION = "imat-similar-index", 1
MANIFEST, ITEMS, INDEX, THUMBNAILS = "manifest.json", "items.jsonl", "index.bin", "thumbnails.bin"
DEFAULT_BACKEND = AUTO_BACKEND  # by the catalogue's size: backends.choose_backend
NORM_TOLERANCE = 1e-3


class SimilarError(ValueError):
    """Bad input to similar-product search: the message says what and where."""


class EmptyCatalogueError(SimilarError):
    """No item could be indexed."""


class IndexMismatchError(SimilarError):
    """The index was built from another model's embeddings."""


class IndexFormatError(SimilarError):
    """The folder is not a readable index."""


@dataclasses.dataclass(frozen=True)
class Item:
    item_id: str
    url: str = ""
    labels: Tuple[int, ...] = ()


@dataclasses.dataclass(frozen=True)
class ModelInfo:
    fingerprint: str
    path: str = ""
    version: str = ""  # Pusher's version folder name, when the model came from one


@dataclasses.dataclass(frozen=True)
class Hit:
    rank: int  # 1-based
    score: float  # cosine similarity
    item: Item
    row: int


# File system access: plain files locally, TensorFlow's gfile (imported only then) for gs:// and the like.
def _remote(path: str) -> bool:
    return "://" in path


def read_bytes(path: str) -> bytes:
    if _remote(path):
        import tensorflow as tf

        with tf.io.gfile.GFile(path, "rb") as f:
            return f.read()
    with open(path, "rb") as f:
        return f.read()


def _write_bytes(path: str, data: bytes) -> None:
    if _remote(path):
        import tensorflow as tf

        with tf.io.gfile.GFile(path, "wb") as f:
            f.write(data)
    else:
        with open(path, "wb") as f:
            f.write(data)


def _exists(path: str) -> bool:
    if _remote(path):
        import tensorflow as tf

        return tf.io.gfile.exists(path)
    return os.path.exists(path)


def _list_files(folder: str) -> List[str]:
    """Relative paths of every file under ``folder``, sorted."""
    if _remote(folder):
        import tensorflow as tf

        out = []
        for root, _, files in tf.io.gfile.walk(folder):
            out += [os.path.relpath(os.path.join(root, f), folder) for f in files]
        return sorted(out)
    return sorted(os.path.relpath(os.path.join(root, f), folder) for root, _, files in os.walk(folder) for f in files)


def model_fingerprint(model_dir: str) -> str:
    """SHA-256 of a SavedModel's graph and weights, stable across copies of the folder.

    Raises:
      SimilarError: the folder holds no ``saved_model.pb``.
    """
    model_dir = model_dir.rstrip("/")
    if not _exists(os.path.join(model_dir, "saved_model.pb")):
        raise SimilarError(f"{model_dir}: not a SavedModel (no saved_model.pb)")
    digest = hashlib.sha256()
    files = ["saved_model.pb"] + [f for f in _list_files(model_dir) if f.startswith("variables" + os.sep)]
    for name in files:
        digest.update(name.encode() + b"\0")
        digest.update(hashlib.sha256(read_bytes(os.path.join(model_dir, name))).digest())
    return digest.hexdigest()


def model_info(model_dir: str) -> ModelInfo:
    """Fingerprint, path and Pusher version (the folder's name when it is a number) of a model."""
    name = os.path.basename(model_dir.rstrip("/"))
    return ModelInfo(model_fingerprint(model_dir), model_dir, name if name.isdigit() else "")


class SimilarityIndex:
    """Items and their unit vectors in a k-NN backend, tied to the model that embedded them."""

    def __init__(
        self,
        backend: Backend,
        items: Sequence[Item],
        model: ModelInfo,
        manifest: Optional[dict] = None,
        thumbnails: bytes = b"",
        thumbnail_spans: Optional[Sequence[Tuple[int, int]]] = None,
    ):
        self.backend = backend
        self.items = list(items)
        self.model = model
        self.manifest = dict(manifest or {})
        self._thumbnails = thumbnails
        self._spans = list(thumbnail_spans or [(0, 0)] * len(self.items))
        self._rows = {item.item_id: row for row, item in enumerate(self.items)}

    @property
    def count(self) -> int:
        return len(self.items)

    @property
    def dim(self) -> int:
        return self.backend.dim

    @property
    def label_names(self) -> Dict[int, Tuple[str, str]]:
        """Label id -> (task, name), as given at build time."""
        return {int(k): (v["task"], v["name"]) for k, v in self.manifest.get("labels", {}).items()}

    @classmethod
    def build(
        cls,
        vectors: np.ndarray,
        items: Sequence[Item],
        model: ModelInfo,
        backend: str = DEFAULT_BACKEND,
        params: Optional[dict] = None,
        thumbnails: Optional[Sequence[bytes]] = None,
        label_names: Optional[Dict[int, Tuple[str, str]]] = None,
        extra: Optional[dict] = None,
    ) -> "SimilarityIndex":
        """Builds an index over unit vectors.

        Args:
          vectors: float [n, dim], each row of norm 1 (the model's ``embed_images`` output).
          items: n items, in the rows' order, with unique ids.
          model: the model that embedded them.
          backend: a name from ``backends.BACKENDS``, or "auto" (``choose_backend``); params: its parameters.
          thumbnails: n small JPEGs (b"" where there is none), for contact sheets.
          label_names: label id -> (task, name), stored so results print without a label map.
          extra: more manifest fields (e.g. the catalogue's files and skipped records).

        Raises:
          EmptyCatalogueError: no items.
          SimilarError: counts disagree, ids repeat, or vectors are not finite unit vectors.
        """
        vectors = np.asarray(vectors, np.float32)
        if len(items) == 0:
            raise EmptyCatalogueError("the catalogue is empty: no item to index")
        if vectors.ndim != 2 or len(vectors) != len(items):
            raise SimilarError(f"{len(items)} items but vectors of shape {vectors.shape}")
        ids = collections.Counter(item.item_id for item in items)
        if len(ids) != len(items):
            repeated = sorted(i for i, n in ids.items() if n > 1)[:5]
            raise SimilarError(f"item ids must be unique; repeated: {repeated}")
        _check_unit(vectors, "catalogue vectors")
        start = time.monotonic()
        index_backend = make_backend(choose_backend(backend, len(items)), vectors.shape[1], **(params or {}))
        if index_backend.trains_on_sample:
            # The same sample as the Beam job's sharded build: the items first in sample_key order.
            index_backend.build(
                vectors, training_rows([item.item_id for item in items], index_backend.params["train_size"])
            )
        else:
            index_backend.build(vectors)
        return cls.assemble(
            index_backend, items, model, thumbnails, label_names, extra, build_seconds=time.monotonic() - start
        )

    @classmethod
    def assemble(
        cls,
        backend: Backend,
        items: Sequence[Item],
        model: ModelInfo,
        thumbnails: Optional[Sequence[bytes]] = None,
        label_names: Optional[Dict[int, Tuple[str, str]]] = None,
        extra: Optional[dict] = None,
        build_seconds: float = 0.0,
    ) -> "SimilarityIndex":
        """An index around a backend already filled with the items' vectors, row i being ``items[i]``.

        ``build`` uses it; so does the Beam job, which fills the backend in parts on several workers.
        """
        thumbnails = list(thumbnails) if thumbnails is not None else [b""] * len(items)
        spans, offset = [], 0
        for thumb in thumbnails:
            spans.append((offset, len(thumb)))
            offset += len(thumb)
        manifest = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "backend": backend.name,
            "params": backend.params,
            "metric": "cosine",
            "dim": int(backend.dim),
            "count": len(items),
            "model": dataclasses.asdict(model),
            "build_seconds": round(build_seconds, 3),
            "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "labels": {str(k): {"task": t, "name": n} for k, (t, n) in sorted((label_names or {}).items())},
            **(extra or {}),
        }
        return cls(backend, items, model, manifest, b"".join(thumbnails), spans)

    def check_k(self, k: int, excluded: int = 0) -> None:
        """Raises SimilarError unless 1 <= k <= the items left after ``excluded`` are left out."""
        if k < 1:
            raise SimilarError(f"k must be at least 1, got {k}")
        if k > self.count - excluded:
            others = " other" if excluded else ""
            raise SimilarError(
                f"k={k} is larger than the catalogue: the index holds {self.count - excluded}{others} item(s)"
            )

    def search(self, vectors: np.ndarray, k: int, exclude: Optional[Sequence[Optional[str]]] = None) -> List[List[Hit]]:
        """The k nearest items to each query vector, best first.

        Args:
          vectors: float [num_queries, dim] unit vectors from the index's model.
          k: neighbours per query, at most the catalogue's size (less the excluded item).
          exclude: per query, an item id to leave out of its results (the query item itself).

        Raises:
          SimilarError: k out of range; IndexMismatchError: vectors of another width.
        """
        vectors = np.atleast_2d(np.asarray(vectors, np.float32))
        if vectors.shape[1] != self.dim:
            raise IndexMismatchError(
                f"query vectors have {vectors.shape[1]} dimensions, the index {self.dim}: they come from another model"
            )
        _check_unit(vectors, "query vectors")
        exclude = list(exclude) if exclude is not None else [None] * len(vectors)
        extra = int(any(e is not None for e in exclude))  # one more, in case the query item comes back
        self.check_k(k, excluded=extra)
        scores, rows = self.backend.search(vectors, min(k + extra, self.count))
        results = []
        for query_scores, query_rows, skip in zip(scores, rows, exclude):
            hits = [
                (float(s), int(r)) for s, r in zip(query_scores, query_rows) if r >= 0 and self.items[r].item_id != skip
            ]
            results.append([Hit(rank, score, self.items[row], row) for rank, (score, row) in enumerate(hits[:k], 1)])
        return results

    def row_of(self, item_id: str) -> int:
        """The item's row; KeyError naming the id when it is not in the index."""
        return self._rows[item_id]

    def vector_of(self, item_id: str) -> np.ndarray:
        """The stored vector of an item; KeyError naming the id when it is not in the index."""
        return self.backend.vectors(np.array([self.row_of(item_id)]))[0]

    def __contains__(self, item_id: str) -> bool:
        return item_id in self._rows

    def thumbnail(self, row: int) -> bytes:
        """The item's thumbnail JPEG, or b"" when the index stores none."""
        offset, length = self._spans[row]
        return self._thumbnails[offset : offset + length]

    def save(self, path: str) -> None:
        """Writes the index folder, replacing an existing one; the manifest is written last.

        Locally the files go to a temporary folder beside ``path`` that is then renamed, so a
        reader never sees half an index.
        """
        path = path.rstrip("/")
        target = path if _remote(path) else f"{path}.tmp-{uuid.uuid4().hex[:8]}"
        if _remote(path):
            import tensorflow as tf

            tf.io.gfile.makedirs(path)
        else:
            os.makedirs(target)
        lines = [
            json.dumps({"id": item.item_id, "url": item.url, "labels": list(item.labels), "thumbnail": list(span)})
            for item, span in zip(self.items, self._spans)
        ]
        files = {
            ITEMS: ("\n".join(lines) + "\n").encode(),
            INDEX: self.backend.to_bytes(),
            THUMBNAILS: self._thumbnails,
        }
        for name, data in files.items():
            _write_bytes(os.path.join(target, name), data)
        manifest = {**self.manifest, "files": {name: len(data) for name, data in files.items()}}
        _write_bytes(os.path.join(target, MANIFEST), json.dumps(manifest, indent=1).encode())
        if target != path:
            if os.path.exists(path):
                shutil.rmtree(path)
            os.replace(target, path)

    @classmethod
    def load(cls, path: str, expected_fingerprint: Optional[str] = None, model_path: str = "") -> "SimilarityIndex":
        """Reads an index folder.

        Args:
          path: the folder ``save`` wrote.
          expected_fingerprint: when given, the fingerprint of the model that will embed the
            queries; an index of another model is refused.
          model_path: that model's path, for the error message.

        Raises:
          IndexFormatError: not an index, another format version, or a truncated file.
          IndexMismatchError: the index belongs to another model.
        """
        path = path.rstrip("/")
        manifest_path = os.path.join(path, MANIFEST)
        if not _exists(manifest_path):
            raise IndexFormatError(f"{path}: not a similarity index (no {MANIFEST}); build one with imat index")
        try:
            manifest = json.loads(read_bytes(manifest_path))
        except ValueError as e:
            raise IndexFormatError(f"{manifest_path}: not valid JSON ({e})") from None
        if manifest.get("format") != FORMAT or manifest.get("format_version") != FORMAT_VERSION:
            raise IndexFormatError(
                f"{path}: format {manifest.get('format')!r} version "
                f"{manifest.get('format_version')!r}; this code reads {FORMAT!r} "
                f"version {FORMAT_VERSION}"
            )
        model = ModelInfo(**manifest["model"])
        if expected_fingerprint is not None:
            check_fingerprint(model, expected_fingerprint, model_path)
        data = {}
        for name, size in manifest["files"].items():
            file_path = os.path.join(path, name)
            data[name] = read_bytes(file_path) if _exists(file_path) else None
            if data[name] is None or len(data[name]) != size:
                found = "missing" if data[name] is None else f"{len(data[name])} bytes"
                raise IndexFormatError(
                    f"{file_path}: expected {size} bytes, found {found}: the index is damaged; rebuild it"
                )
        items, spans = [], []
        for line_no, line in enumerate(data[ITEMS].decode().splitlines(), start=1):
            row = json.loads(line)
            items.append(Item(row["id"], row["url"], tuple(row["labels"])))
            spans.append(tuple(row["thumbnail"]))
        if len(items) != manifest["count"]:
            raise IndexFormatError(f"{path}: {ITEMS} lists {len(items)} items, the manifest {manifest['count']}")
        backend = make_backend(manifest["backend"], manifest["dim"], **manifest["params"])
        backend.load_bytes(data[INDEX])
        return cls(backend, items, model, manifest, data[THUMBNAILS], spans)


def check_fingerprint(model: ModelInfo, fingerprint: str, model_path: str = "") -> None:
    """Raises IndexMismatchError unless ``fingerprint`` is ``model``'s (the index's model)."""
    if fingerprint != model.fingerprint:
        raise IndexMismatchError(
            f"the index was built from another model: index model {model.path or '?'} (version "
            f"{model.version or '?'}, fingerprint {model.fingerprint[:12]}), query model {model_path or '?'} "
            f"(fingerprint {fingerprint[:12]}); rebuild the index with this model (imat index --model ...) "
            f"or query with the index's model"
        )


def _check_unit(vectors: np.ndarray, what: str) -> None:
    if not np.isfinite(vectors).all():
        raise SimilarError(f"{what}: not all finite")
    norms = np.linalg.norm(vectors, axis=1)
    bad = np.flatnonzero(np.abs(norms - 1.0) > NORM_TOLERANCE)
    if len(bad):
        raise SimilarError(
            f"{what}: {len(bad)} of {len(vectors)} are not unit length (row {bad[0]} has norm "
            f"{norms[bad[0]]:.4f}); use the model's embed_images signature, which normalises them"
        )


def brute_force(vectors: np.ndarray, queries: np.ndarray, k: int) -> np.ndarray:
    """Rows of the exact k nearest vectors per query (inner product), best first."""
    backend = make_backend("exact", vectors.shape[1])
    backend.build(vectors)
    return backend.search(queries, k)[1]


def recall_at_k(found: np.ndarray, exact: np.ndarray) -> float:
    """Share of the exact top-k rows that the approximate search also returned, over all queries."""
    k = exact.shape[1]
    return float(np.mean([len(set(f[:k]) & set(e)) / k for f, e in zip(found, exact)]))
