"""``imat audit``: the images whose labels the model confidently contradicts, ranked, as CSV and HTML.

  imat audit --workdir imat-demo
  imat audit --workdir W --examples 'W/data/validation/*.tfrecord.gz' --top 100

Scores a split of the download job's TFRecords with an exported model (default: the newest
pushed) and runs confident learning one label at a time (``cli/label_issues.py``): a label given
to an image the model is confidently sure lacks it is a **wrong label**; one not given that the
model is confidently sure it has, a **missing label**. Written:

- ``<output>.csv``: one row per issue, least self-confident first:
  ``rank,image_id,label_id,label_name,task,given,probability,suggested_action``;
- ``<output>.html``: a contact sheet of the ``--top`` images with the most suspect labels, each
  photo with its given labels and the model's contradictions.

The probabilities must come from a model that did not train on these labels: the default split,
validation, is one the pipeline's Trainer never trains on (calibration only picks thresholds, eval
only scores). A model audited on its own training images agrees with the labels it memorised, and
finds fewer issues than there are. Images the model cannot score are counted and listed in
``<output>_errors.txt``; the others are audited.
"""

import argparse
import base64
import csv
import glob
import html
import os
import sys
from typing import Dict, List, Optional, Sequence

import numpy as np

from cli import label_issues
from cli.flags import local_model
from imat_common import features, image_policy, serving, spans
from imat_common.workdir import DEFAULT_WORKDIR, Workdir

CSV_COLUMNS = ("rank", "image_id", "label_id", "label_name", "task", "given", "probability", "suggested_action")
THUMBNAIL_PX = 160


def default_patterns(workdir: Workdir) -> List[str]:
    """The validation split of the workdir's data: of its newest span when the data has spans."""
    present = spans.numbers(os.listdir(workdir.data)) if os.path.isdir(workdir.data) else []
    root = os.path.join(workdir.data, spans.folder(max(present))) if present else workdir.data
    return [os.path.join(root, "validation", "*.tfrecord.gz")]


def read_split(patterns: Sequence[str]):
    """(image ids, label id lists, serialized examples) of every record in the files matched.

    Raises:
      ValueError: no file matches, or a record lacks an image id (naming the file and record).
    """
    import tensorflow as tf

    files = sorted({f for pattern in patterns for f in glob.glob(pattern)})
    if not files:
        raise ValueError(f"no TFRecord files match {' '.join(patterns)}")
    ids, labels, records = [], [], []
    for path in files:
        compression = "GZIP" if path.endswith(".gz") else ""
        for index, record in enumerate(tf.data.TFRecordDataset(path, compression_type=compression)):
            example = tf.train.Example.FromString(record.numpy())
            feature = example.features.feature
            image_id = feature[features.IMAGE_ID_KEY].bytes_list.value
            if not image_id:
                raise ValueError(f"{path}, record {index}: no {features.IMAGE_ID_KEY}")
            ids.append(image_id[0].decode("utf-8"))
            labels.append([int(k) for k in feature[features.LABELS_KEY].int64_list.value])
            records.append(record.numpy())
    return ids, labels, records


def score(model, records: List[bytes], batch_size: int, progress=None):
    """The model's probabilities for each record (None where it cannot score one) and the errors."""
    import tensorflow as tf

    signature = model.signatures[serving.SERVING_DEFAULT]

    def call(batch):
        outputs = signature(**{serving.EXAMPLES: tf.constant(batch)})
        return {k: v.numpy() for k, v in outputs.items()}

    probabilities, errors = [], []
    for start in range(0, len(records), batch_size):
        rows, reasons = image_policy.score_rows(call, records[start : start + batch_size])
        probabilities += [None if row is None else row[serving.PROBABILITIES] for row in rows]
        errors += reasons
        if progress:
            progress.update(len(rows))
    return probabilities, errors


def multi_hot(label_lists: Sequence[Sequence[int]], num_labels: int) -> np.ndarray:
    """(images, num_labels) 0/1; ids outside 1..num_labels raise ValueError naming the image's row."""
    given = np.zeros((len(label_lists), num_labels), np.int64)
    for row, ids in enumerate(label_lists):
        for label_id in ids:
            if not 1 <= label_id <= num_labels:
                raise ValueError(f"image {row}: label id {label_id} is outside the model's 1..{num_labels}")
            given[row, label_id - 1] = 1
    return given


def csv_rows(issues, image_ids: Sequence[str], names: Dict[int, tuple]) -> List[dict]:
    """The CSV's rows; ``names``: {label id: (name, task)}."""
    rows = []
    for rank, issue in enumerate(issues, 1):
        label_id = issue.label + 1
        name, task = names.get(label_id, (str(label_id), ""))
        rows.append(
            {
                "rank": rank,
                "image_id": image_ids[issue.row],
                "label_id": label_id,
                "label_name": name,
                "task": task,
                "given": int(issue.given),
                "probability": f"{issue.probability:.4f}",
                "suggested_action": issue.action,
            }
        )
    return rows


def _thumbnail(record: bytes) -> str:
    """The photo as a base64 JPEG at most THUMBNAIL_PX a side, made as the similar-product index
    makes its thumbnails; "" where it cannot be made."""
    import tensorflow as tf

    from components.download.images import ImageError, ImageSettings, process_image

    jpeg = tf.train.Example.FromString(record).features.feature[features.IMAGE_KEY].bytes_list.value[0]
    try:
        small = process_image(jpeg, ImageSettings(max_size=THUMBNAIL_PX, jpeg_quality=85)).jpeg
    except ImageError:
        return ""
    return base64.b64encode(small).decode("ascii")


def contact_sheet(rows: Sequence[dict], given_names: Dict[str, List[str]], records: Dict[str, bytes], top: int) -> str:
    """The HTML page: the ``top`` images with the most suspect labels (in the CSV's order)."""
    by_image: Dict[str, List[dict]] = {}
    for row in rows:
        if row["image_id"] in by_image or len(by_image) < top:
            by_image.setdefault(row["image_id"], []).append(row)
    cards = []
    for image_id, issues in by_image.items():
        lines = "".join(
            f'<li class="{"wrong" if r["given"] else "missing"}">{html.escape(r["suggested_action"])}: '
            f"{html.escape(r['task'] + ': ' if r['task'] else '')}{html.escape(r['label_name'])} "
            f"(p={r['probability']}, rank {r['rank']})</li>"
            for r in issues
        )
        thumbnail = _thumbnail(records[image_id])
        image = f'<img src="data:image/jpeg;base64,{thumbnail}" alt="{html.escape(image_id)}">' if thumbnail else ""
        cards.append(
            f'<div class="card">{image}<div class="id">{html.escape(image_id)}</div>'
            f'<div class="given">given: {html.escape(", ".join(given_names[image_id]) or "(none)")}</div>'
            f"<ul>{lines}</ul></div>"
        )
    style = (
        "body{font-family:sans-serif;margin:1em}.card{display:inline-block;vertical-align:top;width:240px;"
        "margin:6px;padding:6px;border:1px solid #ccc}.id{font-weight:bold}.given{color:#555;font-size:90%}"
        "ul{padding-left:1.2em;font-size:90%}.wrong{color:#b00}.missing{color:#06c}"
    )
    return (
        f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>imat audit</title><style>{style}</style>"
        f"</head><body><h1>Label audit: {len(by_image)} images with the most suspect labels</h1>"
        f"<p>{len(rows)} issues in all, least self-confident first; red: a given label the model "
        f"contradicts (wrong label), blue: a label not given that the model sees (missing label).</p>"
        + "".join(cards)
        + "</body></html>"
    )


def main(argv: Optional[List[str]] = None) -> List[dict]:
    parser = argparse.ArgumentParser(
        allow_abbrev=False, prog="imat audit", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--workdir", default=DEFAULT_WORKDIR)
    parser.add_argument("--model", help="an exported model; default: the newest pushed in WORKDIR/serving")
    parser.add_argument(
        "--examples",
        nargs="+",
        help="TFRecord files or patterns; default: WORKDIR/data/validation/*.tfrecord.gz (with spans, the newest's)",
    )
    parser.add_argument("--label_map", help="label names and tasks; default: WORKDIR/source/label_map.csv if present")
    parser.add_argument("--output", help="prefix of the CSV and HTML; default: WORKDIR/audit/label_issues")
    parser.add_argument("--top", type=int, default=60, help="images on the contact sheet")
    parser.add_argument("--batch_size", type=int, default=64, help="examples per model call")
    args = parser.parse_args(argv)
    if args.batch_size < 1 or args.top < 1:
        parser.error("--batch_size and --top must be at least 1")
    model_dir = local_model(parser, args)
    workdir = Workdir(args.workdir)
    patterns = args.examples or default_patterns(workdir)
    if any(f"{os.sep}train{os.sep}" in p for p in patterns):
        print(
            "imat audit: warning: the model trained on the train split: it agrees with labels it memorised, "
            "so fewer issues are found than there are",
            file=sys.stderr,
        )
    try:
        image_ids, label_lists, records = read_split(patterns)
    except ValueError as e:
        parser.error(str(e))
    import tensorflow as tf

    from cli.predict import Progress
    from imat_common.features import load_label_map

    label_map_path = args.label_map or workdir.label_map
    labels = load_label_map(label_map_path).by_id() if os.path.exists(label_map_path) else {}
    names = {k: (label.name, label.task) for k, label in labels.items()}
    model = tf.saved_model.load(model_dir)
    print(f"model: {model_dir}\nauditing {len(records):,} images from {' '.join(patterns)}", flush=True)
    probabilities, errors = score(model, records, args.batch_size, Progress(len(records)))
    scored = [i for i, p in enumerate(probabilities) if p is not None]
    if not scored:
        parser.error(f"the model scored none of the {len(records)} images: see the errors above")
    num_labels = len(probabilities[scored[0]])
    try:
        given = multi_hot([label_lists[i] for i in scored], num_labels)
    except ValueError as e:
        parser.error(f"{e}: is this the model of this data's label map?")
    found = label_issues.find_label_issues(given, np.stack([probabilities[i] for i in scored]))
    found = [label_issues.LabelIssue(scored[i.row], i.label, i.given, i.probability, i.self_confidence) for i in found]
    rows = csv_rows(found, image_ids, names)

    output = args.output or os.path.join(workdir.root, "audit", "label_issues")
    os.makedirs(os.path.dirname(os.path.abspath(output)), exist_ok=True)
    with open(output + ".csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=CSV_COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    suspects = {row["image_id"] for row in rows}
    given_names = {
        image_ids[i]: [names.get(k, (str(k), ""))[0] for k in label_lists[i]]
        for i in range(len(image_ids))
        if image_ids[i] in suspects
    }
    suspect_records = {image_ids[i]: records[i] for i in range(len(image_ids)) if image_ids[i] in suspects}
    with open(output + ".html", "w") as f:
        f.write(contact_sheet(rows, given_names, suspect_records, args.top))
    failed = [(image_ids[i], e) for i, e in enumerate(errors) if e]
    if failed:
        with open(output + "_errors.txt", "w") as f:
            f.writelines(f"{image_id}: {error}\n" for image_id, error in failed)
    missing = sum(1 for r in rows if r["suggested_action"] == label_issues.MISSING)
    print(
        f"{len(scored):,} images audited ({len(failed)} the model could not score"
        + (f", listed in {output}_errors.txt" if failed else "")
        + f"): {len(rows)} label issues, {missing} missing labels and {len(rows) - missing} wrong labels, "
        f"on {len(suspects)} images"
    )
    for row in rows[:10]:
        print(
            f"  {row['rank']:>3}. {row['image_id']}: {row['suggested_action']} "
            f"{row['task'] + ': ' if row['task'] else ''}{row['label_name']} (p={row['probability']})"
        )
    print(f"written: {output}.csv and {output}.html")
    return rows


if __name__ == "__main__":
    main()
