"""``imat predict IMAGE...``: tag images with the pushed model; labels with names, tasks and scores."""
import argparse
import os
from typing import List, Optional

from pipeline import runs

DEFAULT_WORKDIR = "imat-demo"


def load_images(paths: List[str]) -> List[bytes]:
    """Reads image files and normalises them as the download job stores images (RGB JPEG).

    Raises:
      ValueError: naming the file that is missing or is not an image.
    """
    from components.download.images import ImageError, ImageSettings, process_image

    out = []
    for path in paths:
        if not os.path.isfile(path):
            raise ValueError(f"{path}: no such file")
        with open(path, "rb") as f:
            data = f.read()
        try:
            out.append(process_image(data, ImageSettings()).jpeg)
        except ImageError as e:
            raise ValueError(f"{path}: {e}") from None
    return out


def predict(model_dir: str, jpegs: List[bytes]) -> dict:
    import tensorflow as tf

    loaded = tf.saved_model.load(model_dir)
    outputs = loaded.signatures["predict_images"](images=tf.constant(jpegs))
    return {k: v.numpy() for k, v in outputs.items()}


def main(argv: Optional[List[str]] = None) -> None:
    parser = argparse.ArgumentParser(prog="imat predict", description=__doc__)
    parser.add_argument("images", nargs="+", help="image files (JPEG, PNG, WebP, GIF, BMP)")
    parser.add_argument("--workdir", default=DEFAULT_WORKDIR)
    parser.add_argument("--model", help="a SavedModel folder; default: the newest pushed in WORKDIR/serving")
    parser.add_argument("--label_map", help="for task names; default: WORKDIR/source/label_map.csv if present")
    parser.add_argument("--top", type=int, default=3, help="also show the N highest scores per image")
    args = parser.parse_args(argv)
    model_dir = args.model or runs.latest_pushed_model(os.path.join(args.workdir, "serving"))
    if not model_dir or not os.path.isdir(model_dir):
        parser.error(f"no pushed model in {os.path.join(args.workdir, 'serving')}: run `imat run` first, or pass --model")
    try:
        jpegs = load_images(args.images)
    except ValueError as e:
        parser.error(str(e))
    from trainer.features import load_label_map

    label_map_path = args.label_map or os.path.join(args.workdir, "source", "label_map.csv")
    labels = load_label_map(label_map_path).by_id() if os.path.exists(label_map_path) else {}
    outputs = predict(model_dir, jpegs)
    print(f"model: {model_dir}")
    for i, path in enumerate(args.images):
        probabilities = outputs["probabilities"][i]
        decided = [int(k) for k in outputs["label_ids"][i] if k]
        print(f"{path}:")
        for label_id in decided or []:
            label = labels.get(label_id)
            name = label.name if label else outputs["label_names"][i][label_id - 1].decode()
            task = f"{label.task}: " if label else ""
            print(f"  {task}{name} ({probabilities[label_id - 1]:.2f})")
        if not decided:
            print("  no label above its threshold")
        top = probabilities.argsort()[::-1][:args.top]
        print("  top scores: " + ", ".join(
            f"{labels[k + 1].name if k + 1 in labels else k + 1} {probabilities[k]:.2f}" for k in top))
