"""Beam: embedded items -> the index folder, by the backend that the catalogue's size calls for.

Full-vector backends (HNSW, IVF-Flat, exact) keep every vector in one structure, so their
items are gathered on one worker (``WriteIndexFn``). The compressed backend is trained on a
sample and filled by many workers (``sharded_build.BuildCompressedIndex``). With the backend
"auto", each item is routed by the catalogue's count (``backends.choose_backend``): the items
reach one of the two branches, the other one writes nothing.
"""

import logging
from typing import Dict, List, Optional

import apache_beam as beam
import numpy as np
from apache_beam.metrics import Metrics

from components.similar.backends import AUTO_BACKEND, BACKENDS, choose_backend
from components.similar.index import Item, ModelInfo, SimilarityIndex
from components.similar.sharded_build import DEFAULT_SHARDS, NAMESPACE, BuildCompressedIndex

log = logging.getLogger(__name__)
GATHERED, SHARDED = "gathered", "sharded"


class WriteIndexFn(beam.DoFn):
    """All embedded items -> the index folder; of items with the same id, one is kept (counted)."""

    def __init__(self, output: str, backend: str, model: ModelInfo, label_names: dict, extra: dict):
        self._output, self._backend, self._model = output, backend, model
        self._label_names, self._extra = label_names, extra
        self._duplicates, self._indexed = (
            Metrics.counter(NAMESPACE, "duplicate_ids"),
            Metrics.counter(NAMESPACE, "items_indexed"),
        )

    def process(self, items: List[dict]):
        if not items:
            return  # the launcher reports the empty catalogue, with the counters
        unique: Dict[str, dict] = {}
        for item in sorted(items, key=lambda i: i["id"]):
            if item["id"] in unique:
                self._duplicates.inc()
                log.warning("%s: id repeated in the catalogue; one item is kept", item["id"])
            else:
                unique[item["id"]] = item
        rows = list(unique.values())
        index = SimilarityIndex.build(
            np.stack([r["vector"] for r in rows]),
            [Item(r["id"], r["url"], r["labels"]) for r in rows],
            self._model,
            backend=self._backend,
            thumbnails=[r["thumbnail"] for r in rows],
            label_names=self._label_names,
            extra=self._extra,
        )
        index.save(self._output)
        self._indexed.inc(index.count)
        yield index.count


class _RouteFn(beam.DoFn):
    def process(self, item, count):
        sharded = BACKENDS[choose_backend(AUTO_BACKEND, count)].trains_on_sample
        yield beam.pvalue.TaggedOutput(SHARDED if sharded else GATHERED, item)


class WriteIndex(beam.PTransform):
    """Embedded item dicts -> the index folder at ``output`` with ``backend`` ("auto": by the count).

    ``params`` are the compressed backend's (``m``, ``nprobe``, ...): used where it builds the index.
    """

    def __init__(
        self,
        output: str,
        backend: str,
        model: ModelInfo,
        label_names: dict,
        extra: dict,
        shards: int = DEFAULT_SHARDS,
        params: Optional[Dict[str, int]] = None,
    ):
        super().__init__()
        choose_backend(backend, 0)  # an unknown name fails here, before the pipeline runs
        self._output, self._backend, self._model = output, backend, model
        self._label_names, self._extra, self._shards = label_names, extra, shards
        self._params = dict(params or {})

    def expand(self, items):
        if self._backend == AUTO_BACKEND:
            count = items | "Count" >> beam.combiners.Count.Globally()
            routed = items | "Route" >> beam.ParDo(_RouteFn(), count=beam.pvalue.AsSingleton(count)).with_outputs(
                GATHERED, SHARDED
            )
            gathered, sharded = routed[GATHERED], routed[SHARDED]
        elif BACKENDS[self._backend].trains_on_sample:
            gathered, sharded = None, items
        else:
            gathered, sharded = items, None
        outputs = []
        if gathered is not None:
            outputs.append(
                gathered
                | "AllItems" >> beam.combiners.ToList()
                | "WriteGathered"
                >> beam.ParDo(WriteIndexFn(self._output, self._backend, self._model, self._label_names, self._extra))
            )
        if sharded is not None:
            outputs.append(
                sharded
                | "WriteSharded"
                >> BuildCompressedIndex(
                    self._output, self._model, self._label_names, self._extra, self._params, self._shards
                )
            )
        return outputs | "Written" >> beam.Flatten()
