"""The download job's resize filters: quality and CPU by ratio, Pillow against OpenCV, same run.

After the JPEG decoder's DCT reduction the image is between 1 and 2 times the target size (at 2
the DCT halves it again and nothing is left to resize). For each ratio this resizes images of that
size (photos the DCT did not reduce) to the target with Pillow's antialiasing bilinear filter,
OpenCV's bilinear and OpenCV's area filter, and scores each against a Lanczos resize of the same
image (PSNR, dB, higher is closer), with the CPU milliseconds of the resize alone, one thread. Two
kinds of image: generated scenes with sensor-like noise, and stripes near the target's Nyquist
frequency (the worst case for aliasing). This is where ``_LINEAR_MAX_RATIO`` and
``_AREA_MAX_RATIO`` in ``components/download/images.py`` come from.

Then the whole image work on photos the DCT reduces first: the job's ``process_image`` (the filter
``resize_filter`` picks, named in the last column), the job's way before OpenCV (Pillow: the same
DCT reduction, its bilinear filter) and img2dataset's way (a full decode, OpenCV's area filter),
all at the same JPEG quality, each stored JPEG scored against a Lanczos resize of the full image,
with the CPU of the whole of it. This is where ``_REDUCED_LINEAR_MAX_RATIO`` comes from.

  .venv/bin/python benchmarks/resize_quality.py
  .venv/bin/python benchmarks/resize_quality.py --target 299 --images 20 --ratios 1.1 1.2 1.5 --photos 604 640
"""

import argparse
import io
import os
import random
import sys
import time

import cv2
import numpy as np
from PIL import Image

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from cli import demo_data
from components.download import images as images_lib

FILTERS = ("Pillow bilinear", "OpenCV bilinear", "OpenCV area")


def scenes(size: int, count: int, seed: int) -> list:
    rng, noise = random.Random(seed), np.random.default_rng(seed)
    out = []
    for _ in range(count):
        im, _ = demo_data.render(rng, size)
        pixels = np.asarray(im, dtype=np.int16) + noise.integers(-12, 13, (size, size, 3), dtype=np.int16)
        out.append(np.clip(pixels, 0, 255).astype(np.uint8))
    return out


def stripes(size: int, count: int, seed: int = 0) -> list:
    """Periods from 2.2 to 3.6 pixels, across and diagonal, over a gradient."""
    x = np.arange(size, dtype=np.float64)
    out = []
    for period in np.linspace(2.2, 3.6, count):
        red = np.broadcast_to(127 + 90 * np.sin(2 * np.pi * x[None, :] / period), (size, size))
        green = 127 + 60 * np.sin(2 * np.pi * (x[None, :] + x[:, None]) / (1.4 * period))
        blue = np.broadcast_to(x[:, None] * 255 / size, (size, size))
        out.append(np.clip(np.stack([red, green, blue], axis=-1), 0, 255).astype(np.uint8))
    return out


def as_decoded(pixels: np.ndarray) -> Image.Image:
    """Through a quality-90 JPEG, as the job receives images."""
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="JPEG", quality=90)
    return Image.open(io.BytesIO(buf.getvalue())).convert("RGB")


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    return float(10 * np.log10(255**2 / np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)))


def resized(rgb: Image.Image, target: int) -> dict:
    """Each filter's resize to target x target: (RGB pixels, CPU seconds)."""
    bgr = np.ascontiguousarray(np.asarray(rgb)[:, :, ::-1])
    t0 = time.process_time()
    pillow = np.asarray(rgb.resize((target, target), Image.Resampling.BILINEAR, reducing_gap=3.0))
    out = {"Pillow bilinear": (pillow, time.process_time() - t0)}
    for name, flag in (("OpenCV bilinear", cv2.INTER_LINEAR), ("OpenCV area", cv2.INTER_AREA)):
        t0 = time.process_time()
        pixels = cv2.resize(bgr, (target, target), interpolation=flag)
        out[name] = (pixels[:, :, ::-1], time.process_time() - t0)
    return out


def _pillow_as_before(data: bytes, target: int) -> bytes:
    drafted = Image.open(io.BytesIO(data))
    drafted.draft("RGB", (target, target))
    rgb = drafted if drafted.mode == "RGB" else drafted.convert("RGB")
    out = io.BytesIO()
    rgb.resize((target, target), Image.Resampling.BILINEAR, reducing_gap=3.0).save(out, format="JPEG", quality=90)
    return out.getvalue()


def _full_decode_area(data: bytes, target: int) -> bytes:
    bgr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    area = cv2.resize(bgr, (target, target), interpolation=cv2.INTER_AREA)
    return cv2.imencode(".jpg", area, [cv2.IMWRITE_JPEG_QUALITY, 90])[1].tobytes()


def whole_work(target: int, sizes: list, count: int) -> None:
    """The job's image work against Pillow's and a full decode with an area resize: PSNR and CPU."""
    print(
        f"\nThe whole image work, photos of S x S px to {target} px, quality 90, {count} images of each kind; "
        "PSNR (dB) of the stored JPEG against a Lanczos resize of the full image, CPU ms per image, one thread:"
    )
    settings = images_lib.ImageSettings(max_size=target, jpeg_quality=90)
    ways = {
        "the job": lambda data: images_lib.process_image(data, settings).jpeg,
        "Pillow, as before": lambda data: _pillow_as_before(data, target),
        "full decode, OpenCV area": lambda data: _full_decode_area(data, target),
    }
    print(
        f"{'S':>5} {'kind':>8} {'after the DCT':>13}  " + "  ".join(f"{w:>24}" for w in ways) + "  the job resizes with"
    )
    for size in sizes:
        after = -(-size // images_lib.dct_scale(size, size, target, target))
        job_filter = images_lib.resize_filter(size, size, target, target)
        for kind, make in (("scenes", scenes), ("stripes", stripes)):
            datas, references = [], []
            for pixels in make(size, count, seed=size):
                buf = io.BytesIO()
                Image.fromarray(pixels).save(buf, format="JPEG", quality=90)
                datas.append(buf.getvalue())
                full = Image.open(io.BytesIO(datas[-1])).convert("RGB")
                references.append(np.asarray(full.resize((target, target), Image.Resampling.LANCZOS)))
            cells = []
            for way in ways.values():  # each way over every image in turn, so none warms the cache for another
                t0 = time.process_time()
                stored = [way(data) for data in datas]
                seconds = time.process_time() - t0
                scores = [
                    psnr(np.asarray(Image.open(io.BytesIO(j)).convert("RGB")), r) for j, r in zip(stored, references)
                ]
                cells.append(f"{np.mean(scores):6.2f} dB {1000 * seconds / count:5.2f} ms")
            print(f"{size:5d} {kind:>8} {after:>10} px  " + "  ".join(f"{c:>24}" for c in cells) + f"  {job_filter}")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--target", type=int, default=299)
    parser.add_argument("--images", type=int, default=20, help="images of each kind per ratio")
    parser.add_argument(
        "--ratios", type=float, nargs="+", default=[1.05, 1.1, 1.15, 1.2, 1.25, 1.3, 1.4, 1.5, 1.6, 1.7, 1.75, 1.8, 1.9]
    )
    parser.add_argument(
        "--photos",
        type=int,
        nargs="+",
        default=[600, 604, 608, 640, 720, 900, 1200],
        help="sides of the whole-work photos",
    )
    args = parser.parse_args(argv)
    for ratio in args.ratios:
        if not args.target < round(args.target * ratio) < 2 * args.target:
            parser.error(f"--ratios: {ratio} is not between 1 and 2: the decoder's DCT reduction covers the rest")
    cv2.setNumThreads(1)
    print(
        f"Resize to {args.target} px, {args.images} images of each kind per ratio; PSNR (dB) against a Lanczos "
        "resize of the full image, and CPU ms of the resize alone, one thread:"
    )
    print(f"{'ratio':>5} {'kind':>8}  " + "  ".join(f"{n:>21}" for n in FILTERS) + "  the job resizes with")
    for ratio in args.ratios:
        size = round(args.target * ratio)
        job = images_lib.resize_filter(size, size, args.target, args.target)
        for kind, make in (("scenes", scenes), ("stripes", stripes)):
            scores, cpu = {n: [] for n in FILTERS}, {n: 0.0 for n in FILTERS}
            for pixels in make(size, args.images, seed=size):
                rgb = as_decoded(pixels)
                reference = np.asarray(rgb.resize((args.target, args.target), Image.Resampling.LANCZOS))
                for name, (out, seconds) in resized(rgb, args.target).items():
                    scores[name].append(psnr(out, reference))
                    cpu[name] += seconds
            cells = [f"{np.mean(scores[n]):6.2f} dB {1000 * cpu[n] / args.images:5.2f} ms" for n in FILTERS]
            print(f"{size / args.target:5.2f} {kind:>8}  " + "  ".join(f"{c:>21}" for c in cells) + f"  {job}")
    whole_work(args.target, args.photos, args.images)


if __name__ == "__main__":
    main()
