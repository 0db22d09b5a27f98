"""Multi-worker training: the chief, per-worker input shards, and two real workers on loopback."""

import json
import os
import random
import re
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import pytest
import tensorflow as tf
import tf_keras as keras

from cli import demo_data
from tests.helpers import REPO, demo_splits, jpeg
from trainer import data, model as model_lib, multi_worker
from imat_common import features
from trainer.multi_worker import WorkerRole, role_from_cluster

SIZE = 75
NUM_LABELS = max(label.label_id for label in demo_data.label_table())


@pytest.mark.parametrize(
    "cluster, task_type, task_id, expected",
    [
        ({}, None, None, WorkerRole(0, 1, True)),
        ({"worker": ["a:1", "b:2"]}, "worker", 0, WorkerRole(0, 2, True)),  # no chief: worker 0 is
        ({"worker": ["a:1", "b:2"]}, "worker", 1, WorkerRole(1, 2, False)),
        ({"chief": ["c:0"], "worker": ["a:1", "b:2"]}, "chief", 0, WorkerRole(0, 3, True)),  # Vertex AI's layout
        ({"chief": ["c:0"], "worker": ["a:1", "b:2"]}, "worker", 0, WorkerRole(1, 3, False)),
        ({"chief": ["c:0"], "worker": ["a:1", "b:2"]}, "worker", 1, WorkerRole(2, 3, False)),
    ],
)
def test_the_chief_is_the_chief_task_or_else_worker_zero(cluster, task_type, task_id, expected):
    assert role_from_cluster(cluster, task_type, task_id) == expected


@pytest.mark.parametrize(
    "task_type, task_id, message",
    [("ps", 0, "task type 'ps'"), ("evaluator", 0, "task type 'evaluator'"), ("worker", 2, "task worker:2 is not")],
)
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
                image_id = tf.train.Feature(bytes_list=tf.train.BytesList(value=[str(next_id).encode()]))
                writer.write(
                    tf.train.Example(
                        features=tf.train.Features(feature={features.IMAGE_ID_KEY: image_id})
                    ).SerializeToString()
                )
                next_id += 1
        paths.append(path)
    return paths, next_id


def _ids(files, num_shards, shard_index, shuffle=False, batches=None):
    spec = {features.IMAGE_ID_KEY: tf.io.FixedLenFeature([], tf.string)}
    dataset = data.raw_dataset(
        files, spec, 1, shuffle=shuffle, shuffle_buffer=4, seed=1, num_shards=num_shards, shard_index=shard_index
    )
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
    assert multi_worker.fingerprint(
        multi_worker.read_weights(copy, tf.distribute.get_strategy())
    ) == multi_worker.fingerprint(weights)


def _free_ports(n):
    sockets = [socket.socket() for _ in range(n)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_two_workers_train_one_model_and_only_the_chief_exports(tmp_path):
    # Train (two files: one per worker), calibration and eval splits of demo garments.
    train_files, eval_files = demo_splits(
        str(tmp_path / "examples"),
        str(tmp_path / "transform"),
        {"train": 24, "calibration": 8, "eval": 8},
        SIZE,
        train_files=2,
    )
    ports = _free_ports(2)
    cluster = {"worker": [f"127.0.0.1:{port}" for port in ports]}
    custom_config = {
        "num_labels": NUM_LABELS,
        "image_size": SIZE,
        "weights": "none",
        "dropout": 0.0,
        "head_learning_rate": 1e-3,
        "fine_tune_learning_rate": 1e-3,
        "fine_tune_from": "mixed9",
        "head_steps_fraction": 0.0,
        "batch_size": 4,
        "eval_batch_size": 8,
        "distribution": "multi_worker",
        "min_positives": 1,
        "calibration_folds": 2,
        "label_map": "",
        "shuffle_buffer": 16,
        "seed": 3,
    }
    workers = []
    for index in range(2):
        folder = tmp_path / f"worker{index}"  # each its own output folders, to see who wrote what
        args = {
            "train_files": train_files,
            "eval_files": eval_files,
            "transform_output": str(tmp_path / "transform"),
            "serving_model_dir": str(folder / "serving"),
            "model_run_dir": str(folder / "logs"),
            "train_steps": 2,
            "eval_steps": 0,
            "custom_config": custom_config,
        }
        (tmp_path / f"args{index}.json").write_text(json.dumps(args))
        # A clean environment but for what the worker needs: one thread each on a busy machine.
        env = {
            "PATH": os.environ.get("PATH", ""),
            "HOME": os.environ.get("HOME", ""),
            "PYTHONPATH": REPO,
            "TF_CPP_MIN_LOG_LEVEL": "2",
            "TF_NUM_INTRAOP_THREADS": "1",
            "TF_NUM_INTEROP_THREADS": "1",
            "CUDA_VISIBLE_DEVICES": "",
            "TF_CONFIG": json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}}),
        }
        log = open(tmp_path / f"worker{index}.log", "w")
        command = [sys.executable, "-m", "tests.multi_worker_run", str(tmp_path / f"args{index}.json")]
        workers.append((subprocess.Popen(command, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT), log))
    # About 4 CPU minutes per worker; the wall time depends on what else shares the cores.
    deadline = time.monotonic() + 1500
    try:
        for process, _ in workers:
            try:
                process.wait(timeout=max(1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                break
    finally:
        hung = [process for process, _ in workers if process.poll() is None]
        for process in hung:
            process.send_signal(signal.SIGUSR1)  # each writes its threads' stacks into its log
        time.sleep(2 if hung else 0)
        for process, log in workers:
            if process.poll() is None:
                process.kill()
                process.wait()
            log.close()
    logs = [(tmp_path / f"worker{i}.log").read_text() for i in range(2)]
    for (process, _), text in zip(workers, logs):
        assert process.returncode == 0, text[-3000:]
    # Both trained as one: the same weights after training, from different halves of the data.
    fingerprints = [re.findall(r"worker (\d): trained weights sha256 ([0-9a-f]{64})", text) for text in logs]
    assert [f[0][0] for f in fingerprints] == ["0", "1"]
    assert fingerprints[0][0][1] == fingerprints[1][0][1]
    # One export, by the chief (worker 0), thresholds included; the other worker wrote nothing.
    chief, other = tmp_path / "worker0", tmp_path / "worker1"
    assert (chief / "serving" / "saved_model.pb").exists()
    report = json.loads((chief / "serving" / "assets.extra" / "thresholds.json").read_text())
    assert len(report["thresholds"]) == NUM_LABELS
    assert any((chief / "logs").rglob("events.out.tfevents.*"))
    assert not other.exists(), sorted(str(p) for p in other.rglob("*"))
    loaded = tf.saved_model.load(str(chief / "serving"))
    image = jpeg(demo_data.render(random.Random(1), 90)[0])
    outputs = loaded.signatures["predict_images"](images=tf.constant([image]))
    assert outputs["probabilities"].shape == (1, NUM_LABELS)
