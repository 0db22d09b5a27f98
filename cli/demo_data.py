"""The embedded default dataset: small synthetic fashion images in the iMaterialist layout.

Each image is a garment silhouette drawn on a plain background. Four tasks decide how it
looks, so every label is learnable from the pixels:
  category  t-shirt, dress, trousers, skirt, jacket (the silhouette)
  color     red, green, blue, yellow, black, white (the garment's fill)
  pattern   solid, striped, dotted, checked (drawn over the fill)
  sleeve    long, short, sleeveless (tops and dresses only)
Position, size, background shade and colour tone vary at random, deterministically from
the seed, so the same arguments always give the same bytes.

Spans (``imat demo --spans K``): K batches of images in ``span-<n>/`` folders, with image ids
that do not collide across spans, random draws seeded from the seed and the span number, and
one label map. The last span can be drawn shifted (:class:`Shift`): one colour frequent and a
darker studio, for the pipeline's drift check.

Also serves a folder over HTTP on loopback, for the demo and the tests.
"""

import contextlib
import dataclasses
import functools
import hashlib
import http.server
import json
import os
import random
import sys
import threading
from typing import Dict, Iterator, List, Optional, Tuple

from PIL import Image, ImageDraw

from imat_common import spans
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

RGB = Tuple[int, int, int]
Splits = Dict[str, List[Tuple[str, List[int]]]]


@dataclasses.dataclass(frozen=True)
class Shift:
    """How the newest demo span differs from the earlier ones, as a catalogue changes.

    Attributes:
      color: a label shift: this colour (a key of ``COLORS``) becomes frequent.
      color_share: the fraction of garments drawn in ``color``; the other colours share the
        rest evenly. Unshifted, each colour is about 1/6 of the garments.
      brightness: a studio change: the background, garment, pattern and detail shades are
        multiplied by it, so photos are darker below 1 and their JPEG byte sizes change.
    """

    color: str = "red"
    color_share: float = 0.5
    brightness: float = 0.6

    def __post_init__(self):
        if self.color not in COLORS:
            raise ValueError(f"Shift.color must be one of {list(COLORS)}, got {self.color!r}")
        if not 0.0 <= self.color_share <= 1.0:
            raise ValueError(f"Shift.color_share must be in [0, 1], got {self.color_share}")
        if self.brightness <= 0.0:
            raise ValueError(f"Shift.brightness must be > 0, got {self.brightness}")


@dataclasses.dataclass(frozen=True)
class Garment:
    """What one demo image shows: its labels, the shades it is drawn in and where it stands."""

    category: str
    color: str
    pattern: str
    sleeve: Optional[str]  # None for trousers and skirts
    background: RGB
    fill: RGB  # the garment's
    ink: RGB  # the pattern's
    detail: RGB  # a jacket's open front and collar
    cx: int  # the garment's centre, in pixels
    top: int  # its top edge, in pixels
    scale: float  # pixels per unit of a 100-unit garment

    def label_ids(self) -> List[int]:
        named = [("category", self.category), ("color", self.color), ("pattern", self.pattern), ("sleeve", self.sleeve)]
        return sorted(_label_id(task, name) for task, name in named if name)


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


def _choose_color(rng: random.Random, shift: Optional[Shift]) -> str:
    if shift is None:
        return rng.choice(list(COLORS))
    if rng.random() < shift.color_share:
        return shift.color
    return rng.choice([name for name in COLORS if name != shift.color])


def _dim(rgb, light: float) -> RGB:
    return tuple(max(0, min(255, int(round(c * light)))) for c in rgb)


def choose_garment(rng: random.Random, size: int, shift: Optional[Shift] = None) -> Garment:
    """Draws one garment's labels, shades and placement from ``rng``; writes nothing.

    Without a shift it takes the same draws, in the same order, as the demo always has, so a
    seed gives the same images as before spans existed.
    """
    category = rng.choice(CATEGORIES)
    color = _choose_color(rng, shift)
    pattern = rng.choice(PATTERNS)
    sleeve = rng.choice(SLEEVES) if category in HAS_SLEEVES else None
    shade = rng.randint(150, 205)
    background = (shade, shade, shade + rng.randint(-10, 10))
    scale = size / 130 * rng.uniform(0.85, 1.1)
    cx = size // 2 + rng.randint(-size // 12, size // 12)
    top = int(size * 0.12) + rng.randint(-size // 20, size // 20)
    fill = tuple(max(0, min(255, c + rng.randint(-20, 20))) for c in COLORS[color])
    ink = (255, 255, 255) if color == "black" else (20, 20, 20)
    light = 1.0 if shift is None else shift.brightness
    return Garment(
        category,
        color,
        pattern,
        sleeve,
        *(_dim(c, light) for c in (background, fill, ink, (60, 60, 60))),
        cx,
        top,
        scale,
    )


def draw_garment(garment: Garment, size: int) -> Image.Image:
    """The ``size`` x ``size`` picture of ``garment``."""
    g = garment
    im = Image.new("RGB", (size, size), g.background)
    sleeve = g.sleeve or "sleeveless"
    mask = Image.new("L", im.size, 0)
    _silhouette(ImageDraw.Draw(mask), g.category, sleeve, g.cx, g.top, g.scale, 255, 255)
    _silhouette(ImageDraw.Draw(im), g.category, sleeve, g.cx, g.top, g.scale, g.fill, g.detail)
    if g.pattern != "solid":
        layer = im.copy()
        _pattern(ImageDraw.Draw(layer), mask.getbbox() or (0, 0, size, size), g.pattern, g.ink)
        im.paste(layer, mask=mask)
    return im


def render(rng: random.Random, size: int, shift: Optional[Shift] = None) -> Tuple[Image.Image, List[int]]:
    """Draws one random garment; returns the image and its label ids."""
    garment = choose_garment(rng, size, shift)
    return draw_garment(garment, size), garment.label_ids()


def _split_of(index: int, num_images: int) -> str:
    edge = 0.0
    for name, fraction in SPLIT_FRACTIONS:
        edge += fraction
        if index < round(edge * num_images):
            return name
    return SPLIT_FRACTIONS[-1][0]


def write_images(
    out_dir: str,
    num_images: int = 300,
    size: int = 160,
    seed: int = 0,
    shift: Optional[Shift] = None,
    first_id: int = 1,
    with_label_map: bool = True,
) -> Splits:
    """Writes ``images/<id>.jpg`` (ids from ``first_id``) and returns split -> [(image id, label ids)].

    Also writes ``splits.json`` and, with ``with_label_map``, ``label_map.csv``.
    """
    rng = random.Random(seed)
    os.makedirs(os.path.join(out_dir, "images"), exist_ok=True)
    splits: Splits = {name: [] for name, _ in SPLIT_FRACTIONS}
    for index in range(num_images):
        im, labels = render(rng, size, shift)
        image_id = str(first_id + index)
        im.save(os.path.join(out_dir, "images", f"{image_id}.jpg"), quality=92)
        splits[_split_of(index, num_images)].append((image_id, labels))
    if with_label_map:
        write_label_map(label_table(), os.path.join(out_dir, LABEL_MAP_FILE))
    with open(os.path.join(out_dir, "splits.json"), "w") as f:
        json.dump(splits, f)
    return splits


def span_folder(root: str, span: int) -> str:
    """``<root>/span-<span>``."""
    return os.path.join(root, spans.folder(span))


def span_seed(seed: int, span: int) -> int:
    """The random seed of span ``span``: deterministic, and different for every (seed, span)."""
    return int.from_bytes(hashlib.sha256(f"imat-demo/{seed}/{span}".encode()).digest()[:8], "big")


def span_shift(span: int, num_spans: int, shift: Optional[Shift]) -> Optional[Shift]:
    """The shift span ``span`` of ``num_spans`` is drawn with: ``shift`` for the last of 2 or more, else None."""
    return shift if num_spans >= 2 and span == num_spans else None


def write_spans(
    out_dir: str,
    num_spans: int,
    num_images: int = 300,
    size: int = 160,
    seed: int = 0,
    shift: Optional[Shift] = Shift(),
) -> Dict[int, Splits]:
    """Writes spans 1..``num_spans`` into ``out_dir/span-<n>`` (as ``write_images``) and one
    ``out_dir/label_map.csv``; returns span -> splits.

    Span n's image ids are ``(n - 1) * num_images + 1 ..``, so none collides across spans; the
    last span is drawn with ``shift`` (None: every span from the same distribution).
    """
    spans = {}
    for span in range(1, num_spans + 1):
        spans[span] = write_images(
            span_folder(out_dir, span),
            num_images,
            size,
            seed=span_seed(seed, span),
            shift=span_shift(span, num_spans, shift),
            first_id=(span - 1) * num_images + 1,
            with_label_map=False,
        )
    write_label_map(label_table(), os.path.join(out_dir, LABEL_MAP_FILE))
    return spans


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

    def handle_error(self, request, client_address) -> None:
        """Stays quiet when the client hung up; any other error prints its traceback, as socketserver does.

        A downloader closes its idle keep-alive connections and gives up on slow answers: each such
        connection would otherwise print a traceback on the console of the demo (or of a test).
        """
        if isinstance(sys.exc_info()[1], ConnectionError):
            return
        super().handle_error(request, client_address)


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
