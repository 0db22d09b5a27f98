"""The Evaluator's cost: the pipeline's EvalConfig against the same with TFMA's default AUC, side by side.

  .venv/bin/python benchmarks/evaluator_benchmark.py --work /tmp/imat-bench --examples 20

Needs a finished ``benchmarks/pipeline_benchmark.py`` run in ``--work`` (its trained model and
validation TFRecords). Runs TFMA as the Evaluator does (every metrics spec, the per-label
slices) on the first ``--examples`` validation images, once per variant, and prints seconds and
how far each variant's per-label AUCs are from those at TFMA's default 10,000 thresholds:

  pipeline      the shipped config: AUC at ``pipeline.pipeline.AUC_NUM_THRESHOLDS`` thresholds
  default_auc   AUC at TFMA's default number of thresholds
  no_auc        no AUC at all
"""
import argparse
import glob
import os
import sys
import tempfile
import time

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def variant_config(name: str, num_labels: int):
    from pipeline.config import PipelineConfig
    from pipeline.pipeline import PROBABILITIES, eval_config

    config = eval_config(PipelineConfig(pipeline_name="bench", pipeline_root="", data_root="", serving_dir="",
                                        label_map="", num_labels=num_labels))
    # No baseline here: a change threshold would make TFMA refuse to run.
    for spec in config.metrics_specs:
        for metric in spec.metrics:
            metric.threshold.ClearField("change_threshold")
    auc_specs = [s for s in config.metrics_specs if PROBABILITIES in s.output_names]
    if name == "default_auc":
        auc_specs[0].metrics[0].config = ""
    elif name == "no_auc":
        config.metrics_specs.remove(auc_specs[0])
    return config


def per_label_auc(result) -> dict:
    """{(slice, class_id): auc} from a TFMA result."""
    out = {}
    for slice_key, metrics in result.slicing_metrics:
        for sub_key, values in metrics.get("probabilities", {}).items():
            if "auc" in values and sub_key:
                out[(slice_key, sub_key)] = values["auc"]["doubleValue"]
    return out


def main(argv=None):
    import numpy as np
    import tensorflow as tf
    import tensorflow_model_analysis as tfma

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", default="/tmp/imat-bench", help="a pipeline_benchmark.py --work folder")
    parser.add_argument("--examples", type=int, default=20)
    parser.add_argument("--variants", default="pipeline,default_auc,no_auc")
    args = parser.parse_args(argv)
    models = sorted(glob.glob(os.path.join(args.work, "pipeline", "Trainer", "model", "*", "Format-Serving")),
                    key=os.path.getmtime)
    files = glob.glob(os.path.join(args.work, "data", "validation", "*.tfrecord.gz"))
    if not models or not files:
        parser.error(f"no trained model or validation data in {args.work}: run benchmarks/pipeline_benchmark.py")
    model = models[-1]
    num_labels = int(tf.saved_model.load(model).signatures["evaluate"].structured_outputs["probabilities"].shape[-1])
    work = tempfile.mkdtemp(prefix="evaluator-bench-")
    data = os.path.join(work, "examples.tfrecord")
    with tf.io.TFRecordWriter(data) as writer:
        for record in tf.data.TFRecordDataset(files, compression_type="GZIP").take(args.examples):
            writer.write(record.numpy())
    results = {}
    for name in args.variants.split(","):
        config = variant_config(name, num_labels)
        start = time.monotonic()
        output = os.path.join(work, name)
        tfma.run_model_analysis(tfma.default_eval_shared_model(model, eval_config=config), config,
                                data_location=data, output_path=output)
        results[name] = (time.monotonic() - start, per_label_auc(tfma.load_eval_result(output)))
        print(f"{name:12s} {results[name][0]:7.1f} s", flush=True)
    reference = results.get("default_auc", (0, {}))[1]
    print(f"\n{args.examples} examples, {num_labels} labels, model {model}")
    # |AUC - AUC at the default thresholds|: per label on the whole split, and over every
    # (slice, label); tiny per-label slices have near-tied scores that coarse buckets merge.
    print(f"{'variant':12s} {'seconds':>8s} {'max gap, whole split':>21s} {'mean gap, all slices':>21s}")
    for name, (seconds, aucs) in results.items():
        common = [k for k in aucs if k in reference and not np.isnan(aucs[k]) and not np.isnan(reference[k])]
        gaps = {k: abs(aucs[k] - reference[k]) for k in common}
        overall = max((g for (slice_key, _), g in gaps.items() if slice_key == ()), default=float("nan"))
        mean = float(np.mean(list(gaps.values()))) if gaps else float("nan")
        print(f"{name:12s} {seconds:8.1f} {overall:21.4f} {mean:21.4f}")


if __name__ == "__main__":
    main()
