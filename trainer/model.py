"""InceptionV3 with one sigmoid per label, trained in two phases (head, then top blocks)."""
import dataclasses
import os

import tf_keras as keras

from trainer.preprocessing import IMAGE_FEATURE

PROBABILITIES = "probabilities"
EMBEDDING_LAYER = "embedding"  # the pooled backbone features, used for similarity search


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    num_labels: int
    image_size: int = 299
    weights: str = "imagenet"  # "imagenet", "none" (from scratch) or a local .h5 weights file
    dropout: float = 0.3
    head_learning_rate: float = 1e-3
    fine_tune_learning_rate: float = 1e-4
    # Layers from this one on are unfrozen in phase two; "" trains the whole backbone.
    # "mixed9" leaves the last two Inception blocks trainable, as the competition's fastest teams did.
    fine_tune_from: str = "mixed9"
    mixed_precision: str = ""  # "", "mixed_bfloat16" (CPU AMX, TPU) or "mixed_float16" (GPU)
    # Moving-average momentum of the backbone's batch norms; Keras' 0.99 tracks too slowly
    # for the few hundred steps of a from-scratch demo (0.9 there). 0: leave Keras' value.
    batch_norm_momentum: float = 0.0

    @property
    def pretrained(self) -> bool:
        return self.weights not in ("none", "", None)


def _backbone_weights(weights: str):
    if weights in ("imagenet",):
        return "imagenet"
    if weights in ("none", "", None):
        return None
    if not os.path.exists(weights) and not weights.startswith("gs://"):
        raise FileNotFoundError(f"InceptionV3 weights file {weights!r} does not exist "
                                f"(use 'imagenet', 'none' or a local no-top .h5 file)")
    return weights


def build_model(config: ModelConfig) -> keras.Model:
    """Builds the network; the backbone starts frozen (phase one trains the head).

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


def _build(config: ModelConfig) -> keras.Model:
    inputs = keras.Input(shape=(config.image_size, config.image_size, 3), name=IMAGE_FEATURE)
    backbone = keras.applications.InceptionV3(include_top=False, weights=_backbone_weights(config.weights),
                                              input_shape=(config.image_size, config.image_size, 3), pooling="avg")
    backbone.trainable = False
    if config.batch_norm_momentum:
        for layer in backbone.layers:
            if isinstance(layer, keras.layers.BatchNormalization):
                layer.momentum = config.batch_norm_momentum
    # Pretrained: training=False keeps the batch-norm statistics frozen while fine-tuning (Keras'
    # guidance). From scratch there are no statistics to keep: batch norm must learn them, or
    # the network barely trains (measured on the demo data: micro-F1 0.41 against 0.86).
    pooled = backbone(inputs, training=False if config.pretrained else None)
    embedding = keras.layers.Activation("linear", name=EMBEDDING_LAYER, dtype="float32")(pooled)
    x = keras.layers.Dropout(config.dropout)(embedding)
    # float32 output keeps the sigmoid and the loss stable under mixed precision.
    outputs = keras.layers.Dense(config.num_labels, activation="sigmoid", dtype="float32", name=PROBABILITIES)(x)
    return keras.Model(inputs, outputs, name="imat_inceptionv3")


def backbone_of(model: keras.Model) -> keras.Model:
    return next(layer for layer in model.layers if isinstance(layer, keras.Model))


def compile_for_head(model: keras.Model, config: ModelConfig) -> None:
    backbone_of(model).trainable = False
    _compile(model, config.head_learning_rate)


def compile_for_fine_tuning(model: keras.Model, config: ModelConfig) -> None:
    """Unfreezes the backbone from ``fine_tune_from`` on, at the lower learning rate."""
    backbone = backbone_of(model)
    backbone.trainable = True
    names = [layer.name for layer in backbone.layers]
    if config.fine_tune_from and config.fine_tune_from not in names:
        raise ValueError(f"fine_tune_from={config.fine_tune_from!r} is not a layer of InceptionV3 "
                         f"(e.g. mixed0 .. mixed10)")
    start = names.index(config.fine_tune_from) if config.fine_tune_from else 0
    for layer in backbone.layers[:start]:
        layer.trainable = False
    _compile(model, config.fine_tune_learning_rate)


def _compile(model: keras.Model, learning_rate: float) -> None:
    # No F1 metric compiled in: TFMA would re-compute compiled metrics and a compiled
    # F1Score crashes it. Evaluation metrics live in the Evaluator's config.
    model.compile(optimizer=keras.optimizers.Adam(learning_rate), loss=keras.losses.BinaryCrossentropy(),
                  metrics=[keras.metrics.AUC(name="auc", multi_label=True)])
