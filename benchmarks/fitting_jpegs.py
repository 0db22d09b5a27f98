"""JPEGs that already fit: stored as fetched (less metadata) against re-encoded, same run.

The download job stores an RGB JPEG that needs no resize and is no finer than ``--jpeg_quality``
as fetched, less its metadata segments (``images.strip_metadata``); before, it decoded and
re-encoded every one at that quality (OpenCV, as it still does the finer ones). For each photo
this runs both ways and reports, over the photos the job keeps and over all of them: CPU
milliseconds per image (one thread, best of ``--reps``), stored bytes, and how far the stored
pixels are from the fetched ones (mean absolute difference, 0-255, decoded by Pillow).

Photos: ``--images DIR`` (its .jpg files, as they are), or generated scenes at ``--size`` px saved
at a spread of qualities with EXIF and an ICC profile, as shops' thumbnails come.

  .venv/bin/python benchmarks/fitting_jpegs.py
  .venv/bin/python benchmarks/fitting_jpegs.py --images PATH/TO/fashion-products-2k/images
"""

import argparse
import io
import os
import random
import sys
import time

import numpy as np
from PIL import Image

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from cli import demo_data
from components.download import images as images_lib


def generated(count: int, size: int) -> list:
    rng, noise = random.Random(0), np.random.default_rng(0)
    exif = Image.Exif()
    exif[0x0112] = 1
    out = []
    for i in range(count):
        im, _ = demo_data.render(rng, size)
        pixels = np.asarray(im, np.int16) + noise.integers(-8, 9, (size, size, 3), dtype=np.int16)
        buf = io.BytesIO()
        Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(
            buf, format="JPEG", quality=(60, 75, 85, 95)[i % 4], exif=exif.tobytes(), icc_profile=b"\0" * 3000
        )
        out.append(buf.getvalue())
    return out


def reencoded(data: bytes, settings: images_lib.ImageSettings) -> bytes:
    """The job's way before: every check the same, then decoded and encoded again by OpenCV."""
    as_fetched = images_lib._as_fetched
    images_lib._as_fetched = lambda *args: None  # a re-encode is due, as it always was
    try:
        return images_lib.process_image(data, settings).jpeg
    finally:
        images_lib._as_fetched = as_fetched


def cpu_ms(fn, photos: list, reps: int) -> float:
    best = float("inf")
    for _ in range(reps):
        start = time.process_time()
        for data in photos:
            fn(data)
        best = min(best, (time.process_time() - start) / len(photos))
    return 1000 * best


def pixels(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"), np.float64)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", help="a folder of .jpg photos (default: generated ones)")
    parser.add_argument("--count", type=int, default=200, help="generated photos")
    parser.add_argument("--size", type=int, default=240, help="generated photos' side, px")
    parser.add_argument("--jpeg_quality", type=int, default=images_lib.ImageSettings.jpeg_quality)
    parser.add_argument("--reps", type=int, default=3)
    args = parser.parse_args(argv)
    settings = images_lib.ImageSettings(jpeg_quality=args.jpeg_quality)
    if args.images:
        names = sorted(n for n in os.listdir(args.images) if n.lower().endswith((".jpg", ".jpeg")))
        photos = [open(os.path.join(args.images, n), "rb").read() for n in names]
    else:
        photos = generated(args.count, args.size)
    fitting = []
    for data in photos:
        with Image.open(io.BytesIO(data)) as im:
            if im.mode == "RGB" and max(im.size) <= settings.max_size:
                fitting.append(data)
    stored = [images_lib.process_image(data, settings).jpeg for data in fitting]
    kept = [d for d, s in zip(fitting, stored) if s.endswith(d[d.index(b"\xff\xda") :])]
    print(
        f"{len(photos)} photos, {len(fitting)} RGB ones that fit {settings.max_size} px; the job keeps "
        f"{len(kept)} as fetched (no finer than quality {args.jpeg_quality}) and re-encodes the rest\n"
    )
    print("| photos | way | CPU ms / image | stored bytes / image | mean abs difference from the fetched pixels |")
    print("|---|---|---|---|---|")
    for label, group in (("kept as fetched", kept), ("all that fit", fitting)):
        if not group:
            continue
        source = [pixels(d) for d in group]
        ways = (
            ("the job", lambda d: images_lib.process_image(d, settings).jpeg),
            ("re-encoded (before)", lambda d: reencoded(d, settings)),
        )
        for way, fn in ways:
            out = [fn(d) for d in group]
            diff = np.mean([np.abs(pixels(o) - s).mean() for o, s in zip(out, source)])
            print(
                f"| {label} ({len(group)}) | {way} | {cpu_ms(fn, group, args.reps):.3f} | "
                f"{np.mean([len(o) for o in out]):,.0f} | {diff:.2f} |"
            )
        print(f"| {label} ({len(group)}) | fetched | | {np.mean([len(d) for d in group]):,.0f} | 0 |")


if __name__ == "__main__":
    main()
