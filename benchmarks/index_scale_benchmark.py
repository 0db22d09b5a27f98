"""The similar-product index at 100k and 1M generated embeddings: HNSW beside the compressed IVF-PQ.

  nice -n 10 .venv/bin/python benchmarks/index_scale_benchmark.py [--sizes 100000 1000000] [--work /tmp/imat-scale]

Vectors: ``generated_embeddings.py`` (clustered, unit length, 2048-d); 500 held-out queries; the
truth is their exact top 10 (numpy, streamed over chunks). Every backend runs in its own
process on one thread (FAISS and BLAS), so its peak memory is its own and cores compare one
to one; times are CPU seconds of that thread (wall time on a shared machine says more about
the neighbours than about the index).

* HNSW (``faiss-hnsw``, the default below ``COMPRESSED_FROM``): up to ``--gather_max`` items built
  as the Beam job's gather path does (every item in one list, stacked, built: its peak is that
  one worker's); above, added a chunk at a time (the index alone).
* IVF-PQ (``faiss-ivfpq``) variants, built as the Beam job builds them, with its functions:
  train on a sample, encode ``--shards`` parts, merge. Each step's peak memory is measured on
  its own (the peak RSS, reset between steps through /proc/self/clear_refs).

Per backend and search setting: recall@10, queries/s (one query at a time), build CPU seconds,
index size (the serialised index: what a server holds) and the peak memory growth of the
build. A rerun with the same --work resumes. Results: WORK/index_scale_results.json and a
Markdown table on stdout.
"""

import argparse
import json
import multiprocessing
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [os.path.dirname(HERE), HERE]
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"  # before numpy loads: one thread everywhere, children included
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # idle OpenMP threads must not spin on a shared machine

import numpy as np

import generated_embeddings as gen

# label -> (backend, build parameters, search knob, its values); the default setting comes first.
CANDIDATES = {
    "IVF-PQ m=64": ("faiss-ivfpq", {"m": 64}, "nprobe", [32, 16, 64]),
    "IVF-PQ m=128": ("faiss-ivfpq", {"m": 128}, "nprobe", [32, 16, 64]),
    "IVF-PQ m=256": ("faiss-ivfpq", {"m": 256}, "nprobe", [32, 16, 64]),
    "IVF-PQ m=512": ("faiss-ivfpq", {"m": 512}, "nprobe", [32, 16, 64]),
    "HNSW": ("faiss-hnsw", {}, "ef_search", [32, 16, 64]),
}
MB = 1 << 20


def rss_mb(field: str = "VmRSS") -> float:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith(field + ":")) / 1024


def reset_peak() -> float:
    """Sets the process's peak RSS to its current RSS; returns that RSS in MB."""
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    return rss_mb()


PEAKS = []  # every step's peak RSS in MB: resetting the peak for a step hides the earlier ones


def step(fn, *args):
    """(result, CPU seconds, peak RSS growth MB) of fn(*args)."""
    before, cpu = reset_peak(), time.process_time()
    result = fn(*args)
    PEAKS.append(rss_mb("VmHWM"))
    return result, time.process_time() - cpu, PEAKS[-1] - before


def _items(model, n, shard, shards):
    """The generated items of one shard (rows cut into ``shards`` contiguous runs of chunks)."""
    chunks = -(-n // gen.CHUNK)
    lo, hi = chunks * shard // shards, chunks * (shard + 1) // shards
    for first, vectors in model.chunks(min(n, hi * gen.CHUNK), start=lo * gen.CHUNK):
        for row, vector in enumerate(vectors, first):
            yield {"id": f"item-{row}", "url": "", "labels": (), "vector": vector, "thumbnail": b""}


def build_hnsw(model, n, params, gather):
    """HNSW as the gather path builds it (every item in one list, stacked), or a chunk at a time."""
    from components.similar.backends import make_backend
    from components.similar.index import Item, ModelInfo, SimilarityIndex

    if gather:  # what WriteIndexFn does with the list beam.combiners.ToList() hands it
        items = list(_items(model, n, 0, 1))
        index = SimilarityIndex.build(
            np.stack([item["vector"] for item in items]),
            [Item(item["id"]) for item in items],
            ModelInfo("0" * 64),
            backend="faiss-hnsw",
            params=params,
        )
        return index.backend, {"gathered": True}
    backend = make_backend("faiss-hnsw", gen.DIM, **params)
    backend.build(np.zeros((0, gen.DIM), np.float32))
    for _, vectors in model.chunks(n):
        backend.add(vectors)  # chunk by chunk: build() would need every vector at once
    return backend, {"gathered": False}


def build_ivfpq(model, n, params, shards):
    from components.similar import sharded_build as sb
    from components.similar.compressed import FaissIVFPQBackend, sample_key

    size = min(n, {**FaissIVFPQBackend.defaults, **params}["train_size"])
    # Generated rows are independent draws, so the first rows are as random a sample as any.
    sample = [
        (sample_key(f"item-{row}"), vector)
        for first, chunk in model.chunks(size)
        for row, vector in enumerate(chunk, first)
    ]
    template, train_cpu, train_peak = step(sb.train_template, sample, n, params)
    del sample
    parts, encode_cpu, encode_peak = [], [], []
    for shard in range(shards):
        part, cpu, peak = step(sb.encode_part, template, _items(model, n, shard, shards))
        parts.append(part)
        encode_cpu.append(cpu)
        encode_peak.append(peak)
    (backend, _, _), merge_cpu, merge_peak = step(sb.merge_parts, template, parts)
    return backend, {
        "train_cpu_s": train_cpu,
        "train_peak_mb": train_peak,
        "encode_cpu_s": sum(encode_cpu),
        "encode_shard_max_cpu_s": max(encode_cpu),
        "encode_shard_peak_mb": max(encode_peak),
        "merge_cpu_s": merge_cpu,
        "merge_peak_mb": merge_peak,
        "parts_mb": sum(len(p["index"]) for p in parts) / MB,
        "shards": shards,
    }


def _index_path(work, label, n):
    return os.path.join(work, f"{label.replace(' ', '_').replace('=', '')}-{n}.faiss")


def measure(label, n, queries, truth, shards, gather, work):
    """One backend at one size, in a child process: builds it, writes the index file and its result JSON."""
    import faiss

    from components.similar.index import recall_at_k

    faiss.omp_set_num_threads(1)
    model = gen.EmbeddingModel()
    name, params, knob, values = CANDIDATES[label]
    start_rss, wall, cpu = reset_peak(), time.time(), time.process_time()
    backend, steps = (
        build_hnsw(model, n, params, gather) if name == "faiss-hnsw" else build_ivfpq(model, n, params, shards)
    )
    result = {
        "label": label,
        "backend": name,
        "n": n,
        "build_cpu_s": time.process_time() - cpu,
        "build_wall_s": time.time() - wall,
        "peak_growth_mb": max([rss_mb("VmHWM")] + PEAKS) - start_rss,
        "params": dict(backend.params),
        **steps,
        "settings": [],
    }
    path = _index_path(work, label, n)
    faiss.write_index(backend._index, path)  # straight to the file: to_bytes() would copy 8 GB of HNSW
    result["index_mb"] = os.path.getsize(path) / MB
    for value in values:
        backend.params[knob] = value
        found = backend.search(queries, 10)[1]
        result["settings"].append(
            {"setting": f"{knob}={value}", "recall@10": recall_at_k(found, truth), "found": found.tolist()}
        )
    with open(path + ".json", "w") as f:
        json.dump(result, f, indent=1)


def search_speed(labels, n, queries, work, rounds, seconds):
    """Queries/s of every backend and setting at one size, one query at a time, taking turns ``rounds``
    times in one process (so load from elsewhere falls on all alike); medians to ``work``/speed-n.json."""
    import faiss

    from components.similar.backends import make_backend

    faiss.omp_set_num_threads(1)
    backends = {}
    for label in labels:
        name, params, knob, values = CANDIDATES[label]
        with open(_index_path(work, label, n) + ".json") as f:
            backend = make_backend(name, gen.DIM, **json.load(f)["params"])
        backend._index = faiss.read_index(_index_path(work, label, n))
        backends[label] = backend
    rates = {}
    for _ in range(rounds):
        for label, backend in backends.items():
            _, _, knob, values = CANDIDATES[label]
            for value in values:
                backend.params[knob] = value
                done, t0 = 0, time.process_time()
                while time.process_time() - t0 < seconds or done < 20:
                    backend.search(queries[done % len(queries)][None], 10)
                    done += 1
                rates.setdefault(f"{label} {knob}={value}", []).append(done / (time.process_time() - t0))
    with open(os.path.join(work, f"speed-{n}.json"), "w") as f:
        json.dump({key: float(np.median(r)) for key, r in rates.items()}, f)


def add_similarity_kept(model, n, queries, truth_cosines, results) -> None:
    """Per setting: the found items' mean exact cosine over the exact top 10's (1.0: as similar as exact)."""
    found = {(i, j): np.array(s["found"]) for i, r in enumerate(results) for j, s in enumerate(r["settings"])}
    cosines = gen.cosines_of(model, n, queries, found)
    for (i, j), values in cosines.items():
        results[i]["settings"][j]["similarity_kept"] = float(np.mean(values.mean(1) / truth_cosines.mean(1)))
        del results[i]["settings"][j]["found"]  # kept in the backend's own JSON file


def run_child(ctx, target, *args):
    child = ctx.Process(target=target, args=args)
    child.start()
    child.join()
    if child.exitcode != 0:
        raise SystemExit(f"{target.__name__}{args[:2]} failed (exit {child.exitcode})")


def table(results) -> str:
    """Markdown: one row per backend and search setting; sizes and build figures on the default's row."""
    lines = [
        "| items | backend | setting | recall@10 | similarity kept | queries/s (1 thread) "
        "| index MB per 1M items | build CPU s | peak build MB |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        for i, s in enumerate(r["settings"]):
            build = (
                f"{r['index_mb'] * 1e6 / r['n']:,.0f} | {r['build_cpu_s']:,.0f} | {r['peak_growth_mb']:,.0f}"
                if i == 0
                else " | | "
            )
            lines.append(
                f"| {r['n']:,} | {r['label']} | {s['setting']} | {s['recall@10']:.3f} | "
                f"{s.get('similarity_kept', float('nan')):.3f} | {s.get('qps_1_cpu', float('nan')):,.0f} | "
                f"{build} |"
            )
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--candidates", nargs="+", default=list(CANDIDATES), choices=list(CANDIDATES))
    parser.add_argument("--queries", type=int, default=500)
    parser.add_argument("--shards", type=int, default=4, help="parts of the IVF-PQ build, as the Beam job's shards")
    parser.add_argument(
        "--gather_max",
        type=int,
        default=100_000,
        help="build HNSW through the one-worker gather up to this size (above: a chunk at a time, "
        "since the gather holds the vectors three times)",
    )
    parser.add_argument("--work", default="/tmp/imat-scale")
    args = parser.parse_args(argv)
    os.makedirs(args.work, exist_ok=True)
    model = gen.EmbeddingModel()
    queries = model.queries(args.queries)
    print(json.dumps(gen.describe(model, queries)), flush=True)
    results_path = os.path.join(args.work, "index_scale_results.json")
    results = json.load(open(results_path)) if os.path.exists(results_path) else []
    done = {(r["label"], r["n"]) for r in results}
    ctx = multiprocessing.get_context("spawn")
    for n in args.sizes:
        t0 = time.time()
        truth, truth_cosines = gen.exact_top_k(model, n, queries)
        print(f"{n:,} items: exact top 10 of {len(queries)} queries in {time.time() - t0:.0f} s", flush=True)
        for label in args.candidates:
            if (label, n) in done:
                continue  # a rerun resumes where it stopped
            gather = CANDIDATES[label][0] == "faiss-hnsw" and n <= args.gather_max
            run_child(ctx, measure, label, n, queries, truth, args.shards, gather, args.work)
            with open(_index_path(args.work, label, n) + ".json") as f:
                results.append(json.load(f))
            with open(results_path, "w") as f:
                json.dump(results, f, indent=1)
        sized = [r for r in results if r["n"] == n]
        add_similarity_kept(model, n, queries, truth_cosines, [r for r in sized if "found" in r["settings"][0]])
        if any("qps_1_cpu" not in r["settings"][0] for r in sized):
            run_child(ctx, search_speed, [r["label"] for r in sized], n, queries, args.work, 3, 1.0)
            with open(os.path.join(args.work, f"speed-{n}.json")) as f:
                speed = json.load(f)
            for r in sized:
                for s in r["settings"]:
                    s["qps_1_cpu"] = speed[f"{r['label']} {s['setting']}"]
                os.remove(_index_path(args.work, r["label"], n))  # HNSW's is 8 GB at 1M
        with open(results_path, "w") as f:
            json.dump(results, f, indent=1)
        print(table(sized), flush=True)
    print(table(results))
    print(f"results: {results_path}")


if __name__ == "__main__":
    main()
