"""What each job that scores every image costs per image, beside the model's forward pass, in one run.

  .venv/bin/python benchmarks/scoring_cost.py --work /tmp/imat-bench [--split test]

``--work`` is a finished ``benchmarks/pipeline_benchmark.py`` folder: its newest trained model and
the photos of one of its splits (default: test, which no step of the pipeline reads). On the same
photos, one after another in this process:

  forward      the exported model's ``serving_default`` (serialized tf.Examples in: the Transform
               graph, the network and the decisions), batches of 64: the floor of every job below
  evaluator    TFMA with the pipeline's EvalConfig (the first run's: no baseline model, no intervals),
               as the Evaluator runs it
  indexer      the similar-product index job (``imat index``: embedding, thumbnails, the index)
  submission   the batch scoring job (``imat submission``: Beam RunInference, the CSV)

Each job runs once on three photos first (loading and tracing out of the figures), then on all of
them. Printed per job: wall seconds, CPU seconds (this process and any child processes), CPU
milliseconds per image, and that against the forward pass's.
"""

import argparse
import glob
import os
import resource
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import imat_common.keras2  # noqa: F401  (chooses Keras 2 before TensorFlow loads)

from benchmarks.pipeline_benchmark import trained_model

JOBS = ("forward", "evaluator", "indexer", "submission")


def _cpu() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def _write(path: str, records) -> str:
    import tensorflow as tf

    with tf.io.TFRecordWriter(path) as writer:
        for record in records:
            writer.write(record)
    return path


def _forward(model_dir: str, data: str, work: str) -> None:
    import tensorflow as tf

    from imat_common import serving

    signature = tf.saved_model.load(model_dir).signatures[serving.SERVING_DEFAULT]
    records = [r.numpy() for r in tf.data.TFRecordDataset(data)]
    for start in range(0, len(records), 64):
        signature(**{serving.EXAMPLES: tf.constant(records[start : start + 64])})


def _evaluator(model_dir: str, data: str, work: str) -> None:
    import tensorflow as tf
    import tensorflow_model_analysis as tfma

    from benchmarks import evaluator_data
    from imat_common import serving

    model = tf.saved_model.load(model_dir)
    num_labels = int(model.signatures[serving.EVALUATE].structured_outputs[serving.PROBABILITIES].shape[-1])
    config = evaluator_data.pipeline_eval_config(num_labels)
    shared = tfma.default_eval_shared_model(model_dir, eval_config=config)
    tfma.run_model_analysis(shared, config, data_location=data, output_path=tempfile.mkdtemp(dir=work))


def _indexer(model_dir: str, data: str, work: str) -> None:
    from components.similar import embed_job

    embed_job.run(["--model", model_dir, "--examples", f"test={data}", "--output", tempfile.mkdtemp(dir=work)])


def _submission(model_dir: str, data: str, work: str) -> None:
    from cli import submission

    submission.main(
        ["--model", model_dir, "--examples", data, "--output", os.path.join(tempfile.mkdtemp(dir=work), "s.csv")]
    )


def main(argv=None):
    import tensorflow as tf

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", required=True, help="a pipeline_benchmark.py --work folder")
    parser.add_argument("--split", default="test")
    parser.add_argument("--jobs", default=",".join(JOBS), help="a comma-separated subset of " + ", ".join(JOBS))
    args = parser.parse_args(argv)
    jobs = args.jobs.split(",")
    for job in jobs:
        if job not in JOBS:
            parser.error(f"unknown job {job!r}; choose from {', '.join(JOBS)}")
    model = trained_model(args.work)
    files = sorted(glob.glob(os.path.join(args.work, "data", args.split, "*.tfrecord.gz")))
    if not model or not files:
        parser.error(f"no trained model or {args.split} data in {args.work}: run benchmarks/pipeline_benchmark.py")
    work = tempfile.mkdtemp(prefix="scoring-cost-")
    records = [r.numpy() for r in tf.data.TFRecordDataset(files, compression_type="GZIP")]
    data = _write(os.path.join(work, "all.tfrecord"), records)
    warm_up = _write(os.path.join(work, "warm-up.tfrecord"), records[:3])
    run = {"forward": _forward, "evaluator": _evaluator, "indexer": _indexer, "submission": _submission}
    for job in jobs:
        run[job](model, warm_up, work)
    results = {}
    for job in jobs:
        wall, cpu = time.monotonic(), _cpu()
        run[job](model, data, work)
        results[job] = (time.monotonic() - wall, _cpu() - cpu)
        print(f"{job:11s} {results[job][0]:8.1f} s wall {results[job][1]:8.1f} s CPU", flush=True)
    print(f"\n{len(records)} images of {args.split}, model {model}")
    floor = results.get("forward", (0, 0))[1]
    print(f"{'job':11s} {'wall s':>8s} {'CPU s':>8s} {'CPU ms/image':>13s} {'x forward':>10s}")
    for job, (wall, cpu) in results.items():
        ratio = f"{cpu / floor:9.1f}x" if floor else "        -"
        print(f"{job:11s} {wall:8.1f} {cpu:8.1f} {1000 * cpu / len(records):13.1f} {ratio}")


if __name__ == "__main__":
    main()
