"""Multi-worker training: the chief, per-worker input shards, and two real workers on loopback."""
import json
import os
import random
import re
import socket
import subprocess
import sys
import time

import numpy as np
import pytest
import tensorflow as tf
import tf_keras as keras

from pipeline import demo_data
from tests.trainer_helpers import jpeg, transform, write_examples
from trainer import data, features, model as model_lib, multi_worker
from trainer.multi_worker import WorkerRole, role_from_cluster

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.mark.parametrize("cluster, task_type, task_id, expected", [
    ({}, None, None, WorkerRole(0, 1, True)),
    ({"worker": ["a:1", "b:2"]}, "worker", 0, WorkerRole(0, 2, True)),  # no chief: worker 0 is
    ({"worker": ["a:1", "b:2"]}, "worker", 1, WorkerRole(1, 2, False)),
    ({"chief": ["c:0"], "worker": ["a:1", "b:2"]}, "chief", 0, WorkerRole(0, 3, True)),  # Vertex AI's layout
    ({"chief": ["c:0"], "worker": ["a:1", "b:2"]}, "worker", 0, WorkerRole(1, 3, False)),
    ({"chief": ["c:0"], "worker": ["a:1", "b:2"]}, "worker", 1, WorkerRole(2, 3, False)),
])
def test_the_chief_is_the_chief_task_or_else_worker_zero(cluster, task_type, task_id, expected):
    assert role_from_cluster(cluster, task_type, task_id) == expected


@pytest.mark.parametrize("task_type, task_id, message", [
    ("ps", 0, "task type 'ps'"), ("evaluator", 0, "task type 'evaluator'"), ("worker", 2, "task worker:2 is not"),
])
def test_tasks_that_cannot_train_are_refused(task_type, task_id, message):
    with pytest.raises(ValueError, match=message):
        role_from_cluster({"chief": ["c:0"], "worker": ["a:1", "b:2"]}, task_type, task_id)


def test_one_process_is_its_own_chief():
    assert multi_worker.worker_role(tf.distribute.get_strategy()) == WorkerRole(0, 1, True)


def _id_files(folder, sizes):
    paths, next_id = [], 0
    for i, size in enumerate(sizes):
        path = os.path.join(folder, f"part-{i}.tfrecord.gz")
        with tf.io.TFRecordWriter(path, options="GZIP") as writer:
            for _ in range(size):
                writer.write(tf.train.Example(features=tf.train.Features(feature={features.IMAGE_ID_KEY: tf.train.Feature(
                    bytes_list=tf.train.BytesList(value=[str(next_id).encode()]))})).SerializeToString())
                next_id += 1
        paths.append(path)
    return paths, next_id


def _ids(files, num_shards, shard_index, shuffle=False, batches=None):
    spec = {features.IMAGE_ID_KEY: tf.io.FixedLenFeature([], tf.string)}
    dataset = data.raw_dataset(files, spec, 1, shuffle=shuffle, shuffle_buffer=4, seed=1, num_shards=num_shards,
                               shard_index=shard_index)
    return [int(b[features.IMAGE_ID_KEY].numpy()[0]) for b in (dataset.take(batches) if batches else dataset)]


@pytest.mark.parametrize("sizes", [[3, 4, 5], [7]], ids=["by file", "by record"])
def test_shards_split_the_examples_between_workers(tmp_path, sizes):
    files, total = _id_files(str(tmp_path), sizes)
    shards = [_ids(files, 2, i) for i in range(2)]
    assert sorted(shards[0] + shards[1]) == list(range(total))
    assert not set(shards[0]) & set(shards[1]) and all(shards)
    # Training input (shuffled, repeated) draws from its own shard only.
    for i, shard in enumerate(shards):
        assert set(_ids(files, 2, i, shuffle=True, batches=3 * total)) == set(shard)
    with pytest.raises(ValueError, match=r"shard_index 2 is not in \[0, 2\)"):
        _ids(files, 2, 2)


def test_batch_must_divide_among_replicas():
    with pytest.raises(ValueError, match="batch_size 5 does not divide among 2 replicas"):
        multi_worker.sharded_input(lambda **kwargs: None, 5, 2)


def test_plain_copy_has_the_trained_weights_after_unfreezing():
    # Unfreezing reorders model.get_weights() (trainable first): the copy must not depend on it.
    config = model_lib.ModelConfig(num_labels=6, image_size=75, weights="none", dropout=0.0, fine_tune_from="mixed9")
    keras.utils.set_random_seed(4)
    model = model_lib.build_model(config)
    model_lib.compile_for_fine_tuning(model, config)
    rng = np.random.default_rng(0)
    for layer in multi_worker._leaf_layers(model):  # moving statistics too, not only kernels
        layer.set_weights([w + rng.normal(0, 0.01, w.shape).astype(w.dtype) for w in layer.get_weights()])
    weights = multi_worker.read_weights(model, tf.distribute.get_strategy())
    copy = multi_worker.plain_copy(weights, config)
    images = rng.uniform(-1, 1, (3, 75, 75, 3)).astype(np.float32)
    np.testing.assert_allclose(copy(images, training=False).numpy(), model(images, training=False).numpy(), atol=1e-6)
    assert multi_worker.fingerprint(multi_worker.read_weights(copy, tf.distribute.get_strategy())) == \
        multi_worker.fingerprint(weights)
