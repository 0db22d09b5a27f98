"""Download throughput: this project's Beam job vs img2dataset, same URLs, same run.

Generates N 600x600 JPEGs, serves them from nginx on loopback (Python's threading server
when nginx is not installed), then times, alternating, several repetitions of:
  - this job (``imat download``, run as ``python -m cli.main download``) writing gzip TFRecords, and
  - img2dataset writing TFRecords,
both resizing to 299 keeping the aspect ratio (the images are square, so both give
299x299), JPEG quality 90, shards of the same size, two processes for img2dataset and one
threaded process (two cores through Pillow and OpenCV releasing the GIL) plus, as a variant, two
worker processes for this job. Wall time includes each tool's start-up. Python's server
competes with both tools for the same cores: install nginx for figures to compare.

Then the breakdown of the default job's median run: its start-up (the interpreter, its imports
and its exit, timed alone as ``imat download --help``; the imports by what brought each module in,
from ``python -X importtime``),
its download phase (its own clock), the CPU per image of each step of the
image work measured alone (decode, resize, encode, gzip, the tf.Example; the way the job does
them, and through Pillow as it did before), the rest of its CPU per image, its CPU per image by
thread (the main thread, read from /proc while it runs, against the image threads; Linux only),
the floor that start-up and image work set on this machine's cores, and what 2.5x img2dataset's
throughput would leave for each image after this start-up.

Set up img2dataset in its own venv first (it must not share this project's pins; its own are
in benchmarks/img2dataset.lock), then run both tools with a clean environment:
  benchmarks/setup_img2dataset.sh
then:
  .venv/bin/python benchmarks/download_benchmark.py --images 2000 --reps 3
"""

import argparse
import glob
import json
import os
import random
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np
from PIL import Image

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, ROOT)

from cli import demo_data
from components.download.tfrecord import DEFAULT_GZIP_LEVEL, GzipWriter

IMPORT_GROUPS_SHOWN = 8
TARGET_RATIO = 2.5  # the throughput against img2dataset's TFRecord output asked of the job
PROJECT_PACKAGES = ("components", "imat_common", "cli", "trainer", "pipeline")
JOB_COMMAND = (sys.executable, "-m", "cli.main", "download")  # `imat download`, as users run it


def make_images(folder: str, n: int, size: int) -> None:
    os.makedirs(folder, exist_ok=True)
    if len(glob.glob(os.path.join(folder, "*.jpg"))) >= n:
        return
    rng, noise_rng = random.Random(0), np.random.default_rng(0)
    for i in range(n):
        im, _ = demo_data.render(rng, size)
        # Sensor-like noise so the JPEGs cost what photos cost to decode (~100 KB, not 15 KB).
        pixels = np.asarray(im, dtype=np.int16) + noise_rng.integers(-12, 13, (size, size, 3), dtype=np.int16)
        Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(os.path.join(folder, f"{i}.jpg"), quality=90)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def clean_env(**extra: str) -> dict:
    """A child's environment without this project's variables.

    Importing this project sets TF_USE_LEGACY_KERAS, which makes img2dataset's own TensorFlow fail
    every shard; neither tool needs anything from here but the basics.
    """
    basics = ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "USER")
    return {**{k: os.environ[k] for k in basics if k in os.environ}, **extra}


def stop_nginx(proc: subprocess.Popen) -> None:
    """nginx's own graceful quit: the master stops its workers, then itself (SIGKILL would orphan them)."""
    proc.send_signal(signal.SIGQUIT)
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGTERM)  # nginx's fast shutdown, still through the master
        proc.wait(timeout=15)


def start_nginx(root: str, prefix: str):
    nginx = shutil.which("nginx") or ("/usr/sbin/nginx" if os.path.exists("/usr/sbin/nginx") else None)
    if not nginx:
        return None, None
    os.makedirs(os.path.join(prefix, "logs"), exist_ok=True)
    port = free_port()
    conf = os.path.join(prefix, "nginx.conf")
    with open(conf, "w") as f:
        f.write(f"""worker_processes 1; daemon off; pid {prefix}/nginx.pid; error_log {prefix}/logs/error.log;
events {{ worker_connections 1024; }}
http {{ access_log off; sendfile on; keepalive_requests 100000; types {{ image/jpeg jpg; }}
  client_body_temp_path {prefix}/body; proxy_temp_path {prefix}/proxy; fastcgi_temp_path {prefix}/fcgi;
  uwsgi_temp_path {prefix}/uwsgi; scgi_temp_path {prefix}/scgi;
  server {{ listen 127.0.0.1:{port} backlog=1024; root {root}; }} }}
""")
    proc = subprocess.Popen([nginx, "-p", prefix, "-c", conf], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    for _ in range(50):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return proc, f"http://127.0.0.1:{port}/"
        except OSError:
            time.sleep(0.1)
    stop_nginx(proc)
    raise RuntimeError(f"nginx did not start: {proc.stderr.read().decode()}")


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


LAST_CPU = [0.0]  # CPU seconds of the last timed command and its children
LAST_MAIN_CPU = [None]  # of those, its main thread's (Linux only; None elsewhere or unsampled)
# (the process's CPU, its main thread's, wall seconds) when its output first showed the phase marker; None if unseen
LAST_AT_MARKER = [None]


def _thread_cpu(pid: int, tid: int):
    """CPU seconds of one thread so far, from /proc; None once it is gone or where there is no /proc."""
    return _stat_cpu(f"/proc/{pid}/task/{tid}/stat")


def _stat_cpu(path: str):
    """CPU seconds (user + system) in a /proc stat file; None once it is gone or where there is no /proc."""
    try:
        with open(path) as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run_timed(cmd, env=None, sample_main_thread: bool = False, phase_marker: bytes = b"") -> float:
    """Runs ``cmd`` to the end; its wall seconds. Its CPU goes to LAST_CPU, its main thread's to LAST_MAIN_CPU.

    The main thread is read from /proc every 20 ms while the process runs: at most that much of
    its CPU, at the very end, is missed. With ``phase_marker``, the process's and its main thread's
    CPU and the wall seconds when that text first appears in its output go to LAST_AT_MARKER
    (within 20 ms), so that its start-up can be told from its work in the same run.
    """
    # Output to a file, not a pipe: a pipe nobody reads while polling would fill and stall the tool.
    with tempfile.TemporaryFile() as log:
        start, cpu = time.perf_counter(), _children_cpu()
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)
        main = at_marker = None
        while sample_main_thread and proc.poll() is None:
            main = _thread_cpu(proc.pid, proc.pid) or main
            # pread: reading through the file's own offset would move where the child writes.
            if phase_marker and at_marker is None and phase_marker in os.pread(log.fileno(), 1 << 20, 0):
                at_marker = (_stat_cpu(f"/proc/{proc.pid}/stat"), main, time.perf_counter() - start)
            time.sleep(0.02)
        proc.wait()
        seconds = time.perf_counter() - start
        LAST_CPU[0] = _children_cpu() - cpu
        LAST_MAIN_CPU[0] = main
        LAST_AT_MARKER[0] = at_marker if at_marker and None not in at_marker else None
        if proc.returncode != 0:
            log.seek(0)
            raise RuntimeError(f"{cmd[0]} failed:\n{log.read().decode(errors='replace')[-3000:]}")
    return seconds


def startup_cost(reps: int = 3) -> tuple:
    """Median (wall, CPU) seconds of the job's process doing no work: the interpreter, its imports, its exit."""
    walls, cpus = [], []
    for _ in range(reps):
        walls.append(run_timed([*JOB_COMMAND, "--help"], env=clean_env(PYTHONPATH=ROOT)))
        cpus.append(LAST_CPU[0])
    return statistics.median(walls), statistics.median(cpus)


def _package(name: str) -> str:
    """A module's package for the breakdown: its top level; Google's namespace packages one or two deeper."""
    parts = name.split(".")
    depth = 3 if parts[:2] == ["google", "cloud"] else 2 if parts[0] == "google" else 1
    return ".".join(parts[:depth])


def import_groups(importtime_log: str) -> dict:
    """Seconds of import by what brought each module in, from the stderr of ``python -X importtime``.

    Each module's own time (not counting the modules it imports) goes to Beam's (``apache_beam``),
    to this project's, or else to the first package outside both in the chain of imports that
    reached it: IPython imported by tqdm, imported by google-cloud-bigquery, imported by Beam,
    counts as ``google.cloud.bigquery``. The groups partition the total.
    """
    stack = []  # (depth, name, own seconds, children): -X importtime prints each module after its imports
    for line in importtime_log.splitlines():
        if not line.startswith("import time:") or line.rstrip().endswith("| imported package"):
            continue
        own, _, name = line[len("import time:") :].split("|")
        depth = len(name) - len(name.lstrip()) - 1
        children = []
        while stack and stack[-1][0] > depth:
            children.append(stack.pop())
        stack.append((depth, name.strip(), int(own) / 1e6, children))
    groups = {}

    def walk(node, reason):
        _, name, own, children = node
        package = _package(name)
        if package == "apache_beam" or package in PROJECT_PACKAGES:
            group, reason = ("this project" if package in PROJECT_PACKAGES else package), None
        else:
            reason = group = reason or package
        groups[group] = groups.get(group, 0.0) + own
        for child in children:
            walk(child, reason)

    for root in stack:
        walk(root, None)
    return groups


def startup_imports() -> dict:
    """Import seconds by package of the job's process (``import_groups``), one run."""
    out = subprocess.run(
        [sys.executable, "-X", "importtime", *JOB_COMMAND[1:], "--help"],
        env=clean_env(PYTHONPATH=ROOT),
        capture_output=True,
        text=True,
        check=True,
    )
    return import_groups(out.stderr)


def image_work(folder: str, size: int, n: int = 200) -> dict:
    """CPU milliseconds per image of each step of the image work, measured alone on one thread.

    The steps of ``components.download.images.process_image`` at the benchmark's settings, the
    way the job does them (decode at a reduced DCT scale, resize to 299 with the filter
    ``resize_filter`` picks for the size, JPEG at quality 90: through OpenCV where that filter is
    OpenCV's) and, beside them, the way it did them before with Pillow (the same steps; Pillow still
    does every image that is not a complete RGB or greyscale JPEG, and every one ``resize_filter``
    gives to Pillow). Then gzip at the job's default ``--gzip_level`` and at zlib's default level 6
    (the job's before the flag), and the
    tf.Example the job builds around each stored JPEG (``batch.to_example``: its SHA-256 and the
    framing, in Python).
    """
    import io

    import cv2

    from components.download import batch as batch_lib
    from components.download import images as images_lib
    from components.download.records import ImageRecord

    cv2.setNumThreads(1)  # as the job sets it: one image per core from its own thread pool
    scale = images_lib.dct_scale(size, size, 299, 299)
    reduced = {1: cv2.IMREAD_COLOR, 2: cv2.IMREAD_REDUCED_COLOR_2, 4: cv2.IMREAD_REDUCED_COLOR_4}
    flags = reduced.get(scale, cv2.IMREAD_REDUCED_COLOR_8) | cv2.IMREAD_IGNORE_ORIENTATION
    job_filter = images_lib.resize_filter(size, size, 299, 299)
    interpolation = cv2.INTER_AREA if job_filter == "OpenCV area" else cv2.INTER_LINEAR
    datas = [open(os.path.join(folder, f"{i}.jpg"), "rb").read() for i in range(n)]
    steps = {lib: {"decode": 0.0, "resize": 0.0, "encode": 0.0} for lib in ("opencv", "pillow")}
    levels = {"gzip": DEFAULT_GZIP_LEVEL, "gzip 6": 6}
    gzip_seconds, example_seconds = {key: 0.0 for key in levels}, 0.0
    record = ImageRecord("123456", ("http://127.0.0.1:8080/123456.jpg",), (3, 17, 42, 105))
    gzips = {key: GzipWriter(io.BytesIO(), level) for key, level in levels.items()}  # as the job writes shards
    for data in datas:
        t0 = time.process_time()
        pixels = cv2.imdecode(np.frombuffer(data, np.uint8), flags)
        t1 = time.process_time()
        pixels = cv2.resize(pixels, (299, 299), interpolation=interpolation)
        t2 = time.process_time()
        jpeg = cv2.imencode(".jpg", pixels, [cv2.IMWRITE_JPEG_QUALITY, 90])[1].tobytes()
        t3 = time.process_time()
        batch_lib.to_example(record, jpeg, 299, 299, record.urls[0])
        t4 = time.process_time()
        for key, gzip in gzips.items():
            t5 = time.process_time()
            gzip.write(jpeg)
            gzip_seconds[key] += time.process_time() - t5
        example_seconds += t4 - t3
        for step, seconds in zip(steps["opencv"], (t1 - t0, t2 - t1, t3 - t2)):
            steps["opencv"][step] += seconds
        t0 = time.process_time()
        im = Image.open(io.BytesIO(data))
        im.draft("RGB", (299, 299))
        im.load()
        t1 = time.process_time()
        im = im.resize((299, 299), Image.Resampling.BILINEAR, reducing_gap=3.0)
        t2 = time.process_time()
        buf = io.BytesIO()
        im.save(buf, format="JPEG", quality=90)
        t3 = time.process_time()
        for step, seconds in zip(steps["pillow"], (t1 - t0, t2 - t1, t3 - t2)):
            steps["pillow"][step] += seconds
    ms = {lib: {step: 1000 * seconds / n for step, seconds in lib_steps.items()} for lib, lib_steps in steps.items()}
    ms.update({key: 1000 * seconds / n for key, seconds in gzip_seconds.items()})
    ms["example"] = 1000 * example_seconds / n
    ms["filter"] = job_filter
    if job_filter == "Pillow bilinear":
        ms["opencv"] = ms["pillow"]  # what the job does at this size
    return ms


def after_start_ms(samples: list, count: int) -> tuple:
    """Median CPU ms per image after start-up, and of it the main thread's, over (CPU, main CPU) samples."""
    return tuple(1000 * statistics.median(sample[i] for sample in samples) / count for i in (0, 1))


def stored_megabytes(out: str) -> float:
    """MB of the image files a tool wrote: TFRecord shards (gzip or not) or webdataset tars."""
    files = [os.path.join(d, f) for d, _, names in os.walk(out) for f in names]
    return sum(os.path.getsize(f) for f in files if f.endswith((".tfrecord.gz", ".tfrecord", ".tar"))) / 1e6


def ours(urls_json: str, out: str, shard: int, extra=()) -> tuple:
    cmd = [
        *JOB_COMMAND,
        f"--input=train={urls_json}",
        f"--output={out}",
        f"--images_per_shard={shard}",
        "--max_size=299",
        "--jpeg_quality=90",
        "--allow_private_networks",
        *extra,
    ]
    # The job logs "<output>: N of M shards to download" once its imports and plans are done.
    seconds = run_timed(
        cmd, env=clean_env(PYTHONPATH=ROOT), sample_main_thread=True, phase_marker=b"shards to download"
    )
    cpu = LAST_CPU[0]
    with open(os.path.join(out, "summary.json")) as f:
        summary = json.load(f)
    # The job's own rate covers the download alone, without Python and Beam start-up.
    return seconds, summary["splits"]["train"]["ok"], summary["images_per_second"], cpu


def img2dataset(binary: str, urls_txt: str, out: str, shard: int, output_format: str = "tfrecord") -> tuple:
    cmd = [
        binary,
        "--url_list",
        urls_txt,
        "--input_format",
        "txt",
        "--output_folder",
        out,
        "--output_format",
        output_format,
        "--processes_count",
        "2",
        "--thread_count",
        "64",
        "--image_size",
        "299",
        "--resize_mode",
        "keep_ratio",
        "--resize_only_if_bigger",
        "True",
        "--encode_quality",
        "90",
        "--number_sample_per_shard",
        str(shard),
        "--enable_wandb",
        "False",
    ]
    seconds = run_timed(cmd, env=clean_env(NO_ALBUMENTATIONS_UPDATE="1", TF_CPP_MIN_LOG_LEVEL="3"))
    cpu = LAST_CPU[0]
    ok = 0
    for stats in glob.glob(os.path.join(out, "*_stats.json")):
        with open(stats) as f:
            ok += json.load(f)["successes"]
    return seconds, ok, None, cpu


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=2000)
    parser.add_argument("--size", type=int, default=600)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--shard", type=int, default=250, help="images per shard, for both tools")
    parser.add_argument("--workdir", default=os.path.join(HERE, "work"))
    parser.add_argument("--img2dataset", default=os.path.join(HERE, "work", "i2d-venv", "bin", "img2dataset"))
    args = parser.parse_args()

    images = os.path.join(args.workdir, f"images-{args.size}")
    make_images(images, args.images, args.size)
    proc, base = start_nginx(images, os.path.join(args.workdir, "nginx"))
    server_name = "nginx"
    if proc is None:
        server_name = "python ThreadingHTTPServer"
        serving = demo_data.serve_folder(images)
        base = serving.__enter__()
    urls = [f"{base}{i}.jpg" for i in range(args.images)]
    urls_txt, urls_json = os.path.join(args.workdir, "urls.txt"), os.path.join(args.workdir, "urls.json")
    with open(urls_txt, "w") as f:
        f.write("\n".join(urls) + "\n")
    with open(urls_json, "w") as f:
        json.dump({"images": [{"imageId": str(i), "url": u} for i, u in enumerate(urls)]}, f)

    contenders = {
        "this job (1 process, threads)": lambda out: ours(urls_json, out, args.shard),
        "this job (2 worker processes)": lambda out: ours(
            urls_json,
            out,
            args.shard,
            ["--runner=FnApiRunner", "--direct_num_workers=2", "--direct_running_mode=multi_processing"],
        ),
        # The shards at zlib's default level, as the job wrote them before --gzip_level (default 0).
        "this job, --gzip_level 6": lambda out: ours(urls_json, out, args.shard, ["--gzip_level=6"]),
    }
    if os.path.exists(args.img2dataset):
        contenders["img2dataset (2 processes)"] = lambda out: img2dataset(args.img2dataset, urls_txt, out, args.shard)
        # Its fastest output (no TensorFlow import), the kind of figure usually quoted for it.
        contenders["img2dataset, webdataset output"] = lambda out: img2dataset(
            args.img2dataset, urls_txt, out, args.shard, "webdataset"
        )
    else:
        print(f"img2dataset not found at {args.img2dataset}: run benchmarks/setup_img2dataset.sh", file=sys.stderr)
    results = {name: [] for name in contenders}
    cpus = {name: [] for name in contenders}
    mains = {name: [] for name in contenders}  # main-thread CPU, where sampled
    after_start = {name: [] for name in contenders}  # (CPU, main thread's) once started, where sampled
    started = {name: [] for name in contenders}  # wall seconds to the job's shard count, where seen
    phases = {name: [] for name in contenders}
    stored = {name: [] for name in contenders}
    try:
        for rep in range(args.reps):
            order = list(contenders) if rep % 2 == 0 else list(reversed(contenders))
            for name in order:
                out = os.path.join(args.workdir, "out")
                shutil.rmtree(out, ignore_errors=True)
                seconds, ok, own_rate, cpu = contenders[name](out)
                if ok != args.images:
                    raise RuntimeError(f"{name} stored {ok} of {args.images} images")
                results[name].append(seconds)
                cpus[name].append(cpu)
                stored[name].append(stored_megabytes(out))
                if LAST_MAIN_CPU[0] is not None:
                    mains[name].append(LAST_MAIN_CPU[0])
                    if LAST_AT_MARKER[0] is not None:
                        at_cpu, at_main, at_wall = LAST_AT_MARKER[0]
                        after_start[name].append((cpu - at_cpu, LAST_MAIN_CPU[0] - at_main))
                        started[name].append(at_wall)
                if own_rate:
                    phases[name].append(ok / own_rate)
                own = f" (download phase alone: {own_rate} images/s)" if own_rate else ""
                print(
                    f"rep {rep + 1}: {name}: {seconds:.2f} s, {cpu:.1f} CPU s, {ok / seconds:.1f} images/s end to end"
                    f"{own}, {stored[name][-1]:.1f} MB stored",
                    flush=True,
                )
    finally:
        if proc is not None:
            stop_nginx(proc)
        else:
            serving.__exit__(None, None, None)

    print(
        f"\n{args.images} JPEGs of {args.size}x{args.size} from {server_name} on loopback, resized to 299, "
        f"quality 90, {args.shard} per shard, {os.cpu_count()} CPUs; median of {args.reps}:"
    )
    medians = {name: statistics.median(times) for name, times in results.items()}
    for name, seconds in medians.items():
        print(
            f"  {name:34s} {seconds:6.2f} s  {args.images / seconds:7.1f} images/s  "
            f"{statistics.median(cpus[name]):6.1f} CPU s (the process and its children)  "
            f"{statistics.median(stored[name]):6.1f} MB stored"
        )
    for reference in (r for r in medians if r.startswith("img2dataset")):
        for name, seconds in medians.items():
            if name.startswith("this job"):
                print(f"  {name} vs {reference}: {medians[reference] / seconds:.2f}x the throughput")
    for name, samples in after_start.items():
        # With worker processes the job logs its shards before the workers start (and import Beam):
        # their start-up would count as work, and its main thread is only the launcher's.
        if name.startswith("this job") and "processes)" not in name:
            if len(samples) < args.reps:
                print(f"  {name}: {args.reps - len(samples)} of {args.reps} runs never showed the job's shard count")
            if samples:
                total, main = after_start_ms(samples, args.images)
                print(
                    f"  {name}: CPU per image after start-up {total:.2f} ms, of which its main thread {main:.2f} ms"
                    f" (median of the {len(samples)} runs read at the job's shard count)"
                )
    breakdown(images, args.size, args.images, medians, cpus, phases, mains, after_start, started)


def breakdown(
    images: str,
    size: int,
    count: int,
    medians: dict,
    cpus: dict,
    phases: dict,
    mains: dict,
    after_start: dict,
    started: dict,
) -> None:
    """Where the default job's time and CPU go, and the floor its image work sets on 2+ cores.

    The CPU after start-up is each run's own (from the moment its output says how many shards it
    will download) where /proc allowed sampling it, else its CPU less the start-up timed alone.
    """
    name = "this job (1 process, threads)"
    start_wall, start_cpu = startup_cost()
    steps = image_work(images, size)
    cpu, phase = statistics.median(cpus[name]), statistics.median(phases[name])
    work = sum(steps["opencv"].values()) + steps["gzip"]
    if after_start.get(name):
        per_image, main = after_start_ms(after_start[name], count)
    else:
        print("  (no run showed the job's shard count: CPU after start-up is the run's less the start-up timed alone)")
        per_image = 1000 * (cpu - start_cpu) / count
        main = 1000 * (statistics.median(mains[name]) - start_cpu) / count if mains.get(name) else None
    rest = per_image - work - steps["example"]
    cores = os.cpu_count() or 1
    print(f"\n{name}, median run: {medians[name]:.2f} s wall, {cpu:.1f} CPU s for {count} images")
    print(
        f"  start-up and exit (imat download --help: interpreter, imports, exit): {start_wall:.2f} s wall, "
        f"{start_cpu:.2f} CPU s"
    )
    imports = startup_imports()
    top = sorted(imports.items(), key=lambda kv: -kv[1])[:IMPORT_GROUPS_SHOWN]
    other_imports = sum(imports.values()) - sum(seconds for _, seconds in top)
    print(
        f"    of it, imports {sum(imports.values()):.2f} s by what brought them in (one run of python -X importtime, "
        "which adds its own overhead): "
        + ", ".join(f"{group} {seconds:.2f}" for group, seconds in top)
        + f", the rest {other_imports:.2f}"
    )
    if started.get(name):
        # In the run itself: its imports and its plans, up to the line that gives its shard count.
        in_run = statistics.median(started[name])
        print(f"    in the runs, to the job's shard count line (imports and plans): {in_run:.2f} s (median)")
        after_phase = f"the rest (the summary, the interpreter's exit) {medians[name] - phase - in_run:.2f} s"
    else:
        after_phase = f"the rest (plan, pipeline exit, summary) {medians[name] - phase - start_wall:.2f} s"
    print(f"  download phase (the job's own clock): {phase:.2f} s; {after_phase}")
    print(
        f"  CPU per image after start-up: {per_image:.2f} ms; "
        + ", ".join(f"{k} {v:.2f}" for k, v in steps["opencv"].items())
        + f" (the job's way: {steps['filter']}), gzip {steps['gzip']:.2f} (level {DEFAULT_GZIP_LEVEL}; at level 6"
        f" {steps['gzip 6']:.2f}), the tf.Example (SHA-256 and framing)"
        f" {steps['example']:.2f} ms (each measured alone, one thread); the rest {rest:.2f} ms (HTTP client,"
        " asyncio, Beam, status files)"
    )
    if main is not None:
        # The image work runs in the job's thread pool; everything else in its main thread.
        print(
            f"  by thread, CPU per image after start-up: main thread (event loop, HTTP, tf.Example, gzip, Beam) "
            f"{main:.2f} ms, the image threads {per_image - main:.2f} ms"
        )
    pillow = sum(steps["pillow"].values())
    print(
        "  the same image work through Pillow, as before: "
        + ", ".join(f"{k} {v:.2f}" for k, v in steps["pillow"].items())
        + f" ms; {pillow:.2f} ms against the job's {work - steps['gzip']:.2f}"
    )
    floor = start_wall + count * work / 1000 / cores
    print(
        f"  floor on {cores} cores with this start-up and no other work: {floor:.2f} s "
        f"({count / floor:.0f} images/s end to end)"
    )
    reference = "img2dataset (2 processes)"
    if reference in medians:
        target = medians[reference] / TARGET_RATIO
        # What is left for the images once the job has started, and the CPU per image that allows on every core.
        budget = target - start_wall
        print(
            f"  {TARGET_RATIO}x {reference} would take {target:.2f} s end to end: with this start-up, "
            f"{budget:.2f} s for the images, {1000 * budget * cores / count:.2f} CPU ms an image on {cores} fully "
            f"busy cores (this run: {per_image:.2f} after start-up)"
        )


if __name__ == "__main__":
    main()
