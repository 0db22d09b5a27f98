"""``imat predict IMAGE_OR_FOLDER...``: tag images with the pushed model; labels with names, tasks and scores.

Images stream through the model in batches (``--batch_size``): memory stays flat over
thousands of images, results print as each batch is done, and a progress line on stderr
counts images and images/s. A folder stands for the image files directly inside it.
For a whole split of TFRecords (the competition's test file) use ``imat submission``.

A file that is not a usable image (empty, not an image, cut short, a pixel bomb over the
download job's pixel limit) gets its own line on stderr, ``imat predict: FILE: reason``; the
other images are still scored, and the command exits 1 at the end.
"""

import argparse
import os
import sys
import time
from typing import Iterable, Iterator, List, Optional, Tuple

from imat_common import image_policy, serving
from imat_common.workdir import DEFAULT_WORKDIR, Workdir
from cli.flags import local_model

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".gif", ".bmp")


def expand(paths: Iterable[str]) -> List[str]:
    """The paths, with each folder replaced by its image files (sorted)."""
    out = []
    for path in paths:
        if os.path.isdir(path):
            out += sorted(
                os.path.join(path, name)
                for name in os.listdir(path)
                if name.lower().endswith(IMAGE_SUFFIXES) and os.path.isfile(os.path.join(path, name))
            )
        else:
            out.append(path)
    return out


def load_image(path: str) -> bytes:
    """Reads an image file and normalises it as the download job stores images (RGB JPEG).

    Raises:
      ValueError: naming the file that is missing or is not an image.
    """
    from components.download.images import ImageError, ImageSettings, process_image

    if not os.path.isfile(path):
        raise ValueError(f"{path}: no such file")
    with open(path, "rb") as f:
        data = f.read()
    try:
        return process_image(data, ImageSettings()).jpeg
    except ImageError as e:
        raise ValueError(f"{path}: {e}") from None


def load_images(paths: List[str]) -> List[bytes]:
    """``load_image`` of every path, in order."""
    return [load_image(path) for path in paths]


def try_load_image(path: str) -> Tuple[Optional[bytes], str]:
    """``load_image``, with a bad file as (None, "FILE: reason") instead of an exception."""
    try:
        return load_image(path), ""
    except ValueError as e:
        return None, str(e)


def batches(paths: List[str], batch_size: int) -> Iterator[Tuple[List[str], List[Optional[bytes]], List[str]]]:
    """(paths, JPEG bytes, errors) ``batch_size`` at a time; each image is read only when its batch is due.

    A file that does not load has None for its bytes and "FILE: reason" for its error ("" for the others).
    """
    if batch_size < 1:
        raise ValueError(f"batch size must be at least 1, got {batch_size}")
    for start in range(0, len(paths), batch_size):
        chunk = paths[start : start + batch_size]
        loaded = [try_load_image(path) for path in chunk]
        yield chunk, [jpeg for jpeg, _ in loaded], [error for _, error in loaded]


class Progress:
    """``done / total images, rate`` on a stream: redrawn in place on a terminal, a line every ``every_s`` otherwise."""

    def __init__(self, total: int, stream=None, every_s: float = 10.0):
        self.total, self.done = total, 0
        self.stream = stream or sys.stderr
        self.every_s = every_s
        self.start = self.last = time.monotonic()

    def line(self) -> str:
        rate = self.done / max(time.monotonic() - self.start, 1e-9)
        return f"{self.done:,} / {self.total:,} images, {rate:.1f} images/s"

    def update(self, n: int) -> None:
        self.done += n
        now = time.monotonic()
        if self.stream.isatty():
            self.stream.write("\r" + self.line())
        elif now - self.last >= self.every_s or self.done == self.total:
            self.stream.write(self.line() + "\n")
            self.last = now
        if self.stream.isatty() and self.done == self.total:
            self.stream.write("\n")
        self.stream.flush()


def predict(model_dir_or_model, jpegs: List[bytes]) -> dict:
    """The ``predict_images`` signature's outputs (numpy) for a batch of JPEGs."""
    import tensorflow as tf

    loaded = tf.saved_model.load(model_dir_or_model) if isinstance(model_dir_or_model, str) else model_dir_or_model
    outputs = loaded.signatures[serving.PREDICT_IMAGES](images=tf.constant(jpegs))
    return {k: v.numpy() for k, v in outputs.items()}


def predict_rows(model, jpegs: List[Optional[bytes]]) -> Tuple[List[Optional[dict]], List[str]]:
    """Each image's ``predict_images`` outputs, or None and the model's reason where it refuses it.

    Rows already None (files that did not load) are skipped; a row the model cannot decode
    fails alone (``image_policy.score_rows``).
    """
    keep = [i for i, jpeg in enumerate(jpegs) if jpeg is not None]
    scored, errors = image_policy.score_rows(lambda batch: predict(model, batch), [jpegs[i] for i in keep])
    rows, reasons = [None] * len(jpegs), [""] * len(jpegs)
    for i, row, error in zip(keep, scored, errors):
        rows[i], reasons[i] = row, error
    return rows, reasons


def format_image(path: str, probabilities, label_ids, label_names, labels: dict, top: int) -> List[str]:
    """The lines printed for one image: decided labels with task and score, then the top scores."""
    decided = [int(k) for k in label_ids if k]
    lines = [f"{path}:"]
    for label_id in decided:
        label = labels.get(label_id)
        name = label.name if label else label_names[label_id - 1].decode()
        lines.append(f"  {label.task + ': ' if label else ''}{name} ({probabilities[label_id - 1]:.2f})")
    if not decided:
        lines.append("  no label above its threshold")
    best = probabilities.argsort()[::-1][:top]
    lines.append(
        "  top scores: "
        + ", ".join(f"{labels[k + 1].name if k + 1 in labels else k + 1} {probabilities[k]:.2f}" for k in best)
    )
    return lines


def main(argv: Optional[List[str]] = None) -> None:
    parser = argparse.ArgumentParser(
        allow_abbrev=False,
        prog="imat predict",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("images", nargs="+", help="image files (JPEG, PNG, WebP, GIF, BMP) or folders of them")
    parser.add_argument("--workdir", default=DEFAULT_WORKDIR)
    parser.add_argument("--model", help="a SavedModel folder; default: the newest pushed in WORKDIR/serving")
    parser.add_argument("--label_map", help="for task names; default: WORKDIR/source/label_map.csv if present")
    parser.add_argument("--top", type=int, default=3, help="also show the N highest scores per image")
    parser.add_argument("--batch_size", type=int, default=64, help="images per model call")
    args = parser.parse_args(argv)
    if args.batch_size < 1:
        parser.error(f"--batch_size must be at least 1, got {args.batch_size}")
    model_dir = local_model(parser, args)
    paths = expand(args.images)
    if not paths:
        parser.error(f"no image files in {args.images}")
    import tensorflow as tf

    from imat_common.features import load_label_map

    label_map_path = args.label_map or Workdir(args.workdir).label_map
    labels = load_label_map(label_map_path).by_id() if os.path.exists(label_map_path) else {}
    model = tf.saved_model.load(model_dir)
    print(f"model: {model_dir}")
    progress = Progress(len(paths))
    failed = 0
    for chunk, jpegs, load_errors in batches(paths, args.batch_size):
        rows, model_errors = predict_rows(model, jpegs)
        for path, row, load_error, model_error in zip(chunk, rows, load_errors, model_errors):
            if row is None:
                # One line per bad file, and the batch goes on: the others in it are still scored.
                failed += 1
                sys.stdout.flush()
                print(f"imat predict: {load_error or f'{path}: {model_error}'}", file=sys.stderr)
                continue
            print(
                "\n".join(
                    format_image(
                        path,
                        row[serving.PROBABILITIES],
                        row[serving.LABEL_IDS],
                        row[serving.LABEL_NAMES],
                        labels,
                        args.top,
                    )
                )
            )
        sys.stdout.flush()
        progress.update(len(chunk))
    if failed:
        print(f"imat predict: {failed} of {len(paths)} images could not be scored (named above)", file=sys.stderr)
        sys.exit(1)
