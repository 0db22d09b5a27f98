"""Checks downloaded bytes are a safe, allowed image and turns them into the stored JPEG.

Pillow reads every header and does every format. A complete RGB or greyscale JPEG goes through
OpenCV instead (the same libjpeg-turbo decode and encode, a cheaper resize) where one of OpenCV's
filters is at least as close to a Lanczos resize as Pillow's: ``resize_filter`` says where
(docs/benchmarks.md, "Download throughput: OpenCV for JPEG"). An RGB JPEG that already fits and is
no finer than ``jpeg_quality`` is stored as fetched, less its metadata (``strip_metadata``).
"""

import dataclasses
import functools
import io
import warnings
from typing import Optional

import numpy as np
from PIL import Image

# Pillow warns between its own pixel limit and twice that; the max_pixels check below decides
# instead. A filter set once here, not warnings.catch_warnings per call, which is not
# thread-safe and this runs in a thread pool.
warnings.filterwarnings("ignore", category=Image.DecompressionBombWarning)

# Formats we decode; everything else is refused before Pillow parses more than the header.
ALLOWED_FORMATS = ("JPEG", "PNG", "WEBP", "GIF", "BMP")
_MAGIC = (
    (b"\xff\xd8\xff", "JPEG"),
    (b"\x89PNG\r\n\x1a\n", "PNG"),
    (b"GIF87a", "GIF"),
    (b"GIF89a", "GIF"),
    (b"BM", "BMP"),
)


# Decoded size over target size up to which OpenCV's two-tap bilinear resize, and then its area
# filter, stays at least as close to a Lanczos resize of the full image as Pillow's antialiasing
# bilinear (PSNR, generated scenes and near-Nyquist stripes alike: benchmarks/resize_quality.py).
# An image the DCT has already reduced keeps fine detail folded near its new Nyquist frequency,
# which Pillow's wider filter smooths and OpenCV's do not: there OpenCV resizes only what is within
# 1 % of the target. Past these ratios Pillow resizes.
_LINEAR_MAX_RATIO = 1.2
_AREA_MAX_RATIO = 1.6
_REDUCED_LINEAR_MAX_RATIO = 1.01

# A complete JPEG ends with its end-of-image marker. One cut short goes to Pillow, whose error
# says so ("image file is truncated"); OpenCV's decoder only returns nothing.
_JPEG_END = b"\xff\xd9"


# The JPEG standard's luminance quantization table (Annex K), which libjpeg, and so Pillow's and
# OpenCV's encoders, scale by the quality setting. Its sum at ``jpeg_quality`` measures how finely
# the job would encode; a fetched JPEG whose own table is no finer gains nothing from a re-encode.
_STANDARD_LUMA_TABLE = (
    16, 11, 10, 16, 24, 40, 51, 61, 12, 12, 14, 19, 26, 58, 60, 55,
    14, 13, 16, 24, 40, 57, 69, 56, 14, 17, 22, 29, 51, 87, 80, 62,
    18, 22, 37, 56, 68, 109, 103, 77, 24, 35, 55, 64, 81, 104, 113, 92,
    49, 64, 78, 87, 103, 121, 120, 101, 72, 92, 95, 98, 112, 100, 103, 99,
)  # fmt: skip

# Segments kept when a fetched JPEG is stored as fetched: the ones that say how to decode it (JFIF,
# Adobe's colour transform, tables, a baseline, extended or progressive Huffman frame, restart
# interval). EXIF (its orientation flag too), XMP, ICC profiles, Photoshop data and comments go, as
# a re-encode drops them. Any other segment (arithmetic coding, lossless, 12-bit, hierarchical), a
# JFIF or Adobe segment longer than its plain form (a thumbnail), anything but tables between
# progressive scans, a marker a decoder would stop at inside the compressed data, or bytes after
# its end sends the image to a re-encode, which stores only pixels.
_SEGMENTS_KEPT = frozenset((0xE0, 0xEE, 0xDB, 0xC4, 0xDD, 0xC0, 0xC1, 0xC2))
_SEGMENTS_DROPPED = frozenset((*range(0xE1, 0xEE), 0xEF, 0xFE))
_SEGMENTS_BETWEEN_SCANS = frozenset((0xDB, 0xC4, 0xDD))
_LONGEST = {0xE0: 16, 0xEE: 14}  # JFIF without a thumbnail; Adobe's version, flags and transform
_FRAMES = frozenset((0xC0, 0xC1, 0xC2))
_START_OF_SCAN, _END_OF_IMAGE = 0xDA, 0xD9


class ImageError(ValueError):
    """The bytes are not an image we store. ``status`` is the outcome recorded for it."""

    def __init__(self, status: str, reason: str):
        super().__init__(reason)
        self.status = status


@dataclasses.dataclass(frozen=True)
class ImageSettings:
    max_size: int = 299  # longer side of the stored image; InceptionV3's input size
    jpeg_quality: int = 90
    keep_original: bool = False  # store the fetched JPEG as is (non-JPEG is still re-encoded)
    max_pixels: int = 40_000_000  # decompression-bomb limit, checked on the header


@dataclasses.dataclass(frozen=True)
class StoredImage:
    jpeg: bytes
    width: int
    height: int
    source_format: str


def sniff_format(data: bytes) -> str:
    """Names the image format from magic bytes, or returns '' when none matches."""
    for magic, name in _MAGIC:
        if data.startswith(magic):
            return name
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "WEBP"
    return ""


def target_size(width: int, height: int, max_size: int):
    """Size that fits ``max_size`` on the longer side, keeping aspect ratio, never upscaling."""
    longer = max(width, height)
    if longer <= max_size:
        return width, height
    scale = max_size / longer
    return max(1, round(width * scale)), max(1, round(height * scale))


def _to_rgb(im: Image.Image) -> Image.Image:
    if im.mode == "RGB":
        return im
    if im.mode in ("RGBA", "LA") or (im.mode == "P" and "transparency" in im.info):
        # Transparent product cut-outs go on white, as shops display them.
        rgba = im.convert("RGBA")
        background = Image.new("RGB", rgba.size, (255, 255, 255))
        background.paste(rgba, mask=rgba.getchannel("A"))
        return background
    return im.convert("RGB")


def dct_scale(width: int, height: int, out_w: int, out_h: int) -> int:
    """The JPEG DCT reduction to decode at, Pillow's draft rule: the largest of 8, 4, 2, 1 keeping the target size."""
    room = min(width // out_w, height // out_h)
    return next(k for k in (8, 4, 2, 1) if room >= k)


@functools.lru_cache(maxsize=None)
def quality_table_sum(quality: int) -> int:
    """The sum of the luminance quantization table libjpeg writes at ``quality`` (1-100; larger is coarser)."""
    quality = min(100, max(1, quality))
    scale = 5000 // quality if quality < 50 else 200 - 2 * quality
    return sum(min(255, max(1, (q * scale + 50) // 100)) for q in _STANDARD_LUMA_TABLE)


def strip_metadata(data: bytes) -> Optional[bytes]:
    """The JPEG's bytes less its metadata segments, the compressed image itself untouched.

    Returns:
      The bytes with the segments in ``_SEGMENTS_DROPPED`` taken out, or None where the file is
      laid out otherwise than a plain 8-bit baseline, extended or progressive Huffman JPEG (see
      ``_SEGMENTS_KEPT``; the caller then re-encodes it).
    """
    if not data.startswith(b"\xff\xd8"):
        return None
    kept, i, frame = [data[:2]], 2, False
    while i + 4 <= len(data):
        if data[i] != 0xFF:
            return None
        marker = data[i + 1]
        if marker == 0xFF:  # a fill byte before a marker
            i += 1
            continue
        if marker == _START_OF_SCAN:
            return b"".join(kept) + data[i:] if frame and _scans_are_plain(data, i) else None
        end = i + 2 + int.from_bytes(data[i + 2 : i + 4], "big")
        if end > len(data) or end < i + 4 or end - i - 2 > _LONGEST.get(marker, 0xFFFF):
            return None
        if marker in _FRAMES:
            # Precision, height, width, component count, then 3 bytes per component.
            if end < i + 13 or data[i + 4] != 8:
                return None
            frame = True
        if marker in _SEGMENTS_KEPT:
            kept.append(data[i:end])
        elif marker not in _SEGMENTS_DROPPED:
            return None
        i = end
    return None


def _scans_are_plain(data: bytes, i: int) -> bool:
    """From the first scan at ``i``: only tables between scans, and the end marker last of all.

    In the compressed data a 0xFF byte is followed by 0x00 (a stuffed byte), a restart marker, or
    a fill byte; anything else is a marker that ends the scan. libjpeg warns and goes on at one it
    does not expect, TensorFlow's decoder fails on it.
    """
    while i + 4 <= len(data) and data[i] == 0xFF:
        marker = data[i + 1]
        i += 2 + int.from_bytes(data[i + 2 : i + 4], "big")
        if marker != _START_OF_SCAN:
            if marker not in _SEGMENTS_BETWEEN_SCANS:
                return False
            continue
        while True:  # the compressed data, to the marker that ends it
            i = data.find(b"\xff", i)
            if i < 0 or i + 1 >= len(data):
                return False
            after = data[i + 1]
            if after == 0x00 or 0xD0 <= after <= 0xD7:
                i += 2
            elif after == 0xFF:
                i += 1
            else:
                break
        if after == _END_OF_IMAGE:
            return i + 2 == len(data)
    return False


@functools.lru_cache(maxsize=None)
def _opencv():
    # Imported on first use: a third of a second that only the JPEG path needs.
    import cv2

    # Callers already run one image per core (the download job's thread pool); OpenCV's own
    # thread pool on top would only oversubscribe the cores.
    cv2.setNumThreads(1)
    return cv2


def resize_filter(width: int, height: int, out_w: int, out_h: int) -> str:
    """The filter that resizes a complete RGB or greyscale JPEG to the target, by its ratio after the DCT.

    Returns:
      ``"OpenCV bilinear"`` (decoded within 1.2 times the target, or within 1.01 where the DCT
      reduced it), ``"OpenCV area"`` (within 1.6 times, not reduced by the DCT) or
      ``"Pillow bilinear"``: the cheapest that is at least as close to a Lanczos resize as Pillow's.
    """
    scale = dct_scale(width, height, out_w, out_h)
    ratio = max(-(-width // scale) / out_w, -(-height // scale) / out_h)
    if ratio <= (_LINEAR_MAX_RATIO if scale == 1 else _REDUCED_LINEAR_MAX_RATIO):
        return "OpenCV bilinear"
    return "OpenCV area" if scale == 1 and ratio <= _AREA_MAX_RATIO else "Pillow bilinear"


def _decode_with_opencv(data: bytes, width: int, height: int, scale: int) -> np.ndarray:
    """BGR pixels decoded at 1/``scale`` of the header's size; ImageError where that fails."""
    cv2 = _opencv()
    reduced = {2: cv2.IMREAD_REDUCED_COLOR_2, 4: cv2.IMREAD_REDUCED_COLOR_4, 8: cv2.IMREAD_REDUCED_COLOR_8}
    # EXIF orientation ignored, as Pillow's path does: both store the pixels as encoded.
    flags = reduced.get(scale, cv2.IMREAD_COLOR) | cv2.IMREAD_IGNORE_ORIENTATION
    pixels = cv2.imdecode(np.frombuffer(data, np.uint8), flags)
    expected = (-(-height // scale), -(-width // scale), 3)
    if pixels is None:
        raise ImageError("corrupt_image", f"JPEG does not decode: corrupt image data ({width}x{height} header)")
    if pixels.shape != expected:
        got = "x".join(map(str, pixels.shape))
        raise ImageError("corrupt_image", f"JPEG decodes to {got} pixels, not the {width}x{height} of its header")
    return pixels


def _as_fetched(data: bytes, im: Image.Image, quality: int) -> Optional[bytes]:
    """A fitting RGB JPEG's bytes less metadata, once they decode; None where a re-encode is due.

    A re-encode would cost a second generation of loss, and bytes too where the source is coarser
    than ``quality``; one at ``quality`` shrinks a finer source, so those are re-encoded.
    """
    # Pillow has parsed the frame: its components as (id, h, v, table id), luma first.
    tables, components = getattr(im, "quantization", None) or {}, getattr(im, "layer", None) or []
    luma = components[0][3] if components else None
    if luma not in tables or sum(tables[luma]) < quality_table_sum(quality):
        return None  # before the walk of the compressed data: most fine sources end here
    stripped = strip_metadata(data)
    if stripped is not None:
        _decode_with_opencv(stripped, im.width, im.height, 1)  # what is stored must decode, whole
    return stripped


def _jpeg_with_opencv(data: bytes, width: int, height: int, out_w: int, out_h: int, quality: int, area: bool) -> bytes:
    cv2 = _opencv()
    pixels = _decode_with_opencv(data, width, height, dct_scale(width, height, out_w, out_h))
    if pixels.shape[:2] != (out_h, out_w):
        pixels = cv2.resize(pixels, (out_w, out_h), interpolation=cv2.INTER_AREA if area else cv2.INTER_LINEAR)
    # Channel order is OpenCV's BGR both ways, so the stored JPEG's colours are the source's.
    ok, encoded = cv2.imencode(".jpg", pixels, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise ImageError("corrupt_image", f"JPEG does not re-encode at {out_w}x{out_h}")
    return encoded.tobytes()


def process_image(data: bytes, settings: ImageSettings) -> StoredImage:
    """Validates image bytes and produces the JPEG to store.

    Args:
      data: the downloaded body.
      settings: size, quality and safety limits.

    Returns:
      The stored JPEG and its size.

    Raises:
      ImageError: with status ``not_image`` (no allowed magic bytes), ``bad_format``
        (a format outside the allow-list), ``too_many_pixels`` (decompression bomb) or
        ``corrupt_image`` (truncated or undecodable).
    """
    sniffed = sniff_format(data)
    if not sniffed:
        # No body bytes in the reason: it goes to the status file, which must not echo what answered.
        raise ImageError("not_image", f"body is not an image (no image signature in its {len(data)} bytes)")
    try:
        im = Image.open(io.BytesIO(data), formats=ALLOWED_FORMATS)
    except Image.DecompressionBombError as e:
        raise ImageError("too_many_pixels", str(e)) from None
    except Exception as e:  # Pillow raises many types for bad headers
        raise ImageError("corrupt_image", f"cannot read {sniffed} header: {e}") from None
    if im.format not in ALLOWED_FORMATS:
        raise ImageError("bad_format", f"format {im.format} is not allowed")
    width, height = im.size
    if width * height > settings.max_pixels:
        raise ImageError("too_many_pixels", f"{width}x{height} is over the limit of {settings.max_pixels} pixels")
    out_w, out_h = target_size(width, height, settings.max_size)
    if settings.keep_original and im.format == "JPEG" and im.mode in ("RGB", "L"):
        try:
            im.load()  # still proves the file decodes
        except Exception as e:
            raise ImageError("corrupt_image", f"{im.format} does not decode: {e}") from None
        return StoredImage(data, width, height, im.format)
    whole_jpeg = im.format == "JPEG" and im.mode in ("RGB", "L") and data.endswith(_JPEG_END)
    if whole_jpeg and im.mode == "RGB" and (out_w, out_h) == (width, height):
        fetched = _as_fetched(data, im, settings.jpeg_quality)
        if fetched is not None:
            return StoredImage(fetched, width, height, im.format)
    resize = resize_filter(width, height, out_w, out_h) if whole_jpeg else "Pillow bilinear"
    if resize != "Pillow bilinear":  # keep_original returned above for these JPEGs
        jpeg = _jpeg_with_opencv(data, width, height, out_w, out_h, settings.jpeg_quality, resize == "OpenCV area")
        return StoredImage(jpeg, out_w, out_h, im.format)
    try:
        if not settings.keep_original and (out_w, out_h) != (width, height):
            # Decode JPEG at a reduced DCT scale, still at least the target size: much
            # less work than decoding full size and shrinking afterwards.
            im.draft("RGB", (out_w, out_h))
        im.load()
        if getattr(im, "is_animated", False):
            im.seek(0)
        rgb = _to_rgb(im)
        if settings.keep_original:
            out_w, out_h = width, height
        if rgb.size != (out_w, out_h):
            # Pillow's bilinear resize is an antialiasing triangle filter: after the DCT
            # reduction the remaining ratio is under 2, where it looks like bicubic at a lower
            # cost (measured: docs/benchmarks.md, "Download throughput").
            rgb = rgb.resize((out_w, out_h), Image.Resampling.BILINEAR, reducing_gap=3.0)
        buf = io.BytesIO()
        rgb.save(buf, format="JPEG", quality=settings.jpeg_quality)
    except Exception as e:
        raise ImageError("corrupt_image", f"{im.format} does not decode: {e}") from None
    return StoredImage(buf.getvalue(), out_w, out_h, im.format)
