"""The Evaluator's cost: TFMA with the pipeline's EvalConfig and its variants, side by side in one run.

  .venv/bin/python benchmarks/evaluator_benchmark.py --examples 200 --labels 228
  .venv/bin/python benchmarks/evaluator_benchmark.py --work /tmp/imat-bench --examples 20 \\
      --variants pipeline,default_auc,no_auc

By default the data is generated: ``--examples`` tiny JPEGs with about 7 labels each drawn from
a long-tailed distribution over ``--labels`` labels, and an untrained InceptionV3 (weights=None,
75 px) exported by the Trainer's exporter, with per-label thresholds that decide ~3 % of labels.
With ``--work``, a finished ``benchmarks/pipeline_benchmark.py`` folder gives the trained model and
the first ``--examples`` validation photos instead. Each variant runs TFMA as the Evaluator does
(every metrics spec and slice) after a warm-up run of every variant on a few examples; printed:
wall and CPU seconds (this process, all threads), the speedup against the first variant, and the
per-label AUCs' gap (mean and largest over the labels with both classes) to the exact AUC,
computed from the model's probabilities by ranks:

  sliced        the configuration before LabelSliceMetrics: per-label slices, each computing every
                label's metrics (TFMA's binarized ones)
  binarized     the configuration before PerLabelMetrics and PerLabelAUC: one slice, each label's
                precision, recall, F1 and AUC from TFMA's binarize (a combiner per label)
  pipeline      the shipped config: one slice, each label's metrics from one vectorised combiner
                (PerLabelMetrics, PerLabelAUC), per-label-slice numbers from LabelSliceMetrics
  default_auc   binarized, with TFMA's AUC at its default: 10,000 thresholds even in probability
                (the shipped config: 200)
  logit_auc     binarized, with TFMA's AUC at 48 thresholds even in logit space (-12 to 12), given
                as a list (TFMA then counts per example instead of through its histogram)
  no_auc        the shipped config without AUC
  baseline      the shipped config against a last blessed model (the same export, as TFX's Evaluator
                runs it with a baseline: two models score every example, diff metrics added)
  baseline_ci   baseline, with TFMA's confidence intervals (jackknife) on every metric and the diff
                (the gate's shipped setting, ``GateSettings.confidence_intervals``)
"""

import argparse
import glob
import json
import math
import os
import resource
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import imat_common.keras2  # noqa: F401  (chooses Keras 2 before TensorFlow loads)

from benchmarks import evaluator_data

VARIANTS = ("sliced", "binarized", "pipeline", "default_auc", "logit_auc", "no_auc", "baseline", "baseline_ci")
WITH_BASELINE = ("baseline", "baseline_ci")


def logit_thresholds(count: int) -> list:
    """``count`` probabilities evenly spaced in logit space from -12 to 12."""
    return [float(1 / (1 + math.exp(-(-12 + 24 * i / (count - 1))))) for i in range(count)]


def variant_config(name: str, num_labels: int):
    """The EvalConfig of variant ``name`` (see the module docstring)."""
    from pipeline.pipeline import PROBABILITIES

    if name not in VARIANTS:
        raise ValueError(f"unknown variant {name!r}; choose from {', '.join(VARIANTS)}")
    config = evaluator_data.pipeline_eval_config(
        num_labels,
        labels_slices=name == "sliced",
        with_baseline=name in WITH_BASELINE,
        confidence_intervals=name == "baseline_ci",
        binarized=name in ("binarized", "default_auc", "logit_auc"),
    )
    auc_specs = [s for s in config.metrics_specs if PROBABILITIES in s.output_names]
    if name == "default_auc":
        auc_specs[0].metrics[0].config = ""
    elif name == "logit_auc":
        auc_specs[0].metrics[0].config = json.dumps({"thresholds": logit_thresholds(48)})
    elif name == "no_auc":
        config.metrics_specs.remove(auc_specs[0])
    return config


def per_label_auc(result) -> dict:
    """{class sub key: auc} of the overall slice of a TFMA result."""
    from cli.report import _number

    overall = dict(result.slicing_metrics).get((), {})
    return {
        sub_key: _number(values["auc"])
        for sub_key, values in overall.get("probabilities", {}).items()
        if "auc" in values and sub_key
    }


def exact_aucs(model: str, data: str, lists, num_labels: int) -> dict:
    """{"classId:k": the exact ROC AUC of label k+1} from the model's probabilities, for the labels
    with both classes among the examples (by ranks: the chance a positive outscores a negative)."""
    import numpy as np
    import tensorflow as tf

    from cli import audit

    records = [r.numpy() for r in tf.data.TFRecordDataset(data)]
    scores = np.stack(audit.score(tf.saved_model.load(model), records, 64)[0])
    labels = audit.multi_hot(lists, num_labels).astype(bool)
    out = {}
    for k in range(num_labels):
        positives, negatives = scores[labels[:, k], k], scores[~labels[:, k], k]
        if len(positives) and len(negatives):
            greater = (positives[:, None] > negatives[None, :]).sum()
            ties = (positives[:, None] == negatives[None, :]).sum()
            out[f"classId:{k}"] = (greater + 0.5 * ties) / (len(positives) * len(negatives))
    return out


def _generated(work: str, examples: int, labels: int):
    lists = evaluator_data.long_tailed_label_lists(examples, labels)
    data = os.path.join(work, "examples.tfrecord")
    rows = evaluator_data.write_examples(data, lists)
    return evaluator_data.export_tiny_model(work, rows, labels), data, lists


def _from_pipeline_benchmark(parser, work: str, pipeline_work: str, examples: int):
    import tensorflow as tf

    from benchmarks.pipeline_benchmark import trained_model

    model = trained_model(pipeline_work)
    files = glob.glob(os.path.join(pipeline_work, "data", "validation", "*.tfrecord.gz"))
    if not model or not files:
        parser.error(f"no trained model or validation data in {pipeline_work}: run benchmarks/pipeline_benchmark.py")
    data = os.path.join(work, "examples.tfrecord")
    lists = []
    with tf.io.TFRecordWriter(data) as writer:
        for record in tf.data.TFRecordDataset(files, compression_type="GZIP").take(examples):
            writer.write(record.numpy())
            lists.append(list(tf.train.Example.FromString(record.numpy()).features.feature["labels"].int64_list.value))
    return model, data, lists


def main(argv=None):
    import numpy as np
    import tensorflow as tf
    import tensorflow_model_analysis as tfma

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--examples", type=int, default=200)
    parser.add_argument("--labels", type=int, default=228, help="generated data only")
    parser.add_argument("--work", help="a pipeline_benchmark.py --work folder (default: generated data)")
    parser.add_argument("--variants", default="sliced,pipeline")
    args = parser.parse_args(argv)
    names = args.variants.split(",")
    for name in names:
        if name not in VARIANTS:
            parser.error(f"unknown variant {name!r}; choose from {', '.join(VARIANTS)}")
    work = tempfile.mkdtemp(prefix="evaluator-bench-")
    if args.work:
        model, data, lists = _from_pipeline_benchmark(parser, work, args.work, args.examples)
    else:
        model, data, lists = _generated(work, args.examples, args.labels)
    num_labels = int(tf.saved_model.load(model).signatures["evaluate"].structured_outputs["probabilities"].shape[-1])
    warm_up = os.path.join(work, "warm-up.tfrecord")
    with tf.io.TFRecordWriter(warm_up) as writer:
        for record in tf.data.TFRecordDataset(data).take(3):
            writer.write(record.numpy())

    def run(name, data_location, output):
        config = variant_config(name, num_labels)
        if name in WITH_BASELINE:
            # What TFX's Evaluator does with a baseline model: a candidate and a baseline spec.
            config = tfma.utils.update_eval_config_with_defaults(config, has_baseline=True)
            shared = [
                tfma.default_eval_shared_model(model, eval_config=config, model_name=spec.name)
                for spec in config.model_specs
            ]
        else:
            shared = tfma.default_eval_shared_model(model, eval_config=config)
        tfma.run_model_analysis(shared, config, data_location=data_location, output_path=output)

    for name in names:  # one-off costs (loading the model, tracing) out of the timings
        run(name, warm_up, os.path.join(work, f"warm-up-{name}"))
    results = {}
    for name in names:
        output = os.path.join(work, name)
        wall, cpu = time.monotonic(), time.process_time()
        run(name, data, output)
        wall, cpu = time.monotonic() - wall, time.process_time() - cpu
        results[name] = (wall, cpu, per_label_auc(tfma.load_eval_result(output)))
        print(f"{name:12s} {wall:8.1f} s wall {cpu:8.1f} s CPU", flush=True)
    per_example = np.mean([len(ids) for ids in lists])
    print(f"\n{args.examples} examples, {num_labels} labels, {per_example:.1f} labels per example, model {model}")
    exact = exact_aucs(model, data, lists, num_labels)
    first_wall, first_cpu = results[names[0]][:2]
    print(
        f"{'variant':12s} {'wall s':>8s} {'CPU s':>8s} {'speedup (wall)':>15s} {'speedup (CPU)':>14s}"
        f" {'AUC gap to exact, mean / max':>29s}"
    )
    for name, (wall, cpu, aucs) in results.items():
        gaps = [abs(aucs[k] - exact[k]) for k in exact if k in aucs and not np.isnan(aucs[k])]
        gap = f"{np.mean(gaps):.4f} / {max(gaps):.4f} ({len(gaps)} labels)" if gaps else "-"
        print(f"{name:12s} {wall:8.1f} {cpu:8.1f} {first_wall / wall:14.1f}x {first_cpu / cpu:13.1f}x {gap:>29s}")
    print(f"peak RSS of the whole run: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB")


if __name__ == "__main__":
    main()
