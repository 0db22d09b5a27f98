"""Similar-product search on real catalogue photos: embedding quality, and the k-NN libraries compared.

  .venv/bin/python benchmarks/similar_benchmark.py --dataset PATH/TO/fashion-products-2k \
      --work /tmp/imat-bench [--model WORK/serving/<version>]

1. Data and model: the dataset is downloaded into TFRecords with pipeline_benchmark.py's prepare
   step; the trained model is --model, else the newest pushed in WORK/serving, else the pipeline
   is run (pipeline_benchmark's settings) to train one. The untrained model is the same network
   with random weights, exported the same way (the Transform graph and ``embed_images``).
2. Quality: precision@5 of each model's embeddings, validation photos as queries against the train
   split as the catalogue (exact search), where a hit shares the query's articleType (and, second,
   its subCategory); also chance level (random items) and, for reference, two vectors the model does
   not serve: the pooled features centred on the catalogue's mean, and the label probabilities.
3. Libraries: exact search (numpy), FAISS HNSW, FAISS IVF-Flat and hnswlib, on the trained model's
   vectors: recall@10 against exact search, queries/s (one query at a time on one thread, as
   ``imat similar`` does; and all queries in one batch on every core) and build time, at several
   search settings. Two sets: the real catalogue (train split; validation queries) and a 10k set
   (every photo and 6 augmented variants, embedded by the model; 800 held out as queries).
   Backends alternate within each repetition; medians are reported.
4. The whole ``imat index`` job (read, embed, build, write) on the train and validation splits.
"""

import argparse
import io
import json
import os
import random
import shutil
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [os.path.dirname(HERE), HERE]
import imat_common.keras2  # noqa: F401  (chooses Keras 2 before TensorFlow loads)

import numpy as np

import pipeline_benchmark
from imat_common.workdir import Workdir, latest_pushed_model

SWEEP = {
    "exact": ("", [0]),
    "faiss-hnsw": ("ef_search", [16, 32, 64, 128]),
    "hnswlib": ("ef_search", [16, 32, 64, 128]),
    "faiss-ivf": ("nprobe", [1, 4, 8, 16]),
}
TARGET_RECALL = 0.95


def read_split(data_root: str, split: str):
    """(ids, JPEG bytes, label id lists) of a split of the download job's output."""
    import tensorflow as tf

    from imat_common import features

    spec = {
        features.IMAGE_ID_KEY: tf.io.FixedLenFeature([], tf.string),
        features.IMAGE_KEY: tf.io.FixedLenFeature([], tf.string),
        features.LABELS_KEY: tf.io.VarLenFeature(tf.int64),
    }
    files = tf.io.gfile.glob(os.path.join(data_root, split, "*.tfrecord.gz"))
    ids, jpegs, labels = [], [], []
    for record in tf.data.TFRecordDataset(files, compression_type="GZIP"):
        example = tf.io.parse_single_example(record, spec)
        ids.append(example[features.IMAGE_ID_KEY].numpy().decode())
        jpegs.append(example[features.IMAGE_KEY].numpy())
        labels.append(set(example[features.LABELS_KEY].values.numpy().tolist()))
    return ids, jpegs, labels


def embed_all(
    model_dir: str, jpegs, batch: int = 64, signature: str = "embed_images", output: str = "embedding"
) -> np.ndarray:
    """One output of a signature on raw image bytes, in batches, L2-normalised."""
    import tensorflow as tf

    fn = tf.saved_model.load(model_dir).signatures[signature]
    out = np.concatenate(
        [fn(images=tf.constant(jpegs[i : i + batch]))[output].numpy() for i in range(0, len(jpegs), batch)]
    )
    return out / np.linalg.norm(out, axis=1, keepdims=True)


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def export_untrained(trained_dir: str, label_map: str, out: str, seed: int = 1) -> str:
    """The trained model's network with random weights, exported through the same Transform graph."""
    import tensorflow as tf
    import tensorflow_transform as tft
    import tensorflow_transform.beam as tft_beam
    import tf_keras as keras
    from tensorflow_transform.tf_metadata import dataset_metadata, metadata_io, schema_utils

    from trainer import exporter, model as model_lib
    from imat_common import features
    from trainer.preprocessing import IMAGE_FEATURE, preprocessing_fn

    transform = tf.saved_model.load(trained_dir).signatures["transform_features"]
    image_size = int(transform.structured_outputs[IMAGE_FEATURE].shape[1])
    num_labels = features.load_label_map(label_map).num_labels
    spec = {
        features.IMAGE_KEY: tf.io.FixedLenFeature([1], tf.string),
        features.LABELS_KEY: tf.io.VarLenFeature(tf.int64),
    }
    metadata = dataset_metadata.DatasetMetadata(schema_utils.schema_from_feature_spec(spec))
    with tft_beam.Context(temp_dir=os.path.join(out, "tmp"), force_tf_compat_v1=False):
        fn = lambda inputs: preprocessing_fn(inputs, {"num_labels": num_labels, "image_size": image_size})
        transform_fn = ([{features.IMAGE_KEY: [b""], features.LABELS_KEY: [1]}], metadata) | tft_beam.AnalyzeDataset(fn)
        _ = transform_fn | tft_beam.WriteTransformFn(os.path.join(out, "transform"))
    metadata_io.write_metadata(metadata, os.path.join(out, "transform", tft.TFTransformOutput.RAW_METADATA_DIR))
    keras.utils.set_random_seed(seed)
    model = model_lib.build_model(model_lib.ModelConfig(num_labels, image_size, "none"))
    model_dir = os.path.join(out, "untrained")
    exporter.export(
        model, tft.TFTransformOutput(os.path.join(out, "transform")), np.full(num_labels, 0.5, np.float32), model_dir
    )
    return model_dir


def task_labels(label_map: str, task: str) -> set:
    from imat_common.features import load_label_map

    return {label.label_id for label in load_label_map(label_map).labels if label.task == task}


def precision_per_query(query_vectors, query_labels, vectors, labels, task_ids: set, k: int = 5) -> np.ndarray:
    """Per query with a label of the task: the share of its k nearest catalogue items that share it."""
    from components.similar.index import brute_force

    rows = brute_force(vectors, query_vectors, k)
    target = [q & task_ids for q in query_labels]
    return np.array([np.mean([bool(labels[r] & t) for r in row]) for row, t in zip(rows, target) if t])


def bootstrap_difference(a: np.ndarray, b: np.ndarray, resamples: int = 2000) -> list:
    """95 % interval of mean(a) - mean(b) over queries resampled with replacement (paired)."""
    rng = np.random.default_rng(0)
    picks = rng.integers(0, len(a), (resamples, len(a)))
    return [float(v) for v in np.percentile(a[picks].mean(1) - b[picks].mean(1), [2.5, 97.5])]


def chance_precision(query_labels, labels, task_ids: set) -> float:
    """Precision of k items drawn at random from the catalogue."""
    return float(
        np.mean([np.mean([bool(item & q & task_ids) for item in labels]) for q in query_labels if q & task_ids])
    )


def augmented(jpegs, variants: int, seed: int = 0):
    """Each photo mirrored, cropped (80-100 %), brightness and colour shifted, ``variants`` times."""
    from PIL import Image, ImageEnhance, ImageOps

    rng = random.Random(seed)
    out = []
    for jpeg in jpegs:
        for _ in range(variants):
            im = Image.open(io.BytesIO(jpeg)).convert("RGB")
            if rng.random() < 0.5:
                im = ImageOps.mirror(im)
            w, h = im.size
            s = rng.uniform(0.8, 1.0)
            x, y = rng.uniform(0, w * (1 - s)), rng.uniform(0, h * (1 - s))
            im = im.crop((int(x), int(y), int(x + w * s), int(y + h * s))).resize((w, h))
            im = ImageEnhance.Color(ImageEnhance.Brightness(im).enhance(rng.uniform(0.8, 1.2))).enhance(
                rng.uniform(0.8, 1.2)
            )
            buf = io.BytesIO()
            im.save(buf, format="JPEG", quality=90)
            out.append(buf.getvalue())
    return out


def _rate(fn, items: int, min_seconds: float) -> float:
    """Items per second of ``fn`` (which handles ``items``), repeated for at least ``min_seconds``."""
    done, start = 0, time.perf_counter()
    while True:
        fn()
        done += items
        elapsed = time.perf_counter() - start
        if elapsed >= min_seconds:
            return done / elapsed


def compare_backends(vectors: np.ndarray, queries: np.ndarray, reps: int, min_seconds: float) -> dict:
    """Build time, recall@10 and queries/s of every backend and search setting, alternating per repetition."""
    from threadpoolctl import threadpool_limits

    from components.similar.backends import make_backend
    from components.similar.index import brute_force, recall_at_k

    exact = brute_force(vectors, queries, 10)
    rows = {}
    for rep in range(reps):
        for name, (knob, values) in SWEEP.items():
            backend = make_backend(name, vectors.shape[1])
            with threadpool_limits(limits=1):
                backend.set_threads(1)  # one thread: the per-core cost, comparable across libraries
                start = time.perf_counter()
                backend.build(vectors)
                build = time.perf_counter() - start
            for value in values:
                if knob:
                    backend.params[knob] = value
                found = backend.search(queries, 10)[1]

                def one_at_a_time():
                    for q in queries:
                        backend.search(q[None], 10)

                with threadpool_limits(limits=1):
                    backend.set_threads(1)
                    single = _rate(one_at_a_time, len(queries), min_seconds)
                backend.set_threads(-1)
                batch = _rate(lambda: backend.search(queries, 10), len(queries), min_seconds)
                key = f"{name} {knob}={value}" if knob else name
                row = rows.setdefault(
                    key,
                    {
                        "backend": name,
                        "setting": f"{knob}={value}" if knob else "",
                        "recall@10": recall_at_k(found, exact),
                        "build_s": [],
                        "qps_1": [],
                        "qps_batch": [],
                    },
                )
                row["build_s"].append(build)
                row["qps_1"].append(single)
                row["qps_batch"].append(batch)
        print(f"  rep {rep + 1}/{reps} done", flush=True)
    for row in rows.values():
        for field in ("build_s", "qps_1", "qps_batch"):
            row[field] = float(np.median(row[field]))
        row["build_s_per_10k"] = row["build_s"] * 10_000 / len(vectors)
    return rows


def choose(rows: dict) -> dict:
    """The fastest single-query setting at recall@10 >= the target; build time breaks near-ties."""
    ok = [r for r in rows.values() if r["backend"] != "exact" and r["recall@10"] >= TARGET_RECALL]
    return max(ok, key=lambda r: (round(r["qps_1"], -1), -r["build_s"])) if ok else {}


def table(rows: dict) -> str:
    lines = [
        "| backend | setting | recall@10 | queries/s (1 query, 1 thread) | queries/s (batch, all cores) "
        "| build s | build s per 10k |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows.values():
        lines.append(
            f"| {r['backend']} | {r['setting'] or '-'} | {r['recall@10']:.3f} | {r['qps_1']:.0f} | "
            f"{r['qps_batch']:.0f} | {r['build_s']:.3f} | {r['build_s_per_10k']:.2f} |"
        )
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", required=True, help="the fashion-products-2k folder")
    parser.add_argument("--work", default="/tmp/imat-bench", help="shared with pipeline_benchmark.py")
    parser.add_argument("--model", help="trained SavedModel; default: the newest pushed in WORK/serving")
    parser.add_argument("--image_size", type=int, default=75, help="only when a model must be trained")
    parser.add_argument("--train_steps", type=int, default=600, help="only when a model must be trained")
    parser.add_argument("--variants", type=int, default=6, help="augmented copies per photo for the 10k set")
    parser.add_argument("--big", type=int, default=10_000, help="catalogue size of the larger set")
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--min_seconds", type=float, default=1.0, help="each queries/s figure is timed this long")
    parser.add_argument("--skip", action="append", default=[], choices=["backends", "job"])
    args = parser.parse_args(argv)
    from components.similar import embed_job

    label_map = pipeline_benchmark.prepare(os.path.abspath(args.dataset), args.work)
    data = os.path.join(args.work, "data")
    model_dir = args.model or latest_pushed_model(Workdir(args.work).serving)
    if not model_dir:
        print("no trained model: running the pipeline to train one", flush=True)
        settings = argparse.Namespace(
            work=args.work, image_size=args.image_size, train_steps=args.train_steps, batch_size=32, learning_rate=1e-3
        )
        pipeline_benchmark.run_pipeline(pipeline_benchmark.pipeline_config(settings, label_map))
        model_dir = latest_pushed_model(Workdir(args.work).serving)
    results = {"model": model_dir}
    scratch = tempfile.mkdtemp(prefix="similar-bench-")
    untrained_dir = export_untrained(model_dir, label_map, scratch, seed=1)

    train_ids, train_jpegs, train_labels = read_split(data, "train")
    val_ids, val_jpegs, val_labels = read_split(data, "validation")
    results["catalogue"], results["queries"] = len(train_ids), len(val_ids)
    print(f"catalogue: {len(train_ids)} train photos; queries: {len(val_ids)} validation photos", flush=True)

    quality, vectors = {}, {}
    tasks = {task: task_labels(label_map, task) for task in ("articleType", "subCategory")}

    per_query = {}

    def score(name, catalogue, queries, extra=None):
        quality[name] = dict(extra or {})
        for task, ids in tasks.items():
            per_query[name, task] = precision_per_query(queries, val_labels, catalogue, train_labels, ids)
            quality[name][f"p@5 {task}"] = float(per_query[name, task].mean())

    for name, path in (("trained", model_dir), ("untrained", untrained_dir)):
        start = time.perf_counter()
        catalogue = embed_all(path, train_jpegs)
        seconds = time.perf_counter() - start
        queries = embed_all(path, val_jpegs)
        vectors[name] = (catalogue, queries)
        score(
            f"{name}: embed_images (pooled features)", catalogue, queries, {"images_per_s": len(train_jpegs) / seconds}
        )
        # For reference, not served: features centred on the catalogue's mean before normalising
        # (a common fix when every vector shares one large component).
        mean = catalogue.mean(axis=0)
        score(f"{name}: pooled, centred on the catalogue mean", _unit(catalogue - mean), _unit(queries - mean))
    score(
        "trained: label probabilities as the vector",
        embed_all(model_dir, train_jpegs, signature="predict_images", output="probabilities"),
        embed_all(model_dir, val_jpegs, signature="predict_images", output="probabilities"),
    )
    quality["trained - untrained, 95% bootstrap interval"] = {
        f"p@5 {task}": bootstrap_difference(
            per_query["trained: embed_images (pooled features)", task],
            per_query["untrained: embed_images (pooled features)", task],
        )
        for task in tasks
    }
    quality["chance (random items)"] = {
        f"p@5 {task}": chance_precision(val_labels, train_labels, ids) for task, ids in tasks.items()
    }
    results["quality"] = quality
    print(json.dumps(quality, indent=1), flush=True)

    if "backends" not in args.skip:
        print("backends on the real catalogue", flush=True)
        results["backends_catalogue"] = compare_backends(*vectors["trained"], args.reps, args.min_seconds)
        print(table(results["backends_catalogue"]), flush=True)

        print(f"embedding {args.variants} augmented variants of each photo for the 10k set", flush=True)
        all_jpegs = train_jpegs + val_jpegs
        big = np.concatenate(
            [vectors["trained"][0], vectors["trained"][1], embed_all(model_dir, augmented(all_jpegs, args.variants))]
        )
        order = np.random.default_rng(0).permutation(len(big))
        queries, catalogue = big[order[:800]], big[order[800 : 800 + args.big]]
        results["set_10k"] = {"catalogue": len(catalogue), "queries": len(queries)}
        print(f"10k set: {len(catalogue)} items, {len(queries)} queries", flush=True)
        results["backends_10k"] = compare_backends(catalogue, queries, args.reps, args.min_seconds)
        print(table(results["backends_10k"]), flush=True)
        chosen = choose(results["backends_10k"])
        results["chosen"] = chosen
        print(
            f"chosen (fastest single query at recall@10 >= {TARGET_RECALL} on the 10k set): "
            f"{chosen.get('backend')} {chosen.get('setting')}",
            flush=True,
        )
    if "job" not in args.skip:
        out = os.path.join(scratch, "index")
        results["index_job"] = embed_job.run(
            [
                "--model",
                model_dir,
                "--label_map",
                label_map,
                "--output",
                out,
                "--examples",
                f"train={data}/train/*.tfrecord.gz",
                "--examples",
                f"validation={data}/validation/*.tfrecord.gz",
            ]
        )
        job = results["index_job"]
        job["seconds_per_10k"] = job["seconds"] * 10_000 / job["items"]
        print(embed_job.format_summary(job), flush=True)
        print(f"  whole job: {job['seconds_per_10k']:.0f} s per 10k items (Beam start-up included)", flush=True)
    with open(os.path.join(args.work, "similar_results.json"), "w") as f:
        json.dump(results, f, indent=1)
    print(f"results: {os.path.join(args.work, 'similar_results.json')}")
    shutil.rmtree(scratch)


if __name__ == "__main__":
    main()
