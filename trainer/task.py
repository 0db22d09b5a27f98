"""The Trainer's ``run_fn``: training by plan (``trainer/plan.py``), the decision rule chosen on calibration, export.

``custom_config`` is ``trainer.settings.TrainerSettings`` by name (``PipelineConfig.trainer_custom_config``),
plus ``label_map``, the path of label_map.csv.

``eval_files`` hold the calibration split (tunes the thresholds and picks the rule) and the
eval split (only scored); ``trainer/calibration.py`` keeps them apart.
"""

import functools
import logging
import time

import numpy as np
import tensorflow as tf
import tensorflow_transform as tft
import tf_keras as keras

from trainer import (
    calibration,
    canvas,
    data,
    exporter,
    model as model_lib,
    multi_worker,
    plan,
    preprocessing,
    search_space,
)
from imat_common.features import load_label_map

log = logging.getLogger(__name__)


def distribution_strategy(name: str) -> tf.distribute.Strategy:
    """ "default" (one device), "mirrored" (all local GPUs), "multi_worker" or "tpu"."""
    if name in ("", "default"):
        return tf.distribute.get_strategy()
    if name == "mirrored":
        return tf.distribute.MirroredStrategy()
    if name == "multi_worker":
        return tf.distribute.MultiWorkerMirroredStrategy()
    if name == "tpu":
        resolver = tf.distribute.cluster_resolver.TPUClusterResolver()
        tf.config.experimental_connect_to_cluster(resolver)
        tf.tpu.experimental.initialize_tpu_system(resolver)
        return tf.distribute.TPUStrategy(resolver)
    raise ValueError(f"unknown distribution {name!r}: use default, mirrored, multi_worker or tpu")


def run_fn(fn_args):
    """TFX Trainer entry point.

    Under ``distribution`` "multi_worker" every worker trains; only the chief tunes the
    thresholds and writes (TensorBoard logs, the export, ``thresholds.json``): see
    ``trainer/multi_worker.py``. With the Tuner's best hyperparameters as input
    (``--tune``), the settings it searched take its values.
    """
    config = fn_args.custom_config
    tuned = dict((fn_args.hyperparameters or {}).get("values") or {})  # a KerasTuner HyperParameters config
    model_config = tuned_settings(model_lib.ModelConfig.from_custom_config(config), tuned)
    # First: MultiWorkerMirroredStrategy configures collective ops, which must happen before
    # TensorFlow runs anything.
    strategy = distribution_strategy(model_config.distribution)
    role = multi_worker.worker_role(strategy)
    if role.num_workers > 1:
        log.info("worker %d of %d%s", role.index, role.num_workers, " (chief)" if role.is_chief else "")
    tf_transform_output = tft.TFTransformOutput(fn_args.transform_output)
    model, training = train(
        model_config,
        fn_args.train_files,
        tf_transform_output,
        int(fn_args.train_steps),
        strategy,
        role,
        fn_args.model_run_dir if role.is_chief else None,
    )
    if role.num_workers > 1:
        weights = multi_worker.read_weights(model, strategy)  # a collective step: every worker
        log.info("worker %d: trained weights sha256 %s", role.index, multi_worker.fingerprint(weights))
        if not role.is_chief:
            multi_worker.barrier(strategy)  # returns once the chief has exported
            return
        model = multi_worker.plain_copy(weights, model_config)
    if tuned:
        training["hyperparameters"] = tuned
    _calibrate_and_export(model, model_config, fn_args, tf_transform_output, config, training)
    if role.num_workers > 1:
        multi_worker.barrier(strategy)


def tuned_settings(settings: model_lib.ModelConfig, values) -> model_lib.ModelConfig:
    """``settings`` with the Tuner's best values (by setting name) in place.

    Raises:
      SettingsError: a tuned value names no Trainer setting or does not fit its type.
    """
    if not values:
        return settings
    log.info("the Tuner's best hyperparameters replace the settings: %s", values)
    return search_space.apply(settings, values)


def train(
    model_config: model_lib.ModelConfig,
    train_files,
    tf_transform_output,
    train_steps: int,
    strategy: tf.distribute.Strategy,
    role: multi_worker.WorkerRole,
    model_run_dir=None,
):
    """Builds the network and trains it by plan (``trainer/plan.py``), segment by segment.

    Args:
      train_steps: the step count when ``model_config.train_epochs`` is 0.
      model_run_dir: TensorBoard's logs; None writes none.

    Returns:
      (the trained model, compiled; a record of the training: steps, batch size, train
      examples, epochs).
    """
    batch_size, seed = model_config.batch_size, model_config.seed
    keras.utils.set_random_seed(seed)
    make_train = functools.partial(
        data.input_fn,
        train_files,
        tf_transform_output,
        training=True,
        shuffle_buffer=model_config.shuffle_buffer,
        seed=seed,
        data_service_address=model_config.data_service_address or None,
        canvas_size=model_config.canvas_size,
    )
    # Several workers: each reads its own shard with its share of the (global) batch.
    train_data = (
        multi_worker.sharded_input(make_train, batch_size, strategy.num_replicas_in_sync)
        if role.num_workers > 1
        else make_train(batch_size=batch_size)
    )

    side = canvas.canvas_side(data.image_size_of(tf_transform_output), model_config.canvas_size)
    with strategy.scope():
        model = model_lib.build_model(model_config)
        # What fit trains: the same weights behind the layer that crops, mirrors and resizes
        # the decoded canvases on the accelerator. ``model`` alone is exported.
        on_canvas = canvas.training_model(model, model_config.image_size, side, model_config.augment, model_config.seed)
    train_examples = _train_examples(tf_transform_output, model_config)
    total = plan.training_steps(model_config, train_steps, train_examples)
    epochs = plan.epochs_trained(total, batch_size, train_examples)
    log.info(
        "training %d steps of %d: %s",
        total,
        batch_size,
        f"{epochs:.2f} epochs of {train_examples} train examples" if epochs else "the train split's size is unknown",
    )
    segments = plan.training_plan(total, model_config)
    callbacks = [keras.callbacks.TensorBoard(model_run_dir, update_freq="epoch")] if model_run_dir else []
    start, compiled_for = time.monotonic(), None
    for segment in segments:
        if segment.phase != compiled_for:
            with strategy.scope():
                model_lib.compile_for_phase(model, model_config, segment.phase, on_canvas)
            compiled_for = segment.phase
        canvas.set_image_size(on_canvas, segment.image_size)
        log.info(
            "%s: %d of %d weight tensors trainable (%.0f s so far)",
            segment.describe(total, model_config.first_fine_tuned_layer),
            len(model.trainable_weights),
            len(model.weights),
            time.monotonic() - start,
        )
        # No validation inside fit: it would trace the network twice more; the calibration and
        # eval splits are scored once, after training.
        on_canvas.fit(train_data, steps_per_epoch=segment.steps, epochs=1, callbacks=callbacks, verbose=2)
    if compiled_for is None:  # no training steps: compiled all the same, as the export expects
        with strategy.scope():
            model_lib.compile_for_phase(model, model_config, plan.HEAD)
    log.info("training took %.0f s", time.monotonic() - start)
    return model, {"steps": total, "batch_size": batch_size, "train_examples": train_examples, "epochs": epochs}


def _train_examples(tf_transform_output, settings: model_lib.ModelConfig):
    """The train split's size from the transform graph; None if the graph predates the count and
    the steps do not depend on it."""
    try:
        return preprocessing.read_example_count(tf_transform_output)
    except ValueError:
        if settings.train_epochs:
            raise
        return None


def _calibrate_and_export(
    model, model_config: model_lib.ModelConfig, fn_args, tf_transform_output, config: dict, training: dict
) -> None:
    log.info("choosing the decision rule on the calibration split")
    label_map = load_label_map(config["label_map"]) if config.get("label_map") else None
    report = calibration.calibrate(model, fn_args, tf_transform_output, model_config, label_map)
    report["training"] = training
    label_names = None
    if label_map:
        by_id = label_map.by_id()
        label_names = [by_id[i].name if i in by_id else str(i) for i in range(1, model_config.num_labels + 1)]
    start = time.monotonic()
    exporter.export(
        model, tf_transform_output, np.asarray(report["thresholds"], np.float32), fn_args.serving_model_dir, label_names
    )
    log.info("exported to %s in %.0f s", fn_args.serving_model_dir, time.monotonic() - start)
    calibration.write_report(report, fn_args.serving_model_dir)
