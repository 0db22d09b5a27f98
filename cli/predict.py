"""``imat predict IMAGE_OR_FOLDER...``: tag images with the pushed model; labels with names, tasks and scores.

Images stream through the model in batches (``--batch_size``): memory stays flat over
thousands of images, results print as each batch is done, and a progress line on stderr
counts images and images/s. A folder stands for the image files directly inside it.
For a whole split of TFRecords (the competition's test file) use ``imat submission``.
"""

import argparse
import os
import sys
import time
from typing import Iterable, Iterator, List, Optional, Tuple

from imat_common import serving
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


def batches(paths: List[str], batch_size: int) -> Iterator[Tuple[List[str], List[bytes]]]:
    """(paths, JPEG bytes) ``batch_size`` at a time; each image is read only when its batch is due."""
    if batch_size < 1:
        raise ValueError(f"batch size must be at least 1, got {batch_size}")
    for start in range(0, len(paths), batch_size):
        chunk = paths[start : start + batch_size]
        yield chunk, load_images(chunk)


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
        prog="imat predict", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
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
    try:
        for chunk, jpegs in batches(paths, args.batch_size):
            outputs = predict(model, jpegs)
            for i, path in enumerate(chunk):
                print(
                    "\n".join(
                        format_image(
                            path,
                            outputs[serving.PROBABILITIES][i],
                            outputs[serving.LABEL_IDS][i],
                            outputs[serving.LABEL_NAMES][i],
                            labels,
                            args.top,
                        )
                    )
                )
            sys.stdout.flush()
            progress.update(len(chunk))
    except ValueError as e:
        parser.error(str(e))
