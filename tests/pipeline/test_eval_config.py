"""The Evaluator's config: one slice with LabelSliceMetrics gives what per-label slices gave, and the same gate.

TFMA runs model-agnostic here (labels, probabilities and decisions read from the examples) with
the pipeline's metrics specs, against the configuration before (``sliced_eval_config``: the
same specs plus a slice per label value).
"""

import math
import os

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_model_analysis as tfma
from tensorflow_transform.tf_metadata import schema_utils

from benchmarks import evaluator_data
from components.download.tfrecord import frame_record, serialize_example
from cli import report
from imat_common.serving import LABEL_SLICE_EXAMPLE_COUNT as EXAMPLE_COUNT
from imat_common.serving import LABEL_SLICE_MICRO_F1 as MICRO_F1
from imat_common.serving import LABEL_SLICE_MICRO_PRECISION as MICRO_PRECISION
from imat_common.serving import LABEL_SLICE_MICRO_RECALL as MICRO_RECALL
from pipeline.pipeline import DECISIONS, MICRO_F1 as GATE, PROBABILITIES
from imat_common.features import LABELS_KEY
from trainer.preprocessing import LABELS_FEATURE

NUM_EXAMPLES, NUM_LABELS = 80, 24
# Two TFMA runs: over three minutes on a loaded 2-core machine.
slow = pytest.mark.slow


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """(TFRecord path, schema, multi-hot labels, decisions) of generated examples with model outputs."""
    rng = np.random.default_rng(7)
    lists = evaluator_data.long_tailed_label_lists(NUM_EXAMPLES, NUM_LABELS, labels_per_example=4, seed=7)
    lists[0] = []  # an image without labels
    labels = np.zeros((NUM_EXAMPLES, NUM_LABELS), np.float32)
    for row, ids in zip(labels, lists):
        row[np.asarray(ids, int) - 1] = 1.0
    probabilities = np.clip(0.35 * labels + rng.uniform(0, 0.65, labels.shape), 0, 1).astype(np.float32)
    decisions = (probabilities >= rng.uniform(0.3, 0.7, NUM_LABELS)).astype(np.float32)
    decisions[:, 3] = 0.0  # a label never decided: precision undefined
    path = str(tmp_path_factory.mktemp("eval") / "eval.tfrecord")
    with open(path, "wb") as f:
        for i, ids in enumerate(lists):
            f.write(
                frame_record(
                    serialize_example(
                        {
                            LABELS_KEY: ids,
                            LABELS_FEATURE: labels[i].tolist(),
                            PROBABILITIES: probabilities[i].tolist(),
                            DECISIONS: decisions[i].tolist(),
                        }
                    )
                )
            )
    schema = schema_utils.schema_from_feature_spec(
        {
            LABELS_KEY: tf.io.VarLenFeature(tf.int64),
            **{
                name: tf.io.FixedLenFeature([NUM_LABELS], tf.float32)
                for name in (LABELS_FEATURE, PROBABILITIES, DECISIONS)
            },
        }
    )
    return path, schema, labels, decisions


def _model_agnostic(config):
    """``config`` reading predictions from the examples instead of the model's ``evaluate`` signature."""
    del config.model_specs[:]
    config.model_specs.add(
        label_keys={DECISIONS: LABELS_FEATURE, PROBABILITIES: LABELS_FEATURE},
        prediction_keys={DECISIONS: DECISIONS, PROBABILITIES: PROBABILITIES},
    )
    return config


def _evaluate(config, data, output):
    path, schema, _, _ = data
    tfma.run_model_analysis(eval_config=config, data_location=path, output_path=output, schema=schema)
    return dict(tfma.load_eval_result(output).slicing_metrics), tfma.load_validation_result(output)


@pytest.fixture(scope="module")
def results(data, tmp_path_factory):
    out = tmp_path_factory.mktemp("tfma")
    new = _model_agnostic(evaluator_data.pipeline_eval_config(NUM_LABELS))
    old = _model_agnostic(evaluator_data.pipeline_eval_config(NUM_LABELS, labels_slices=True))
    return _evaluate(old, data, os.path.join(out, "old")), _evaluate(new, data, os.path.join(out, "new"))


def _same(a, b):
    a, b = float(a), float(b)  # TFMA writes NaN as the string "NaN"
    return (math.isnan(a) and math.isnan(b)) or a == pytest.approx(b, rel=1e-9, abs=1e-12)


def _values(slice_metrics):
    return {
        (output, sub_key, name): value["doubleValue"]
        for output, by_sub_key in slice_metrics.items()
        for sub_key, metrics in by_sub_key.items()
        for name, value in metrics.items()
    }


@slow
def test_the_gate_and_every_per_label_metric_of_the_whole_split_are_unchanged(results):
    (old_slices, old_validation), (new_slices, new_validation) = results
    old, new = _values(old_slices[()]), _values(new_slices[()])
    assert report.micro_f1(list(new_slices.items())) == report.micro_f1(list(old_slices.items()))
    assert any(name.endswith(GATE) for _, _, name in new)
    assert old.keys() <= new.keys()
    assert len([k for k in old if k[2] in ("precision", "recall", "f1_score", "auc")]) == 4 * NUM_LABELS
    different = {k: (old[k], new[k]) for k in old if not _same(old[k], new[k])}
    assert not different
    assert any(math.isnan(float(v)) for (_, sub, name), v in old.items() if name == "precision" and sub == "classId:3")
    assert old_validation.validation_ok == new_validation.validation_ok


@slow
def test_label_slice_metrics_are_the_per_label_slices_numbers(results, data):
    (old_slices, _), (new_slices, _) = results
    labels, decisions = (np.asarray(a, np.float64) for a in data[2:])
    assert list(new_slices) == [()]  # one slice: no labels-squared work
    overall = new_slices[()][DECISIONS]
    for index in range(NUM_LABELS):
        values = {name: float(v["doubleValue"]) for name, v in overall[f"classId:{index}"].items()}
        carriers = labels[:, index] > 0
        old_slice = old_slices.get(((LABELS_KEY, index + 1),), {}).get(DECISIONS, {}).get("", {})
        old_count = float(old_slice.get("example_count", {}).get("doubleValue", 0))
        assert values[EXAMPLE_COUNT] == carriers.sum() == old_count
        if not carriers.any():
            assert math.isnan(values[MICRO_F1])
            continue
        old_f1 = next(v["doubleValue"] for name, v in old_slice.items() if name.endswith(GATE))
        assert _same(values[MICRO_F1], old_f1)
        tp = (labels[carriers] * decisions[carriers]).sum()
        assert _same(values[MICRO_RECALL], tp / labels[carriers].sum())
        assert _same(values[MICRO_PRECISION], tp / decisions[carriers].sum() if decisions[carriers].sum() else math.nan)


@slow
def test_the_report_reads_support_from_label_slice_metrics(results):
    _, (new_slices, _) = results
    rows = report.label_rows(list(new_slices.items()), None, NUM_LABELS)
    counts = [float(new_slices[()][DECISIONS][f"classId:{k}"][EXAMPLE_COUNT]["doubleValue"]) for k in range(NUM_LABELS)]
    assert [r.support for r in rows] == counts and sum(counts) > NUM_EXAMPLES
    assert all(not math.isnan(r.auc) for r in rows if r.support)


def test_label_slice_metrics_refuse_labels_narrower_than_predictions():
    from pipeline.label_metrics import LabelSliceMetrics

    (computation,) = LabelSliceMetrics().computations(output_names=[DECISIONS])
    inputs = tfma.metrics.StandardMetricInputs(
        labels={DECISIONS: np.array([1.0, 0.0])}, predictions={DECISIONS: np.array([1.0, 0.0, 1.0])}
    )
    with pytest.raises(ValueError, match="dense multi-hot vector as wide as the predictions"):
        computation.combiner.add_input(computation.combiner.create_accumulator(), inputs)
