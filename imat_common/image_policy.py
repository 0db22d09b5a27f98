"""One decoder policy for every image the project reads: the limits, and their checks inside the serving graph.

The download job checks fetched bytes with Pillow (``components/download/images.py``): allowed
magic bytes, a pixel limit read from the header before anything is decoded, then a full
decode. ``imat predict`` and ``imat similar`` run their files through that same function. The
exported model's signatures take bytes from clients that skipped it, so ``check_images`` repeats
the header checks as TensorFlow ops: pure string and integer arithmetic that cannot raise, so one
bad row is named in its own ``ok``/``error`` outputs instead of failing the whole batch.

What the graph cannot check before decoding (a JPEG or PNG whose header is intact but whose
data is corrupt in some other way than missing its end; a truncated GIF or BMP) still fails
the batch in TensorFlow's decoder; ``score_rows`` then scores the batch row by row, so only the
bad row fails.
"""

import functools
from typing import Callable, Dict, List, Optional, Sequence, Tuple

# The decompression-bomb limit, in pixels, read from the header before decoding. The download
# job's ImageSettings.max_pixels has the same default (tests/cli/test_hostile_images.py holds
# them equal): a catalogue image the download kept is never refused by the model.
MAX_PIXELS = 40_000_000

# The extra outputs of the signatures that guard their rows: True / "" for a row that was scored;
# False / the reason for one that was not (its other outputs are zeros and empty names).
OK, ERROR = "ok", "error"

# Bytes past the end that the header reads may touch: the JPEG marker walk reads 9 bytes at a
# time, the PNG size sits at bytes 16..23. Padding the input makes every read in range.
_PAD = 32
_PNG_MAGIC = (0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A)
_PNG_END = (0x49, 0x45, 0x4E, 0x44)  # "IEND"
_JPEG_END = (0xFF, 0xD9)  # EOI
# A JPEG's markers before its frame header are few (APPn, DQT, DHT, COM...); a walk longer than
# this is a crafted file, refused as corrupt rather than looped over.
_MAX_JPEG_MARKERS = 256


@functools.lru_cache(maxsize=None)
def blank_jpeg() -> bytes:
    """A small grey JPEG: what a refused row is replaced by, so the batch's decode has nothing to fail on."""
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (32, 32), (128, 128, 128)).save(buf, format="JPEG", quality=90)
    return buf.getvalue()


def _has_pattern(b, pattern: Sequence[int], start):
    """Whether ``pattern`` occurs in the int32 byte vector ``b`` at or after index ``start``."""
    import tensorflow as tf

    length = tf.shape(b)[0] - len(pattern) + 1
    found = tf.range(length) >= start
    for j, value in enumerate(pattern):
        found = tf.logical_and(found, b[j : j + length] == value)
    return tf.reduce_any(found)


def _jpeg_frame(b, n):
    """Walks a JPEG's marker segments to its frame header (SOFn).

    Returns:
      (found, height, width, position of the frame header) as int32 tensors / bool.
    """
    import tensorflow as tf

    def cond(pos, steps, state, height, width):
        return tf.logical_and(tf.logical_and(tf.equal(state, 0), steps < _MAX_JPEG_MARKERS), pos + 9 <= n)

    def body(pos, steps, state, height, width):
        seg = tf.gather(b, pos + tf.range(9))  # in range: pos + 9 <= n and b is padded
        marker = seg[1]
        # SOF0..SOF15 carry the frame size; C4 (DHT), C8 (JPG) and CC (DAC) share the range.
        is_frame = (marker >= 0xC0) & (marker <= 0xCF) & (marker != 0xC4) & (marker != 0xC8) & (marker != 0xCC)
        fill = marker == 0xFF
        standalone = (marker == 0x01) | ((marker >= 0xD0) & (marker <= 0xD8))  # no length field
        length = seg[2] * 256 + seg[3]
        # Scan data (DA) or the end (D9) before any frame header, a byte that is not a marker,
        # or a segment length under its own two bytes: the header is corrupt.
        corrupt = (
            (seg[0] != 0xFF) | (marker == 0xDA) | (marker == 0xD9) | (~is_frame & ~fill & ~standalone & (length < 2))
        )
        state = tf.where(corrupt, 2, tf.where(is_frame, 1, 0))
        next_pos = tf.where(fill, pos + 1, tf.where(standalone, pos + 2, pos + 2 + length))
        return (
            tf.where(state == 0, next_pos, pos),
            steps + 1,
            state,
            tf.where(is_frame, seg[5] * 256 + seg[6], height),
            tf.where(is_frame, seg[7] * 256 + seg[8], width),
        )

    zero = tf.constant(0)
    pos, _, state, height, width = tf.while_loop(cond, body, (tf.constant(2), zero, zero, zero, zero))
    return tf.equal(state, 1), height, width, pos


def _check_one(data):
    """(ok, error) of one encoded image, from its bytes alone; never raises."""
    import tensorflow as tf

    n = tf.strings.length(data)
    b = tf.cast(tf.io.decode_raw(tf.strings.join([data, b"\0" * _PAD]), tf.uint8), tf.int32)
    is_jpeg = (b[0] == 0xFF) & (b[1] == 0xD8) & (b[2] == 0xFF)
    is_png = tf.reduce_all(b[:8] == tf.constant(_PNG_MAGIC))
    is_gif = tf.reduce_all(b[:4] == tf.constant(tuple(b"GIF8"))) & ((b[4] == ord("7")) | (b[4] == ord("9")))
    is_bmp = (b[0] == ord("B")) & (b[1] == ord("M"))

    found, jpeg_h, jpeg_w, frame_pos = _jpeg_frame(b, n)
    # int64: a PNG side is up to 2**31 - 1, a BMP's is a signed 32-bit number, and the product
    # of two sides overflows int32 either way.
    as64 = lambda x: tf.cast(x, tf.int64)
    b64 = as64(b)
    be32 = lambda i: ((b64[i] * 256 + b64[i + 1]) * 256 + b64[i + 2]) * 256 + b64[i + 3]
    le32 = lambda i: ((b64[i + 3] * 256 + b64[i + 2]) * 256 + b64[i + 1]) * 256 + b64[i]
    # A BMP's sides are signed (a negative height means top-down rows).
    signed32 = lambda x: tf.where(x >= 2**31, x - 2**32, x)
    width = tf.where(
        is_jpeg,
        as64(jpeg_w),
        tf.where(is_png, be32(16), tf.where(is_gif, as64(b[6] + 256 * b[7]), tf.abs(signed32(le32(18))))),
    )
    height = tf.where(
        is_jpeg,
        as64(jpeg_h),
        tf.where(is_png, be32(20), tf.where(is_gif, as64(b[8] + 256 * b[9]), tf.abs(signed32(le32(22))))),
    )
    # A file cut short keeps its header; its end marker is what is missing. An EOI after the
    # frame header (an EXIF thumbnail ends with one of its own before it) or an IEND chunk.
    truncated = tf.where(
        is_jpeg,
        ~_has_pattern(b, _JPEG_END, frame_pos),
        tf.where(is_png, ~_has_pattern(b, _PNG_END, 8), tf.constant(False)),
    )
    kind = tf.where(is_jpeg, "JPEG", tf.where(is_png, "PNG", tf.where(is_gif, "GIF", "BMP")))
    size = tf.strings.join([tf.strings.as_string(width), "x", tf.strings.as_string(height)])
    checks = [
        (tf.equal(n, 0), tf.constant("empty (0 bytes)")),
        (
            ~(is_jpeg | is_png | is_gif | is_bmp),
            tf.strings.join(
                ["not an image: no JPEG, PNG, GIF or BMP signature in its ", tf.strings.as_string(n), " bytes"]
            ),
        ),
        (is_jpeg & ~found, tf.constant("JPEG header is corrupt: no frame size before the image data")),
        ((width <= 0) | (height <= 0), tf.strings.join([kind, " header gives a size of ", size])),
        (width * height > MAX_PIXELS, tf.strings.join([size, " is over the limit of ", str(MAX_PIXELS), " pixels"])),
        (truncated, tf.strings.join([kind, " is truncated: no end-of-image marker"])),
    ]
    error = tf.constant("")
    for failed, message in reversed(checks):  # the first failing check names the row
        error = tf.where(failed, message, error)
    return tf.equal(error, ""), error


def check_images(images):
    """Checks a batch of encoded images as the decoder would meet them, without decoding.

    Args:
      images: string [batch], the encoded bytes.

    Returns:
      (images with every refused row replaced by ``blank_jpeg()``, ok bool [batch], error string
      [batch]: "" where ok, else what is wrong). The replacement decodes at 32 x 32, so a batch
      holding a pixel bomb costs what a batch of small images does.
    """
    import tensorflow as tf

    ok, error = tf.map_fn(
        _check_one, images, fn_output_signature=(tf.TensorSpec([], tf.bool), tf.TensorSpec([], tf.string))
    )
    return tf.where(ok, images, tf.constant(blank_jpeg())), ok, error


def assert_images(images):
    """The op that fails the batch, naming each bad row and its reason, when ``check_images`` refuses a row.

    For signatures whose outputs have no room for an error per row (``embed_images``, ``evaluate``):
    they still refuse a pixel bomb before decoding it, and say which row it was.
    """
    import tensorflow as tf

    _, ok, error = check_images(images)
    rows = tf.strings.join([tf.strings.as_string(tf.range(tf.size(ok))), ": ", error])
    return tf.debugging.Assert(
        tf.reduce_all(ok), ["images the model refuses (row: reason):", tf.boolean_mask(rows, ~ok)], summarize=16
    )


def score_rows(call: Callable[[list], Dict], inputs: List) -> Tuple[List[Optional[Dict]], List[str]]:
    """Scores a batch with ``call``; only bad rows fail, each with its error.

    A signature with ``ok``/``error`` outputs names its bad rows itself. A batch that fails as a
    whole (a row whose damage only the decoder finds, or a model exported before the checks) is
    scored again row by row.

    Args:
      call: inputs -> the signature's outputs (numpy arrays, batch first).
      inputs: the batch.

    Returns:
      (per row: a dict of its outputs, or None where it failed; per row: "" or the error).
    """
    import tensorflow as tf

    def split(outputs, count):
        rows = [{k: v[i] for k, v in outputs.items()} for i in range(count)]
        if OK not in outputs:
            return rows, [""] * count
        errors = [e.decode("utf-8", "replace") if not ok else "" for ok, e in zip(outputs[OK], outputs[ERROR])]
        return [None if e else row for row, e in zip(rows, errors)], errors

    if not inputs:
        return [], []
    try:
        return split(call(inputs), len(inputs))
    except tf.errors.OpError as e:
        if len(inputs) == 1:
            return [None], [f"the model cannot decode it: {decoder_message(e)}"]
    rows, errors = [], []
    for one in inputs:
        row, error = score_rows(call, [one])
        rows += row
        errors += error
    return rows, errors


def decoder_message(error) -> str:
    """The useful line of a TensorFlow op error (the reason, without the graph's node names)."""
    import re

    # A graph's message is "Graph execution error:", the Python stack where the op was traced,
    # the reason, then the node: the reason is the last line that is none of the others.
    noise = ("[[", "<stack", "Graph execution error", "Detected at node", "File ")
    lines = [line.strip() for line in getattr(error, "message", str(error)).splitlines()]
    lines = [line for line in lines if line and not line.startswith(noise) and not line[0].isspace()]
    # An eager op's message wraps the reason in the kernel's name and the op's: drop both.
    reason = re.sub(r"^\{\{[^}]*\}\}\s*|\s*\[Op:[^\]]*\]$", "", lines[-1]) if lines else ""
    return reason or type(error).__name__
