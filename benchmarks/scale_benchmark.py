"""How each component's cost grows with the catalogue, measured at three sizes, projected to the competition.

  .venv/bin/python benchmarks/scale_benchmark.py --work /tmp/imat-scale-bench [--sizes 1000 3000 9000]

For each size N (train images; validation is N/4, cut by the pipeline into calibration and
eval halves) it generates a catalogue shaped like the competition's (``generated_catalogue.py``:
228 labels in 8 tasks, about 6.7 labels an image, small JPEGs) and runs the whole TFX DAG on the
local runner in a fresh process, caching off, the network at 75 px trained for ``--train_steps``
steps. A sampler thread in that process records resident memory and CPU time every 0.2 s; each
component's window comes from ML Metadata. Per component: wall seconds, CPU seconds, the peak
resident memory of the process while it ran and its growth over the level it started at (the
local runner runs components one after another in one process).

Then, per component, a least-squares fit ``cpu = a + b * n`` over the sizes, where n is what the
component's work is driven by (all records; the eval split; the calibration split; the
catalogue), the marginal CPU per image in the lower and the upper range of sizes (equal when
the work is linear, growing when it is worse), and the
projection to the competition's counts (1,014,544 train, 9,897 validation images). Components
that run the network on every image they see (the Trainer's scoring of calibration and eval, the
Evaluator, the similar-product index) get, per image, the difference of InceptionV3's CPU seconds
per image at 299 and at 75 px, measured in the same run. The download job's plan is measured directly on a generated
1,014,544-record competition JSON (time, peak memory, shards). Training itself is priced from
GPU throughput (``--gpu_images_per_s``, an input: no GPU here) and ``--epochs``.

Cloud projection: Dataflow CPU-hours = projected CPU seconds / 3600 (a Dataflow vCPU taken as one
of these cores), workers = CPU-hours / (vCPUs per worker x ``--target_hours``), cost at the list
prices given by the ``--price_*`` flags (defaults: us-central1 list prices as last known to us, not
checked against the pricing pages when this was measured: pass the current ones). Results:
WORK/scale_results.json and Markdown on stdout.
"""

import argparse
import json
import math
import os
import resource
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path[:0] = [ROOT, HERE]
import imat_common.keras2  # noqa: F401  (chooses Keras 2 before TensorFlow loads)
from imat_common.workdir import metadata_path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

COMPETITION = {"train": 1_014_544, "validation": 9_897, "test": 39_706}
CALIBRATION_SHARE = 0.5
# Component -> what its work is driven by (a count of images), as a function of the split sizes.
DRIVERS = {
    "ImportExampleGen": lambda t, v: t + v,
    "StatisticsGen": lambda t, v: t + v,
    "Transform": lambda t, v: t + v,
    # After training, the Trainer scores the calibration and the eval split (the report shows both).
    "Trainer": lambda t, v: v,
    "Evaluator": lambda t, v: v * (1 - CALIBRATION_SHARE),
    "SimilarityIndexer": lambda t, v: t + v,
}
# Everything else reads statistics, schemas or one model, whatever the data's size: a fixed cost.
FIXED = lambda t, v: 1.0
NETWORK_COMPONENTS = ("Trainer", "Evaluator", "SimilarityIndexer")


class Sampler:
    """(epoch seconds, resident bytes, CPU seconds of the process and its children) every period."""

    def __init__(self, period_s: float = 0.2):
        import psutil

        self._process, self._period = psutil.Process(), period_s
        self.samples = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self._stop.is_set():
            t = self._process.cpu_times()
            self.samples.append(
                (time.time(), self._process.memory_info().rss, t.user + t.system + t.children_user + t.children_system)
            )
            time.sleep(self._period)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()

    def window(self, began: float, seconds: float) -> dict:
        inside = [s for s in self.samples if began <= s[0] <= began + seconds + self._period]
        before = [s for s in self.samples if s[0] < began]
        start = before[-1] if before else (inside[0] if inside else (began, 0, 0.0))
        end = inside[-1] if inside else start
        peak = max([s[1] for s in inside] or [start[1]])
        return {
            "cpu_s": round(end[2] - start[2], 2),
            "peak_mb": round(peak / 2**20),
            "growth_mb": round((peak - start[1]) / 2**20),
        }


def run_size(work: str, train: int, train_steps: int) -> dict:
    """One size, in this process: generate, run the DAG, measure each component."""
    import generated_catalogue as catalogue
    from pipeline import local_runner
    from cli import runs
    from pipeline.config import demo_config
    from imat_common.features import write_label_map

    validation = max(40, train // 4)
    source = os.path.join(work, "source")
    os.makedirs(source, exist_ok=True)
    write_label_map(catalogue.label_table(), os.path.join(source, "label_map.csv"))
    started = time.time()
    catalogue.write_examples(os.path.join(work, "data"), {"train": train, "validation": validation})
    generated = time.time() - started
    config = demo_config(
        work,
        catalogue.NUM_LABELS,
        image_size=75,
        train_steps=train_steps,
        batch_size=32,
        micro_f1_lower_bound=0.0,
        enable_cache=False,
    )
    with Sampler() as sampler:
        config = local_runner.run(config)
    rows = []
    for e in runs.last_run(metadata_path(config.locations.pipeline_root)):
        rows.append(
            {
                "component": e.component,
                "state": e.state,
                "wall_s": round(e.seconds, 2),
                **sampler.window(e.started, e.seconds),
            }
        )
    return {"train": train, "validation": validation, "generate_s": round(generated, 1), "components": rows}


def network_cpu_ratio(batches: int = 6, batch: int = 16) -> dict:
    """CPU seconds per image of InceptionV3's forward pass at 75 and 299 px, and their ratio."""
    import numpy as np

    from trainer import model as model_lib

    out = {}
    for size in (75, 299):
        model = model_lib.build_model(model_lib.ModelConfig(num_labels=228, image_size=size, weights="none"))
        images = np.zeros((batch, size, size, 3), np.float32)
        model.predict(images, verbose=0)  # traced once, outside the timing
        start = time.process_time()
        for _ in range(batches):
            model.predict(images, verbose=0)
        out[size] = (time.process_time() - start) / (batches * batch)
    return {"cpu_s_per_image_75": out[75], "cpu_s_per_image_299": out[299], "ratio": out[299] / out[75]}


def download_cpu_per_image(count: int = 200) -> float:
    """CPU seconds per image of the download job's image work: check, decode, resize to 299, encode, gzip.

    The fetch itself is network time, not CPU; its CPU share (TLS, HTTP parsing) is not in here.
    """
    import io

    import numpy as np
    from PIL import Image

    from components.download.images import ImageSettings, process_image
    from components.download.tfrecord import DEFAULT_GZIP_LEVEL, GzipWriter

    rng = np.random.default_rng(0)
    photos = []
    for _ in range(8):  # 600x800 photo-like JPEGs, about the competition's source size
        base = Image.fromarray(rng.uniform(0, 255, (6, 8, 3)).astype(np.uint8)).resize((800, 600), Image.BILINEAR)
        pixels = np.asarray(base, np.int16) + rng.integers(-12, 12, (600, 800, 3))
        buffer = io.BytesIO()
        Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(buffer, format="JPEG", quality=90)
        photos.append(buffer.getvalue())
    settings = ImageSettings()
    start = time.process_time()
    writer = GzipWriter(io.BytesIO(), DEFAULT_GZIP_LEVEL)  # as the job writes its shards
    for i in range(count):
        writer.write(process_image(photos[i % len(photos)], settings).jpeg)
    writer.finish()
    return (time.process_time() - start) / count


def plan_at_competition_size(work: str, records: int) -> dict:
    """Times the download job's plan on a generated competition JSON of ``records`` images."""
    import generated_catalogue as catalogue
    from components.download import plan as plan_lib
    from imat_common.features import LabelMap

    source = os.path.join(work, "plan", "train.json")
    os.makedirs(os.path.dirname(source), exist_ok=True)
    if not os.path.exists(source):
        catalogue.write_competition_json(source, records)
    start_wall, start_cpu = time.monotonic(), time.process_time()
    plan = plan_lib.plan_split(
        "train",
        source,
        os.path.join(work, "plan", "out"),
        catalogue.IMAGES_PER_SHARD,
        LabelMap(tuple(catalogue.label_table())),
    )
    return {
        "records": records,
        "json_mb": round(os.path.getsize(source) / 1e6),
        "wall_s": round(time.monotonic() - start_wall, 1),
        "cpu_s": round(time.process_time() - start_cpu, 1),
        "shards": len(plan.shards),
        "accepted": plan.num_images,
        "rejected": len(plan.rejected),
        # ru_maxrss is in KB on Linux: this child's peak, JSON generation included.
        "peak_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
    }


def _child(args) -> None:
    if args.child_what == "network":
        result = {**network_cpu_ratio(), "download_cpu_s_per_image": download_cpu_per_image()}
    elif args.child_what == "plan":
        result = plan_at_competition_size(args.child_work, args.plan_records)
    else:
        result = {"size": run_size(args.child_work, args.child_size, args.train_steps)}
    with open(args.child_out, "w") as f:
        json.dump(result, f)


def _in_child(script_args, work: str, out: str, what: str = "", size: int = 0) -> dict:
    """Runs one measurement in a fresh interpreter, so memory and TensorFlow state start clean."""
    os.makedirs(work, exist_ok=True)
    command = [
        sys.executable,
        os.path.abspath(__file__),
        "--child_work",
        work,
        "--child_out",
        out,
        "--child_what",
        what,
        "--child_size",
        str(size),
    ] + script_args
    with open(os.path.join(work, "log.txt"), "w") as log:
        subprocess.run(command, check=True, stdout=log, stderr=subprocess.STDOUT)
    with open(out) as f:
        return json.load(f)


def fit(points):
    """Least-squares (a, b) of y = a + b n, and the marginal cost per unit in the lower and upper range.

    The two marginal costs tell the growth apart from the fixed cost: equal for linear work,
    the upper one a little higher for n log n, about (n3 + n2) / (n2 + n1) times higher for quadratic.
    """
    points = sorted(points)
    n = [p[0] for p in points]
    y = [p[1] for p in points]
    mean_n, mean_y = sum(n) / len(n), sum(y) / len(y)
    var = sum((x - mean_n) ** 2 for x in n)
    b = sum((x - mean_n) * (v - mean_y) for x, v in zip(n, y)) / var if var else 0.0
    (n1, y1), (n2, y2), (n3, y3) = points[0], points[-2], points[-1]
    low = (y2 - y1) / (n2 - n1) if n2 > n1 else 0.0
    high = (y3 - y2) / (n3 - n2) if n3 > n2 else 0.0
    return mean_y - b * mean_n, b, low, high


def growth_name(b: float, low: float, high: float, fixed: float) -> str:
    """Names the growth from the fit: per-unit work too small to see, linear, or faster."""
    if b <= 0 or b * 10_000 < 0.05 * max(fixed, 1.0):  # under 5 % of the fixed cost per 10,000 images
        return "fixed cost only"
    if low <= 0 or high <= 1.5 * low:  # a negative range is noise in the fixed cost
        return "linear"
    return "faster than linear"


def project(results: dict, args) -> dict:
    """Per component: fit, projected CPU seconds at the competition's size, Dataflow workers and cost."""
    sizes = results["sizes"]
    network = results["network"]
    # Each image these components see goes through the network once: at 299 px that costs this much more.
    extra_per_image = network["cpu_s_per_image_299"] - network["cpu_s_per_image_75"]
    comp_t, comp_v = COMPETITION["train"], COMPETITION["validation"]
    rows = []
    names = [r["component"] for r in sizes[0]["components"]]
    for name in names:
        driver = DRIVERS.get(name, FIXED)
        points = [
            (driver(s["train"], s["validation"]), next(r["cpu_s"] for r in s["components"] if r["component"] == name))
            for s in sizes
        ]
        a, b, low, high = fit(points)
        n_comp = driver(comp_t, comp_v)
        extra = extra_per_image if name in NETWORK_COMPONENTS else 0.0
        growth = growth_name(b, low, high, a)
        # The network's share (per image) grows with the pixels; the fixed cost (tracing, loading) does not.
        per_image = max(b, 0.0) if growth != "fixed cost only" else 0.0
        if growth == "faster than linear":  # the upper range's marginal cost held to the end: a lower bound
            per_image = max(high, per_image)
        cpu = max(a, 0.0) + n_comp * (per_image + extra)
        peaks = [next(r["peak_mb"] for r in s["components"] if r["component"] == name) for s in sizes]
        rows.append(
            {
                "component": name,
                "driver_at_sizes": [p[0] for p in points],
                "cpu_s": [p[1] for p in points],
                "peak_mb": peaks,
                "fixed_s": round(a, 1),
                "per_image_ms": round(1000 * b, 3),
                "marginal_ms": [round(1000 * low, 3), round(1000 * high, 3)],
                "growth": growth,
                "competition_driver": n_comp,
                "projected_cpu_h": round(max(cpu, 0.0) / 3600, 2),
            }
        )
    # The download job, from its per-image CPU cost (the fetch is network time on top).
    all_images = sum(COMPETITION.values())
    rows.insert(
        0,
        {
            "component": "download job (image work)",
            "competition_driver": all_images,
            "per_image_ms": round(1000 * results["network"]["download_cpu_s_per_image"], 2),
            "projected_cpu_h": round(all_images * results["network"]["download_cpu_s_per_image"] / 3600, 2),
        },
    )
    dataflow = [r for r in rows if r["component"] != "Trainer"]
    cpu_h = sum(r["projected_cpu_h"] for r in dataflow)
    workers = max(1, math.ceil(cpu_h / (args.worker_vcpus * args.target_hours)))
    memory_gb_h = cpu_h / args.worker_vcpus * args.worker_memory_gb
    dataflow_cost = cpu_h * args.price_vcpu_h + memory_gb_h * args.price_gb_h
    train_images = comp_t * args.epochs
    gpu_h = train_images / args.gpu_images_per_s / 3600
    calibration = next(r for r in rows if r["component"] == "Trainer")
    training_cost = (gpu_h + calibration["projected_cpu_h"] / args.trainer_vcpus) * args.price_trainer_h
    return {
        "components": rows,
        "dataflow": {
            "cpu_h": round(cpu_h, 1),
            "workers": workers,
            "worker_vcpus": args.worker_vcpus,
            "target_hours": args.target_hours,
            "cost_usd": round(dataflow_cost, 2),
        },
        "training": {
            "epochs": args.epochs,
            "gpu_images_per_s": args.gpu_images_per_s,
            "gpu_hours": round(gpu_h, 1),
            "cost_usd": round(training_cost, 2),
        },
        "total_cost_usd": round(dataflow_cost + training_cost, 2),
    }


def markdown(results: dict) -> str:
    sizes = results["sizes"]
    head = " | ".join(f"N={s['train']:,}: CPU s / peak MB" for s in sizes)
    lines = [
        f"| component | {head} | CPU ms per image, lower / upper range | growth | competition: CPU h |",
        "|---|" + "---|" * len(sizes) + "---|---|---|",
    ]
    for r in results["projection"]["components"]:
        if "cpu_s" not in r:
            lines.append(
                f"| {r['component']} | "
                + " | ".join("" for _ in sizes)
                + f" | {r['per_image_ms']} | measured per image | {r['projected_cpu_h']} |"
            )
            continue
        cells = " | ".join(f"{c:.1f} / {m:,}" for c, m in zip(r["cpu_s"], r["peak_mb"]))
        low, high = r["marginal_ms"]
        lines.append(f"| {r['component']} | {cells} | {low} / {high} | {r['growth']} | {r['projected_cpu_h']} |")
    p, net, plan = results["projection"], results["network"], results.get("plan")
    lines += [
        "",
        f"InceptionV3 forward, CPU s per image: {net['cpu_s_per_image_75']:.4f} at 75 px, "
        f"{net['cpu_s_per_image_299']:.4f} at 299 px (the difference added per image to "
        f"{', '.join(NETWORK_COMPONENTS)}).",
    ]
    if plan:
        lines.append(
            f"Download plan at {plan['records']:,} records ({plan['json_mb']} MB JSON): "
            f"{plan['wall_s']} s wall, {plan['cpu_s']} CPU s, peak {plan['peak_mb']:,} MB, "
            f"{plan['shards']} shards."
        )
    d, t = p["dataflow"], p["training"]
    lines += [
        f"Dataflow (every component but training): {d['cpu_h']} vCPU-hours: {d['workers']} workers of "
        f"{d['worker_vcpus']} vCPUs for {d['target_hours']} h, ${d['cost_usd']}.",
        f"Training: {t['epochs']} epochs at {t['gpu_images_per_s']} images/s: {t['gpu_hours']} GPU-hours, "
        f"${t['cost_usd']}. Total per run: ${p['total_cost_usd']}.",
    ]
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add = parser.add_argument
    add("--work", default="/tmp/imat-scale-bench")
    add("--sizes", type=int, nargs="+", default=[1000, 3000, 9000], help="train images per run")
    add("--train_steps", type=int, default=20, help="steps per run: training is priced from GPU rates instead")
    add("--plan_records", type=int, default=COMPETITION["train"], help="0 skips the download plan")
    add("--epochs", type=float, default=10.0)
    add(
        "--gpu_images_per_s",
        type=float,
        default=820.0,
        help="InceptionV3 training images/s on the chosen GPU; an input, not measured here (default: the "
        "estimate for one V100 at mixed precision in docs/scale.md, 'Feeding a GPU')",
    )
    add("--target_hours", type=float, default=1.0, help="wall time the Dataflow jobs should take")
    add("--worker_vcpus", type=int, default=8)
    add("--worker_memory_gb", type=float, default=30.0)
    add("--price_vcpu_h", type=float, default=0.056, help="Dataflow batch, USD per vCPU-hour")
    add("--price_gb_h", type=float, default=0.003557, help="Dataflow batch, USD per GB-hour")
    add("--trainer_vcpus", type=int, default=8)
    add(
        "--price_trainer_h",
        type=float,
        default=3.29,
        help="Vertex AI Training, USD per hour of the trainer machine with its GPU (n1-standard-8 + V100)",
    )
    for hidden in ("--child_work", "--child_out", "--child_what"):
        add(hidden, default="", help=argparse.SUPPRESS)
    add("--child_size", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child_out:
        return _child(args)
    passed = ["--train_steps", str(args.train_steps), "--plan_records", str(args.plan_records)]
    os.makedirs(args.work, exist_ok=True)
    results_path = os.path.join(args.work, "scale_results.json")
    results = json.load(open(results_path)) if os.path.exists(results_path) else {}
    done = {s["train"]: s for s in results.get("sizes", [])}
    for size in args.sizes:
        if size not in done:
            print(f"size {size}: generating and running the pipeline ...", flush=True)
            work = os.path.join(args.work, f"n{size}")
            done[size] = _in_child(passed, work, os.path.join(work, "result.json"), size=size)["size"]
            results["sizes"] = [done[s] for s in sorted(done)]
            json.dump(results, open(results_path, "w"), indent=1)
    results["sizes"] = [done[s] for s in sorted(args.sizes)]
    if "network" not in results:
        print("InceptionV3 CPU cost at 75 and 299 px ...", flush=True)
        work = os.path.join(args.work, "network")
        results["network"] = _in_child(passed, work, os.path.join(work, "result.json"), what="network")
    if args.plan_records and results.get("plan", {}).get("records") != args.plan_records:
        print(f"download plan at {args.plan_records:,} records ...", flush=True)
        results["plan"] = _in_child(passed, args.work, os.path.join(args.work, "plan_result.json"), what="plan")
    results["projection"] = project(results, args)
    results["settings"] = {k: v for k, v in vars(args).items() if not k.startswith("child")}
    json.dump(results, open(results_path, "w"), indent=1)
    print(markdown(results))


if __name__ == "__main__":
    main()
