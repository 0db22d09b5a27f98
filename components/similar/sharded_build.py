"""Beam transforms that build the compressed (IVF-PQ) index on many workers, no worker holding every vector.

  1. Sample: the ``train_size`` items first in ``compressed.sample_key`` order (``Top``, combined
     on the workers), the same sample ``SimilarityIndex.build`` takes on one machine.
  2. Train: one worker trains the coarse cells and the product quantizer on the sample; the
     trained, empty index (tens of MB) becomes a side input.
  3. Encode: items are grouped into ``shards`` by a hash of their id (so repeated ids meet
     and one is kept); each shard's worker streams its items into a copy of the trained
     index, ``compressed.ADD_CHUNK`` vectors at a time, and emits the codes.
  4. Merge: one worker merges the parts one after another (``merge_from``; rows numbered
     part after part) and writes the index folder. It holds the codes (m + 8 bytes an item:
     520 at the default m of 2,048-d embeddings, 328 at 1,280-d, 296 at 576-d), the items'
     ids, URLs and labels, and the thumbnails, never the vectors.

The functions under the DoFns (``train_template``, ``encode_part``, ``merge_parts``) are what
``benchmarks/index_scale_benchmark.py`` measures step by step.
"""

import time
from typing import Callable, Dict, Iterable, List, Optional, Tuple

import apache_beam as beam
import numpy as np
from apache_beam.metrics import Metrics

from components.similar.compressed import ADD_CHUNK, FaissIVFPQBackend, sample_key
from components.similar.index import Item, ModelInfo, SimilarityIndex

NAMESPACE = "imat_similar"
DEFAULT_SHARDS = 16


def shard_of(item_id: str, shards: int) -> int:
    """The shard of an item: from the same hash as the sample, so it is stable across workers and runs."""
    return sample_key(item_id)[0] % shards


def train_template(sample: List[Tuple[Tuple[int, str], np.ndarray]], count: int, params: dict) -> Optional[dict]:
    """The trained, empty index as ``{"dim", "params", "index"}``, or None for an empty sample.

    Args:
      sample: (sample_key, vector) pairs, in any order; a repeated id is used once.
      count: items in the catalogue (sets the number of cells).
      params: the backend's parameters (``FaissIVFPQBackend.defaults`` where missing); the
        template's are those the index was trained with (``m`` a divisor of the width).
    """
    unique = dict(sample)
    if not unique:
        return None
    vectors = np.stack([unique[key] for key in sorted(unique)])
    backend = FaissIVFPQBackend(vectors.shape[1], **params)
    backend.train(vectors, count)
    return {"dim": backend.dim, "params": backend.params, "index": backend.to_bytes()}


def _from_template(template: dict) -> FaissIVFPQBackend:
    backend = FaissIVFPQBackend(template["dim"], **template["params"])
    backend.load_bytes(template["index"])
    return backend


def encode_part(
    template: dict, items: Iterable[dict], on_duplicate: Callable[[str], None] = lambda item_id: None
) -> dict:
    """A shard's items encoded into a copy of the trained index, ADD_CHUNK vectors at a time.

    Returns:
      ``{"items": [(id, url, labels)], "thumbnails": [bytes], "index": bytes}``, rows in the
      order of ``items``; of items with the same id the first is kept, ``on_duplicate`` hears
      of the others.
    """
    backend = _from_template(template)
    kept, thumbnails, seen, chunk = [], [], set(), []
    for item in items:
        if item["id"] in seen:
            on_duplicate(item["id"])
            continue
        seen.add(item["id"])
        kept.append((item["id"], item["url"], tuple(item["labels"])))
        thumbnails.append(item["thumbnail"])
        chunk.append(item["vector"])
        if len(chunk) == ADD_CHUNK:
            backend.add(np.stack(chunk))
            chunk = []
    if chunk:
        backend.add(np.stack(chunk))
    return {"items": kept, "thumbnails": thumbnails, "index": backend.to_bytes()}


def merge_parts(template: dict, parts: Iterable[dict]) -> Tuple[FaissIVFPQBackend, List[Item], List[bytes]]:
    """The parts merged in the order given: (filled backend, items by row, thumbnails by row)."""
    merged = _from_template(template)
    items: List[Item] = []
    thumbnails: List[bytes] = []
    for part in parts:
        merged.merge([_from_template({**template, "index": part["index"]})])
        items += [Item(item_id, url, labels) for item_id, url, labels in part["items"]]
        thumbnails += part["thumbnails"]
    if merged.count != len(items):
        raise RuntimeError(f"merged index holds {merged.count} vectors for {len(items)} items")
    return merged, items, thumbnails


def _train(sample, count, params):
    template = train_template(sample, count, params)
    if template is not None:  # an empty catalogue has nothing to train on, and no shard to encode
        yield template


class _EncodeShardFn(beam.DoFn):
    def __init__(self):
        self._duplicates = Metrics.counter(NAMESPACE, "duplicate_ids")

    def process(self, shard_items, template):
        _, items = shard_items
        yield encode_part(template, items, on_duplicate=lambda item_id: self._duplicates.inc())


class _MergeAndWriteFn(beam.DoFn):
    def __init__(self, output: str, model: ModelInfo, label_names: Dict[int, tuple], extra: dict):
        self._output, self._model, self._label_names, self._extra = output, model, label_names, extra
        self._indexed = Metrics.counter(NAMESPACE, "items_indexed")

    def process(self, keyed_parts, template):
        start = time.monotonic()
        backend, items, thumbnails = merge_parts(template, keyed_parts[1])
        index = SimilarityIndex.assemble(
            backend,
            items,
            self._model,
            thumbnails,
            self._label_names,
            self._extra,
            build_seconds=time.monotonic() - start,
        )
        index.save(self._output)
        self._indexed.inc(index.count)
        yield index.count


class BuildCompressedIndex(beam.PTransform):
    """Embedded item dicts (id, url, labels, vector, thumbnail) -> the IVF-PQ index folder at ``output``.

    Outputs the number of items indexed (nothing for an empty input). ``extra`` goes into
    the manifest (the catalogue, the build id).
    """

    def __init__(
        self,
        output: str,
        model: ModelInfo,
        label_names: Dict[int, tuple],
        extra: dict,
        params: Optional[dict] = None,
        shards: int = DEFAULT_SHARDS,
    ):
        super().__init__()
        if shards < 1:
            raise ValueError(f"shards must be at least 1, got {shards}")
        self._output, self._model, self._label_names, self._extra = output, model, label_names, extra
        self._params = {**FaissIVFPQBackend.defaults, **(params or {})}
        self._shards = shards

    def expand(self, items):
        count = items | "Count" >> beam.combiners.Count.Globally()
        template = (
            items
            | "SampleKey" >> beam.Map(lambda item: (sample_key(item["id"]), item["vector"]))
            | "Sample" >> beam.combiners.Top.Of(self._params["train_size"], key=lambda pair: pair[0], reverse=True)
            | "Train" >> beam.FlatMap(_train, count=beam.pvalue.AsSingleton(count), params=self._params)
        )
        template_side = beam.pvalue.AsSingleton(template, default_value=None)
        shards = self._shards
        parts = (
            items
            | "KeyByShard" >> beam.Map(lambda item: (shard_of(item["id"], shards), item))
            | "GroupByShard" >> beam.GroupByKey()
            | "Encode" >> beam.ParDo(_EncodeShardFn(), template=template_side)
        )
        return (
            parts
            | "OneKey" >> beam.Map(lambda part: (None, part))
            | "AllParts" >> beam.GroupByKey()
            | "MergeAndWrite"
            >> beam.ParDo(
                _MergeAndWriteFn(self._output, self._model, self._label_names, self._extra), template=template_side
            )
        )
