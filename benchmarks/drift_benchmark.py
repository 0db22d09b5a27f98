"""The drift check's false alarms and its power, on real catalogue photos.

  .venv/bin/python benchmarks/drift_benchmark.py --data /tmp/imat-bench/data \
      --label_map /tmp/imat-bench/source/label_map.csv --sizes 200 400 750 --reps 40

``--data`` is a download job's output (``pipeline_benchmark.py`` leaves one in ``WORK/data``).
Its train photos stand for a catalogue whose spans are drawn from one distribution: each
repetition draws two disjoint random samples of n photos, "the previous span" and "the new
span", and measures what the ValidationGate measures between them (``components/drift.py``
with the curated schema of ``pipeline/schema.py``: labels by L-infinity distance, over all
labels and within each task, image height, width and JPEG bytes by Jensen-Shannon divergence).
The share of repetitions above the schema's thresholds is the false-alarm rate of a run on an
unchanged catalogue.

Then two shifts of the new sample, with the same draws:
- label shift: the new sample takes half of its photos from those carrying one label (the
  most frequent label of the ``--shift_task`` task, "baseColour" on fashion-products-2k);
- studio change: every new photo re-encoded darker (pixels times ``--darken``, the download
  job's JPEG quality), as a new studio's lighting would give.
The share above the thresholds is the check's power against each.
"""

import argparse
import io
import json
import os
import sys
from collections import Counter

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import imat_common.keras2  # noqa: F401  (chooses Keras 2 before TensorFlow loads)

import numpy as np


def read_examples(folder):
    import tensorflow as tf

    files = sorted(tf.io.gfile.glob(os.path.join(folder, "*.tfrecord.gz")))
    if not files:
        raise SystemExit(f"no *.tfrecord.gz in {folder}")
    return [tf.train.Example.FromString(r.numpy()) for r in tf.data.TFRecordDataset(files, compression_type="GZIP")]


def statistics(examples, schema, tasks):
    import tensorflow_data_validation as tfdv
    from tensorflow_data_validation.statistics import stats_impl
    from tfx_bsl.coders import example_coder

    from components.drift import slim_example

    batch = example_coder.ExamplesToRecordBatchDecoder().DecodeBatch(
        [slim_example(e, tasks).SerializeToString() for e in examples]
    )
    return stats_impl.generate_statistics_in_memory(batch, tfdv.StatsOptions(schema=schema))


def darker(example, factor, quality):
    from PIL import Image

    from imat_common.features import IMAGE_KEY

    out = type(example)()
    out.CopyFrom(example)
    image = Image.open(io.BytesIO(example.features.feature[IMAGE_KEY].bytes_list.value[0])).convert("RGB")
    pixels = (np.asarray(image, dtype=np.float32) * factor).clip(0, 255).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="JPEG", quality=quality)
    out.features.feature[IMAGE_KEY].bytes_list.value[0] = buf.getvalue()
    return out


def main(argv=None):
    parser = argparse.ArgumentParser(allow_abbrev=False, description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", required=True, help="a download job's output folder (train/*.tfrecord.gz)")
    parser.add_argument("--label_map", required=True)
    parser.add_argument("--sizes", type=int, nargs="+", default=[200, 400, 750], help="photos per span")
    parser.add_argument("--reps", type=int, default=40)
    parser.add_argument("--shift_task", default="baseColour", help="the task whose most frequent label is shifted")
    parser.add_argument("--darken", type=float, default=0.6)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output", default="", help="also write the results as JSON here")
    args = parser.parse_args(argv)

    from components import drift
    from components.download.images import ImageSettings
    from imat_common.features import LABELS_KEY, load_label_map
    from pipeline.schema import build_schema

    label_map = load_label_map(args.label_map)
    schema = build_schema(label_map)
    tasks = {label.label_id: label.task for label in label_map.labels}
    examples = read_examples(os.path.join(args.data, "train"))
    labels_of = [set(e.features.feature[LABELS_KEY].int64_list.value) for e in examples]
    task_labels = {lab.label_id for lab in label_map.labels if lab.task == args.shift_task}
    if not task_labels:
        raise SystemExit(f"no task {args.shift_task!r} in {args.label_map}")
    counts = Counter(lab for labels in labels_of for lab in labels if lab in task_labels)
    shifted_label = counts.most_common(1)[0][0]
    carriers = [i for i, labels in enumerate(labels_of) if shifted_label in labels]
    quality = ImageSettings().jpeg_quality
    rng = np.random.default_rng(args.seed)
    results = {
        "photos": len(examples),
        "shifted_label": f"{shifted_label} ({label_map.by_id()[shifted_label].name}), "
        f"share {len(carriers) / len(examples):.3f} of photos",
        "thresholds": drift.thresholds(schema),
        "sizes": {},
    }
    print(json.dumps({k: v for k, v in results.items() if k != "sizes"}, indent=1), flush=True)
    for n in args.sizes:
        if 2 * n > len(examples):
            raise SystemExit(f"--sizes {n}: two disjoint samples need {2 * n} photos, the data has {len(examples)}")
        rows = {"same distribution": [], "label shift": [], "studio change": []}
        shares = []  # the shifted label's share of the new sample's photos: the data caps it
        for _ in range(args.reps):
            order = rng.permutation(len(examples))
            before, new = order[:n], order[n : 2 * n]
            previous = statistics([examples[i] for i in before], schema, tasks)
            rest = np.setdiff1d(carriers, before)
            half = rng.choice(rest, size=min(n // 2, len(rest)), replace=False)
            shifted = np.concatenate([half, new[: n - len(half)]])
            shares.append(np.mean([shifted_label in labels_of[i] for i in shifted]))
            for name, sample in (
                ("same distribution", [examples[i] for i in new]),
                ("label shift", [examples[i] for i in shifted]),
                ("studio change", [darker(examples[i], args.darken, quality) for i in new]),
            ):
                rows[name].append(
                    {
                        d.feature: (d.value, d.exceeded)
                        for d in drift.measure(statistics(sample, schema, tasks), previous, schema)
                    }
                )
        summary = {}
        for name, reps in rows.items():
            summary[name] = {
                "stopped (any feature above its threshold)": float(
                    np.mean([any(e for _, e in r.values()) for r in reps])
                ),
                **{
                    feature: {
                        "median": float(np.median(values)),
                        "p95": float(np.percentile(values, 95)),
                        "max": float(np.max(values)),
                        "above threshold": float(np.mean([r[feature][1] for r in reps])),
                    }
                    for feature in sorted(reps[0])
                    for values in [[r[feature][0] for r in reps]]
                },
            }
        summary["label shift"]["shifted label's share of the new photos"] = float(np.mean(shares))
        results["sizes"][n] = summary
        print(json.dumps({n: summary}, indent=1), flush=True)
    if args.output:
        with open(args.output, "w") as f:
            json.dump(results, f, indent=1)


if __name__ == "__main__":
    main()
