"""Training on several machines with MultiWorkerMirroredStrategy: who is chief, input, hand-over.

Every worker runs the same ``run_fn`` and must run the same collective operations in the same
order: training, and reading the trained weights (reading a batch norm's moving statistics
averages them across workers). After that the chief alone tunes the thresholds and exports,
with a plain copy of the model whose variables are not distributed: a distributed model would
wait inside its first collective for workers that have already moved on. A final barrier keeps
every worker alive until the export exists, because TFX's executor checks, on every replica,
that ``serving_model_dir`` exists when ``run_fn`` returns.
"""

import dataclasses
import hashlib
import logging
from typing import Callable, Iterator, List, Mapping, Optional, Sequence

import numpy as np
import tensorflow as tf
import tf_keras as keras

from trainer import model as model_lib

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class WorkerRole:
    """This process's place in the training cluster."""

    index: int = 0  # 0 .. num_workers - 1, the chief first
    num_workers: int = 1
    is_chief: bool = True


def role_from_cluster(
    cluster: Mapping[str, Sequence[str]], task_type: Optional[str], task_id: Optional[int]
) -> WorkerRole:
    """The role of task ``task_type``/``task_id`` in a TF_CONFIG-style cluster.

    The chief is the ``chief`` task (Vertex AI Training's first worker pool) or, when the
    cluster has none, ``worker`` 0. An empty cluster is one process, the chief.

    Raises:
      ValueError: a task type that does not train under MultiWorkerMirroredStrategy, or an
        index outside its list.
    """
    chiefs, workers = list(cluster.get("chief", [])), list(cluster.get("worker", []))
    if not chiefs and not workers:
        return WorkerRole()
    if task_type not in ("chief", "worker"):
        raise ValueError(
            f"task type {task_type!r}: MultiWorkerMirroredStrategy trains on 'chief' and "
            f"'worker' tasks only (cluster: {sorted(cluster)})"
        )
    tasks = chiefs if task_type == "chief" else workers
    if task_id is None or not 0 <= int(task_id) < len(tasks):
        raise ValueError(f"task {task_type}:{task_id} is not in the cluster's {len(tasks)} {task_type} task(s)")
    index = int(task_id) + (len(chiefs) if task_type == "worker" else 0)
    return WorkerRole(index=index, num_workers=len(chiefs) + len(workers), is_chief=index == 0)


def worker_role(strategy: tf.distribute.Strategy) -> WorkerRole:
    """This process's role under ``strategy``: the chief of one unless it is multi-worker."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy) or resolver is None:
        return WorkerRole()
    return role_from_cluster(resolver.cluster_spec().as_dict(), resolver.task_type, resolver.task_id)


def sharded_input(
    make_dataset: Callable[..., tf.data.Dataset], global_batch_size: int, num_replicas: int
) -> keras.utils.experimental.DatasetCreator:
    """Training input for ``model.fit`` that splits the global batch and the data between workers.

    ``make_dataset(batch_size=, num_shards=, shard_index=)`` builds one worker's input; it is
    called on each worker with that worker's share of the batch and its own shard, so no worker
    reads (or decodes) what another trains on.

    Raises:
      ValueError: ``global_batch_size`` does not divide among ``num_replicas``.
    """
    if global_batch_size % num_replicas:
        raise ValueError(
            f"batch_size {global_batch_size} does not divide among {num_replicas} replicas: "
            f"use a multiple of {num_replicas}"
        )

    def dataset_fn(context: tf.distribute.InputContext) -> tf.data.Dataset:
        return make_dataset(
            batch_size=context.get_per_replica_batch_size(global_batch_size),
            num_shards=context.num_input_pipelines,
            shard_index=context.input_pipeline_id,
        )

    return keras.utils.experimental.DatasetCreator(dataset_fn)


def _leaf_layers(model: keras.Model) -> Iterator[keras.layers.Layer]:
    # Per layer, not model.get_weights(): a model lists trainable weights first, so its order
    # changes with what is frozen, while a layer's own order never does.
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            yield from _leaf_layers(layer)
        else:
            yield layer


def read_weights(model: keras.Model, strategy: tf.distribute.Strategy) -> List[List[np.ndarray]]:
    """Every layer's weights as numpy arrays; a collective step: all workers must call it."""
    with strategy.scope():
        return [layer.get_weights() for layer in _leaf_layers(model)]


def fingerprint(weights: List[List[np.ndarray]]) -> str:
    """SHA-256 of the weights' bytes: equal on every worker when training kept them in sync."""
    digest = hashlib.sha256()
    for layer_weights in weights:
        for array in layer_weights:
            digest.update(np.ascontiguousarray(array).tobytes())
    return digest.hexdigest()


def plain_copy(weights: List[List[np.ndarray]], config: model_lib.ModelConfig) -> keras.Model:
    """The model rebuilt outside any strategy with ``weights`` (from ``read_weights``)."""
    # Weights come from training, not from a file: nothing to load (or download) again.
    model = model_lib.build_model(dataclasses.replace(config, weights="none"))
    layers = list(_leaf_layers(model))
    if len(layers) != len(weights):
        raise ValueError(f"{len(weights)} layers of weights for a model of {len(layers)} layers")
    for layer, layer_weights in zip(layers, weights):
        layer.set_weights(layer_weights)
    return model


def barrier(strategy: tf.distribute.Strategy) -> int:
    """Waits until every worker gets here (a one-number all-reduce); returns the replicas that took part."""
    ones = strategy.run(lambda: tf.constant(1, tf.int32))
    return int(strategy.reduce(tf.distribute.ReduceOp.SUM, ones, axis=None))
