"""A backbone (InceptionV3 by default) with one sigmoid per label, trained in two phases (head, then top blocks)."""

import dataclasses
from typing import Optional

import tf_keras as keras

from imat_common.serving import EMBEDDING, PROBABILITIES
from trainer import backbones, losses, plan, weights
from trainer.preprocessing import IMAGE_FEATURE
from trainer.settings import AUTO, TrainerSettings

EMBEDDING_LAYER = EMBEDDING  # the pooled backbone features, used for similarity search


@dataclasses.dataclass(frozen=True)
class ModelConfig(TrainerSettings):
    """The Trainer's settings (``trainer/settings.py``, where each is defined with its default),
    with what the network needs to know of its backbone."""

    @property
    def first_fine_tuned_layer(self) -> str:
        """``fine_tune_from`` with "auto" resolved to the backbone's default."""
        if self.fine_tune_from == AUTO:
            return backbones.get_backbone(self.backbone).fine_tune_from
        return self.fine_tune_from


def build_model(config: ModelConfig) -> keras.Model:
    """Builds the network, uncompiled, with the backbone frozen; ``compile_for_phase`` sets what trains.

    With ``config.mixed_precision`` the layers are built under that policy, and the process's
    global policy is put back afterwards: the model keeps its own, nothing else changes.
    """
    if not config.mixed_precision:
        return _build(config)
    previous = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy(config.mixed_precision)
    try:
        return _build(config)
    finally:
        keras.mixed_precision.set_global_policy(previous)


_POOLING = {"avg": keras.layers.GlobalAveragePooling2D, "max": keras.layers.GlobalMaxPooling2D}


def _pool(features, pooling: str):
    if pooling in _POOLING:
        return _POOLING[pooling]()(features)
    if pooling == "avgmax":
        return keras.layers.Concatenate()([layer()(features) for layer in _POOLING.values()])
    raise ValueError(f"unknown pooling {pooling!r}: use avg, max or avgmax")


def _build(config: ModelConfig) -> keras.Model:
    spec = backbones.get_backbone(config.backbone)
    losses.get_loss(config.loss)  # an unknown loss fails here, before any training
    for name in ("image_size", "progressive_image_size"):
        size = getattr(config, name)
        if (size or name == "image_size") and size < spec.min_size:
            raise ValueError(f"{name} {size} is below {config.backbone}'s minimum of {spec.min_size}")
    side = None if config.progressive_image_size else config.image_size  # None: any size
    inputs = keras.Input(shape=(side, side, 3), name=IMAGE_FEATURE)
    backbone = spec.build(include_top=False, weights=weights.resolve(config.weights), input_shape=(side, side, 3))
    backbone.trainable = False
    if config.batch_norm_momentum:
        for layer in backbone.layers:
            if isinstance(layer, keras.layers.BatchNormalization):
                layer.momentum = config.batch_norm_momentum
    # Pretrained: training=False keeps the batch-norm statistics frozen while fine-tuning (Keras'
    # guidance). From scratch there are no statistics to keep: batch norm must learn them, or
    # the network learns much less (measured: docs/benchmarks.md, "Batch norm when training from scratch").
    features = backbone(spec.scale(inputs), training=False if config.pretrained else None)
    embedding = keras.layers.Activation("linear", name=EMBEDDING_LAYER, dtype="float32")(
        _pool(features, config.pooling)
    )
    x = keras.layers.Dropout(config.dropout)(embedding)
    if config.head_units:
        x = keras.layers.Dropout(config.dropout)(keras.layers.Dense(config.head_units, activation="relu")(x))
    # float32 output keeps the sigmoid and the loss stable under mixed precision.
    outputs = keras.layers.Dense(config.num_labels, activation="sigmoid", dtype="float32", name=PROBABILITIES)(x)
    return keras.Model(inputs, outputs, name=f"imat_{config.backbone}")


def backbone_of(model: keras.Model) -> keras.Model:
    return next(layer for layer in model.layers if isinstance(layer, keras.Model))


def compile_for_head(model: keras.Model, config: ModelConfig, fitted: Optional[keras.Model] = None) -> None:
    """Freezes the backbone: only the head trains, at the head's learning rate.

    ``fitted``: a model around ``model`` (``trainer.canvas.training_model``) that ``fit``
    trains; it is compiled too.
    """
    backbone_of(model).trainable = False
    _compile(model, config.head_learning_rate, config.loss, fitted)


def compile_for_fine_tuning(model: keras.Model, config: ModelConfig, fitted: Optional[keras.Model] = None) -> None:
    """Unfreezes the backbone from ``fine_tune_from`` on, at the lower learning rate (``fitted``: as above)."""
    backbone = backbone_of(model)
    backbone.trainable = True
    names = [layer.name for layer in backbone.layers]
    first = config.first_fine_tuned_layer
    if first and first not in names:
        raise ValueError(
            f"fine_tune_from={first!r} is not a layer of {config.backbone} "
            f"(its default: {backbones.get_backbone(config.backbone).fine_tune_from!r})"
        )
    start = names.index(first) if first else 0
    for layer in backbone.layers[:start]:
        layer.trainable = False
    _compile(model, config.fine_tune_learning_rate, config.loss, fitted)


def compile_for_phase(
    model: keras.Model, config: ModelConfig, phase: str, fitted: Optional[keras.Model] = None
) -> None:
    """Sets the trainable layers of ``phase`` (``trainer.plan.HEAD`` or ``FINE_TUNE``) and compiles.

    tf_keras applies a change of ``trainable`` only when the model is compiled again, and the
    new optimizer starts at the phase's learning rate. ``fitted``, a model around ``model`` that
    ``fit`` trains (``trainer.canvas.training_model``), is compiled too.

    Raises:
      ValueError: an unknown phase.
    """
    if phase == plan.HEAD:
        compile_for_head(model, config, fitted)
    elif phase == plan.FINE_TUNE:
        compile_for_fine_tuning(model, config, fitted)
    else:
        raise ValueError(f"unknown training phase {phase!r}: use {plan.HEAD!r} or {plan.FINE_TUNE!r}")


def _compile(model: keras.Model, learning_rate: float, loss: str, fitted: Optional[keras.Model] = None) -> None:
    # No F1 metric compiled in: TFMA would re-compute compiled metrics and a compiled
    # F1Score crashes it. Evaluation metrics live in the Evaluator's config.
    for target in (model,) if fitted is None else (model, fitted):
        target.compile(
            optimizer=keras.optimizers.Adam(learning_rate),
            loss=losses.get_loss(loss),
            metrics=[keras.metrics.AUC(name="auc", multi_label=True)],
        )
