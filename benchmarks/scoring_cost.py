"""What each job that scores every image costs per image, beside the model's forward pass, in one run.

  .venv/bin/python benchmarks/scoring_cost.py --work /tmp/imat-bench [--split train --reps 3]

``--work`` is a finished ``benchmarks/pipeline_benchmark.py`` folder: its newest trained model and
the photos of one of its splits (default: test, which no step of the pipeline reads). On the same
photos, one after another in this process:

  forward      the exported model's ``serving_default`` (serialized tf.Examples in: the Transform
               graph, the network and the decisions), batches of 64: the floor of every job below
  evaluator    TFMA with the pipeline's EvalConfig (the first run's: no baseline model, no intervals),
               as the Evaluator runs it
  indexer      the similar-product index job (``imat index``: embedding, thumbnails, the index)
  submission   the batch scoring job (``imat submission``: Beam RunInference, the CSV)
  binarized    (only when named in --jobs) the Evaluator with each label's metrics from TFMA's
               ``binarize``, a combiner per label: the EvalConfig before ``PerLabelMetrics``

Each job runs once on three photos first (loading and tracing out of the figures), then on a
quarter of the photos and on all of them, ``--reps`` rounds, each size's least CPU kept. A job's
cost is a fixed part (building the Beam pipeline, loading the model, starting workers: paid once
per run) and a part per image; the two sizes separate them: per image = (CPU at all - CPU at a
quarter) / (the photos between), fixed = the rest. Printed per job: wall and CPU seconds at both
sizes (this process and any child processes), the fixed CPU seconds, CPU milliseconds per image,
and that against the forward pass's: the figure that decides a million-image run, where the
fixed part is paid once.
"""

import argparse
import functools
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
EXTRA_JOBS = ("binarized",)  # for comparison, run only when named


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


@functools.lru_cache(maxsize=None)
def _num_labels(model_dir: str) -> int:
    """Read once, at the warm-up: loading the model here is none of the Evaluator's cost."""
    import tensorflow as tf

    from imat_common import serving

    model = tf.saved_model.load(model_dir)
    return int(model.signatures[serving.EVALUATE].structured_outputs[serving.PROBABILITIES].shape[-1])


def _evaluator(model_dir: str, data: str, work: str, binarized: bool = False) -> None:
    import tensorflow_model_analysis as tfma

    from benchmarks import evaluator_data

    config = evaluator_data.pipeline_eval_config(_num_labels(model_dir), binarized=binarized)
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
    parser.add_argument(
        "--jobs", default=",".join(JOBS), help="a comma-separated list from " + ", ".join(JOBS + EXTRA_JOBS)
    )
    parser.add_argument("--reps", type=int, default=1, help="rounds of every job at both sizes; the least CPU counts")
    args = parser.parse_args(argv)
    if args.reps < 1:
        parser.error(f"--reps must be at least 1, got {args.reps}")
    jobs = args.jobs.split(",")
    for job in jobs:
        if job not in JOBS + EXTRA_JOBS:
            parser.error(f"unknown job {job!r}; choose from {', '.join(JOBS + EXTRA_JOBS)}")
    model = trained_model(args.work)
    files = sorted(glob.glob(os.path.join(args.work, "data", args.split, "*.tfrecord.gz")))
    if not model or not files:
        parser.error(f"no trained model or {args.split} data in {args.work}: run benchmarks/pipeline_benchmark.py")
    work = tempfile.mkdtemp(prefix="scoring-cost-")
    records = [r.numpy() for r in tf.data.TFRecordDataset(files, compression_type="GZIP")]
    if len(records) < 8:
        parser.error(f"{args.split} has {len(records)} photos; the two sizes need at least 8")
    sizes = (len(records) // 4, len(records))
    data = {size: _write(os.path.join(work, f"{size}.tfrecord"), records[:size]) for size in sizes}
    warm_up = _write(os.path.join(work, "warm-up.tfrecord"), records[:3])
    run = {
        "forward": _forward,
        "evaluator": _evaluator,
        "indexer": _indexer,
        "submission": _submission,
        "binarized": functools.partial(_evaluator, binarized=True),
    }
    for job in jobs:
        run[job](model, warm_up, work)
    results = {}
    for rep in range(args.reps):
        for job in jobs:
            for size in sizes:
                wall, cpu = time.monotonic(), _cpu()
                run[job](model, data[size], work)
                seconds = (time.monotonic() - wall, _cpu() - cpu)
                print(
                    f"round {rep + 1} {job:11s} {size:6d} photos {seconds[0]:8.1f} s wall {seconds[1]:8.1f} s CPU",
                    flush=True,
                )
                # The least disturbed round: other work on the machine only ever adds CPU.
                results[job, size] = min(results.get((job, size), seconds), seconds, key=lambda r: r[1])
    print(f"\n{args.split}: {sizes[0]} and {sizes[1]} photos, model {model}")
    per_image = {job: marginal(results[job, sizes[0]][1], results[job, sizes[1]][1], *sizes) for job in jobs}
    floor = per_image.get("forward", (0.0, 0.0))[1]
    header = f"{'job':11s} {'wall s':>15s} {'CPU s':>15s} {'fixed CPU s':>12s} {'CPU ms/image':>13s} {'x forward':>10s}"
    print(header)
    for job in jobs:
        (small_wall, small_cpu), (wall, cpu) = results[job, sizes[0]], results[job, sizes[1]]
        fixed, slope = per_image[job]
        ratio = f"{slope / floor:9.1f}x" if floor > 0 else "        -"
        print(
            f"{job:11s} {small_wall:7.1f} {wall:7.1f} {small_cpu:7.1f} {cpu:7.1f} {fixed:12.1f} "
            f"{1000 * slope:13.1f} {ratio}"
        )
    print(
        f"(wall and CPU at {sizes[0]} / {sizes[1]} photos, the least CPU of {args.reps} round(s); "
        "fixed + per image x photos = CPU)"
    )


def marginal(small_cpu: float, large_cpu: float, small: int, large: int):
    """(fixed CPU seconds, CPU seconds per image) of a job run at ``small`` and ``large`` photos."""
    per_image = (large_cpu - small_cpu) / (large - small)
    return small_cpu - per_image * small, per_image


if __name__ == "__main__":
    main()
