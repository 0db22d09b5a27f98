"""The embedded default dataset: small synthetic fashion images in the iMaterialist layout.

Each image is a garment silhouette drawn on a plain background. Four tasks decide how it
looks, so every label is learnable from the pixels:
  category  t-shirt, dress, trousers, skirt, jacket (the silhouette)
  color     red, green, blue, yellow, black, white (the garment's fill)
  pattern   solid, striped, dotted, checked (drawn over the fill)
  sleeve    long, short, sleeveless (tops and dresses only)
Position, size, background shade and colour tone vary at random, deterministically from
the seed, so the same arguments always give the same bytes.

Also serves a folder over HTTP on loopback, for the demo and the tests.
"""

import contextlib
import functools
import http.server
import json
import os
import random
import threading
from typing import Dict, Iterator, List, Tuple

from PIL import Image, ImageDraw

from imat_common.features import Label, write_label_map
from imat_common.workdir import LABEL_MAP_FILE

CATEGORIES = ["t-shirt", "dress", "trousers", "skirt", "jacket"]
COLORS = {
    "red": (200, 30, 40),
    "green": (40, 150, 60),
    "blue": (40, 70, 190),
    "yellow": (235, 205, 40),
    "black": (25, 25, 25),
    "white": (245, 245, 245),
}
PATTERNS = ["solid", "striped", "dotted", "checked"]
SLEEVES = ["long-sleeve", "short-sleeve", "sleeveless"]
TASKS = [("category", CATEGORIES), ("color", list(COLORS)), ("pattern", PATTERNS), ("sleeve", SLEEVES)]
SPLIT_FRACTIONS = (("train", 0.7), ("validation", 0.2), ("test", 0.1))
HAS_SLEEVES = ("t-shirt", "dress", "jacket")


def label_table() -> List[Label]:
    """The demo's labels, numbered from 1 task by task like the competition's."""
    labels = []
    for task_id, (task, names) in enumerate(TASKS, start=1):
        for name in names:
            labels.append(Label(len(labels) + 1, task_id, name, task))
    return labels


def _label_id(task: str, name: str) -> int:
    return next(label.label_id for label in label_table() if label.task == task and label.name == name)


def _pattern(draw: ImageDraw.ImageDraw, box, pattern: str, ink) -> None:
    x0, y0, x1, y1 = box
    step = max(4, (x1 - x0) // 6)
    if pattern in ("striped", "checked"):
        for y in range(y0, y1, step):
            draw.rectangle([x0, y, x1, y + step // 3], fill=ink)
    if pattern == "checked":
        for x in range(x0, x1, step):
            draw.rectangle([x, y0, x + step // 3, y1], fill=ink)
    if pattern == "dotted":
        r = max(1, step // 5)
        for y in range(y0 + step // 2, y1, step):
            for x in range(x0 + step // 2, x1, step):
                draw.ellipse([x - r, y - r, x + r, y + r], fill=ink)


def _silhouette(draw, category: str, sleeve: str, cx: int, top: int, s: float, fill, detail) -> None:
    """Draws the garment shape; ``s`` is pixels per unit of a 100-unit garment."""
    u = lambda v: int(round(v * s))
    if category in ("t-shirt", "jacket", "dress"):
        body_bottom = top + u(60 if category != "dress" else 95)
        if category == "dress":
            draw.polygon(
                [(cx - u(18), top), (cx + u(18), top), (cx + u(38), body_bottom), (cx - u(38), body_bottom)], fill=fill
            )
        else:
            draw.rectangle([cx - u(25), top, cx + u(25), body_bottom], fill=fill)
        if category == "jacket":  # open front and collar tell it from a t-shirt
            draw.line([cx, top, cx, body_bottom], fill=detail, width=max(1, u(3)))
            draw.polygon([(cx - u(12), top), (cx, top + u(14)), (cx + u(12), top)], fill=detail)
        arm = {"long-sleeve": 60, "short-sleeve": 22, "sleeveless": 0}[sleeve]
        if arm:
            for side in (-1, 1):
                shoulder = cx + side * u(22 if category != "dress" else 15)
                start = (shoulder, top + u(8))
                end = (shoulder + side * u(arm * 0.55), top + u(8 + arm * 0.8))
                draw.line([start, end], fill=fill, width=u(16))
                draw.ellipse([start[0] - u(8), start[1] - u(8), start[0] + u(8), start[1] + u(8)], fill=fill)
    elif category == "trousers":
        draw.rectangle([cx - u(24), top, cx + u(24), top + u(15)], fill=fill)
        draw.polygon(
            [(cx - u(24), top + u(15)), (cx - u(2), top + u(15)), (cx - u(6), top + u(95)), (cx - u(26), top + u(95))],
            fill=fill,
        )
        draw.polygon(
            [(cx + u(2), top + u(15)), (cx + u(24), top + u(15)), (cx + u(26), top + u(95)), (cx + u(6), top + u(95))],
            fill=fill,
        )
    elif category == "skirt":
        draw.polygon(
            [(cx - u(20), top), (cx + u(20), top), (cx + u(40), top + u(55)), (cx - u(40), top + u(55))], fill=fill
        )


def render(rng: random.Random, size: int) -> Tuple[Image.Image, List[int]]:
    """Draws one random garment; returns the image and its label ids."""
    category = rng.choice(CATEGORIES)
    color = rng.choice(list(COLORS))
    pattern = rng.choice(PATTERNS)
    sleeve = rng.choice(SLEEVES) if category in HAS_SLEEVES else None
    shade = rng.randint(150, 205)
    im = Image.new("RGB", (size, size), (shade, shade, shade + rng.randint(-10, 10)))
    draw = ImageDraw.Draw(im)
    scale = size / 130 * rng.uniform(0.85, 1.1)
    cx = size // 2 + rng.randint(-size // 12, size // 12)
    top = int(size * 0.12) + rng.randint(-size // 20, size // 20)
    fill = tuple(max(0, min(255, c + rng.randint(-20, 20))) for c in COLORS[color])
    mask = Image.new("L", im.size, 0)
    _silhouette(ImageDraw.Draw(mask), category, sleeve or "sleeveless", cx, top, scale, 255, 255)
    _silhouette(draw, category, sleeve or "sleeveless", cx, top, scale, fill, (60, 60, 60))
    if pattern != "solid":
        ink = (255, 255, 255) if color == "black" else (20, 20, 20)
        layer = im.copy()
        _pattern(ImageDraw.Draw(layer), mask.getbbox() or (0, 0, size, size), pattern, ink)
        im.paste(layer, mask=mask)
    labels = [_label_id("category", category), _label_id("color", color), _label_id("pattern", pattern)]
    if sleeve:
        labels.append(_label_id("sleeve", sleeve))
    return im, sorted(labels)


def _split_of(index: int, num_images: int) -> str:
    edge = 0.0
    for name, fraction in SPLIT_FRACTIONS:
        edge += fraction
        if index < round(edge * num_images):
            return name
    return SPLIT_FRACTIONS[-1][0]


def write_images(
    out_dir: str, num_images: int = 300, size: int = 160, seed: int = 0
) -> Dict[str, List[Tuple[str, List[int]]]]:
    """Writes ``images/<id>.jpg`` and returns split -> [(image id, label ids)]."""
    rng = random.Random(seed)
    os.makedirs(os.path.join(out_dir, "images"), exist_ok=True)
    splits: Dict[str, List[Tuple[str, List[int]]]] = {name: [] for name, _ in SPLIT_FRACTIONS}
    for index in range(num_images):
        im, labels = render(rng, size)
        image_id = str(index + 1)
        im.save(os.path.join(out_dir, "images", f"{image_id}.jpg"), quality=92)
        splits[_split_of(index, num_images)].append((image_id, labels))
    write_label_map(label_table(), os.path.join(out_dir, LABEL_MAP_FILE))
    with open(os.path.join(out_dir, "splits.json"), "w") as f:
        json.dump(splits, f)
    return splits


def write_json(out_dir: str, base_url: str) -> Dict[str, str]:
    """Writes train/validation/test JSON whose URLs point at ``base_url``; returns their paths.

    ``test.json`` has images only, like the competition's; its labels go to
    ``test_labels.json`` for scoring.
    """
    base = base_url if base_url.endswith("/") else base_url + "/"
    with open(os.path.join(out_dir, "splits.json")) as f:
        splits = json.load(f)
    paths = {}
    for name, items in splits.items():
        doc = {"images": [{"imageId": i, "url": f"{base}images/{i}.jpg"} for i, _ in items]}
        annotations = [{"imageId": i, "labelId": [str(k) for k in labels]} for i, labels in items]
        if name == "test":
            with open(os.path.join(out_dir, "test_labels.json"), "w") as f:
                json.dump({"annotations": annotations}, f)
        else:
            doc["annotations"] = annotations
        paths[name] = os.path.join(out_dir, f"{name}.json")
        with open(paths[name], "w") as f:
            json.dump(doc, f)
    return paths


class LoopbackServer(http.server.ThreadingHTTPServer):
    # socketserver's default backlog of 5 drops the SYNs of a downloader's many parallel
    # connections, and each dropped SYN costs a 1 s retransmit.
    request_queue_size = 256
    daemon_threads = True


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format, *args):
        """Keeps request logs off the console; errors still raise."""


@contextlib.contextmanager
def serve_folder(folder: str, port: int = 0) -> Iterator[str]:
    """Serves ``folder`` over HTTP on 127.0.0.1 in a background thread; yields its base URL."""
    handler = functools.partial(_QuietHandler, directory=folder)
    server = LoopbackServer(("127.0.0.1", port), handler)
    thread = threading.Thread(target=server.serve_forever, name="demo-http", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()
