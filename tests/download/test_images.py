"""Image checks and resizing."""

import io

import numpy as np
import pytest
from PIL import Image

from components.download import images as images_lib
from components.download.images import (
    ImageError,
    ImageSettings,
    dct_scale,
    process_image,
    quality_table_sum,
    sniff_format,
    strip_metadata,
    target_size,
)
from tests.helpers import bomb_png, jpeg_bytes, png_rgba_bytes


@pytest.mark.parametrize(
    "size,max_size,expected",
    [
        ((600, 400), 299, (299, 199)),
        ((400, 600), 299, (199, 299)),
        ((100, 80), 299, (100, 80)),  # never upscaled
        ((299, 10), 299, (299, 10)),
    ],
)
def test_target_size_keeps_ratio_and_never_upscales(size, max_size, expected):
    assert target_size(*size, max_size) == expected


def test_jpeg_is_resized_to_fit_and_reencoded():
    stored = process_image(jpeg_bytes(600, 450), ImageSettings(max_size=299, jpeg_quality=90))
    im = Image.open(io.BytesIO(stored.jpeg))
    assert im.format == "JPEG" and im.mode == "RGB"
    assert im.size == (stored.width, stored.height) == (299, 224)


def test_small_image_keeps_its_size():
    stored = process_image(jpeg_bytes(120, 80), ImageSettings(max_size=299))
    assert (stored.width, stored.height) == (120, 80)


def test_transparent_png_goes_on_white_rgb():
    stored = process_image(png_rgba_bytes(120, 90), ImageSettings(max_size=299))
    im = Image.open(io.BytesIO(stored.jpeg))
    assert im.mode == "RGB" and stored.source_format == "PNG"
    corner, centre = im.getpixel((2, 2)), im.getpixel((60, 45))
    assert min(corner) > 240  # transparent -> white
    assert centre[2] > 200 and centre[0] < 60  # opaque blue kept


def test_keep_original_stores_the_fetched_jpeg_bytes():
    data = jpeg_bytes(600, 450)
    stored = process_image(data, ImageSettings(max_size=299, keep_original=True))
    assert stored.jpeg == data and (stored.width, stored.height) == (600, 450)


@pytest.mark.parametrize(
    "data,status",
    [
        (b"<html><body>hello</body></html>", "not_image"),
        (jpeg_bytes(200, 200)[:300], "corrupt_image"),
        (bomb_png(4000), "too_many_pixels"),
        (b"\x00\x00\x01\x00" + b"\x00" * 64, "not_image"),  # an .ico: not on the allow-list
    ],
)
def test_refused_bytes_get_a_status(data, status):
    with pytest.raises(ImageError) as err:
        process_image(data, ImageSettings(max_pixels=1_000_000))
    assert err.value.status == status


def test_sniff_format():
    assert sniff_format(jpeg_bytes(8, 8)) == "JPEG"
    assert sniff_format(png_rgba_bytes(8, 8)) == "PNG"
    assert sniff_format(b"RIFF\x00\x00\x00\x00WEBPVP8 ") == "WEBP"
    assert sniff_format(b"%PDF-1.4") == ""


def _stripes_jpeg(size: int, period: float) -> bytes:
    """Stripes near the target's Nyquist frequency, over a gradient: what a poor resize aliases into moire."""
    x = np.arange(size, dtype=np.float64)
    red = np.broadcast_to(127 + 90 * np.sin(2 * np.pi * x[None, :] / period), (size, size))
    green = 127 + 60 * np.sin(2 * np.pi * (x[None, :] + x[:, None]) / (1.4 * period))
    blue = np.broadcast_to(x[:, None] * 255 / size, (size, size))
    pixels = np.clip(np.stack([red, green, blue], axis=-1), 0, 255).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="JPEG", quality=95)
    return buf.getvalue()


def _scene_jpeg(size: int, seed: int) -> bytes:
    """Flat shapes with sharp edges over a gradient, with sensor-like noise: what catalogue photos hold."""
    rng = np.random.default_rng(seed)
    x = np.arange(size, dtype=np.float64)
    pixels = np.broadcast_to((60 + 120 * x[None, :, None] / size) * np.ones(3), (size, size, 3)).copy()
    for _ in range(8):
        x0, y0 = rng.integers(0, size * 3 // 4, 2)
        w, h = rng.integers(size // 8, size // 3, 2)
        pixels[y0 : y0 + h, x0 : x0 + w] = rng.integers(0, 256, 3)
    pixels += rng.integers(-12, 13, pixels.shape)
    buf = io.BytesIO()
    Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(buf, format="JPEG", quality=95)
    return buf.getvalue()


def _rgb(jpeg: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(jpeg)).convert("RGB"), dtype=np.float64)


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    return float(10 * np.log10(255**2 / np.mean((a - b) ** 2)))


@pytest.mark.parametrize("size", [(600, 450), (601, 451), (1283, 977), (2500, 3000), (300, 200), (5000, 40)])
def test_dct_scale_is_pillows_draft_rule(size):
    width, height = size
    out_w, out_h = target_size(width, height, 299)
    scale = dct_scale(width, height, out_w, out_h)
    im = Image.new("RGB", size)
    buf = io.BytesIO()
    im.save(buf, format="JPEG")
    drafted = Image.open(io.BytesIO(buf.getvalue()))
    drafted.draft("RGB", (out_w, out_h))
    assert drafted.size == (-(-width // scale), -(-height // scale))
    assert drafted.size[0] >= out_w and drafted.size[1] >= out_h


# Decoded at 1.12 times the target (OpenCV's bilinear resize), 1.3, 1.5 and 1.6 (OpenCV's area
# filter), 1.68 and 1.8 (Pillow's bilinear; at 1.68 the area filter aliases the 2.5 px stripes).
# Halved by the DCT first: to 1.007 times (OpenCV's bilinear), 1.017, 1.07, 1.2 and 1.5 (Pillow's,
# where OpenCV's filters would keep what the DCT folded near Nyquist).
@pytest.mark.parametrize("size", [335, 389, 448, 478, 502, 540, 602, 608, 640, 720, 900])
@pytest.mark.parametrize("kind", ["stripes 2.5", "stripes 3.0", "scene"])
def test_jpeg_resize_is_as_close_to_lanczos_as_pillows_bilinear(size, kind):
    data = _scene_jpeg(size, seed=size) if kind == "scene" else _stripes_jpeg(size, float(kind.split()[1]))
    stored = process_image(data, ImageSettings(max_size=299, jpeg_quality=90))
    full = Image.open(io.BytesIO(data)).convert("RGB")
    reference = np.asarray(full.resize((299, 299), Image.Resampling.LANCZOS), dtype=np.float64)
    # The job's way before OpenCV: Pillow's DCT reduction and antialiasing bilinear, the same quality.
    drafted = Image.open(io.BytesIO(data))
    drafted.draft("RGB", (299, 299))
    buf = io.BytesIO()
    drafted.convert("RGB").resize((299, 299), Image.Resampling.BILINEAR, reducing_gap=3.0).save(
        buf, format="JPEG", quality=90
    )
    assert _psnr(_rgb(stored.jpeg), reference) >= _psnr(_rgb(buf.getvalue()), reference) - 0.1


def test_jpeg_colours_survive_in_their_order():
    stored = process_image(jpeg_bytes(640, 480, color=(220, 20, 30)), ImageSettings(max_size=299))
    red, green, blue = _rgb(stored.jpeg)[200, 5]  # the left edge, away from the gradient's stripes
    assert red > 180 and green < 60 and blue < 70


def test_greyscale_jpeg_is_stored_as_rgb():
    buf = io.BytesIO()
    Image.new("L", (700, 500), 100).save(buf, format="JPEG")
    stored = process_image(buf.getvalue(), ImageSettings(max_size=299))
    im = Image.open(io.BytesIO(stored.jpeg))
    assert im.mode == "RGB" and im.size == (299, 214)
    assert np.abs(_rgb(stored.jpeg) - 100).max() <= 2


def test_cmyk_jpeg_is_converted_to_rgb():
    buf = io.BytesIO()
    Image.new("CMYK", (640, 480), (0, 255, 255, 0)).save(buf, format="JPEG")
    stored = process_image(buf.getvalue(), ImageSettings(max_size=299))
    red, green, blue = _rgb(stored.jpeg)[100, 100]
    assert (stored.width, stored.height) == (299, 224) and red > 200 and green < 60 and blue < 60


@pytest.mark.parametrize("size", [(600, 450), (400, 300)])  # halved by the DCT, and not
def test_exif_orientation_is_ignored_as_pillows_path_does(size):
    # A phone photo marked "rotate 90": both paths store the pixels as encoded, never a refusal.
    exif = Image.Exif()
    exif[0x0112] = 6
    buf = io.BytesIO()
    Image.open(io.BytesIO(jpeg_bytes(*size, color=(220, 20, 30)))).save(buf, format="JPEG", exif=exif.tobytes())
    stored = process_image(buf.getvalue(), ImageSettings(max_size=299))
    assert Image.open(io.BytesIO(stored.jpeg)).size == (stored.width, stored.height) == (299, 224)


def test_jpeg_cut_short_is_refused_as_truncated():
    data = _stripes_jpeg(640, 5.0)
    with pytest.raises(ImageError) as err:
        process_image(data[: len(data) * 2 // 3], ImageSettings(max_size=299))
    assert err.value.status == "corrupt_image" and "truncated" in str(err.value)


def test_jpeg_corrupt_inside_is_refused_by_the_opencv_path():
    data = bytearray(jpeg_bytes(600, 450))
    # A complete file (its end marker kept) whose headers Pillow reads, but whose scan names a
    # colour component the frame does not have: the decoder fails.
    scan = data.index(b"\xff\xda")
    data[scan + 5] = 9
    with pytest.raises(ImageError) as err:
        process_image(bytes(data), ImageSettings(max_size=299))
    assert err.value.status == "corrupt_image" and "does not decode" in str(err.value)


@pytest.mark.parametrize(
    "data,area,as_fetched",
    [
        (jpeg_bytes(600, 450), False, False),  # the DCT halves it to 300 x 225: a 1.003 bilinear resize
        (jpeg_bytes(120, 80, quality=92), False, False),  # fits, finer than quality 90: decoded and re-encoded
        (jpeg_bytes(120, 80, quality=75), None, True),  # fits, coarser: stored as fetched
        (_stripes_jpeg(448, 3.0), True, False),  # 1.5x the target, not reduced by the DCT: OpenCV's area filter
        (_stripes_jpeg(540, 3.0), None, False),  # 1.8x: Pillow's filter
        (jpeg_bytes(1200, 900), False, False),  # the DCT quarters it to 300 x 225: a 1.003 bilinear resize
        (jpeg_bytes(640, 427), None, False),  # the DCT halves it to 320 x 214, 1.07x: Pillow's filter
        (png_rgba_bytes(120, 90), None, False),
    ],
)
def test_which_library_processes_an_image(monkeypatch, data, area, as_fetched):
    calls = []
    real = images_lib._jpeg_with_opencv
    monkeypatch.setattr(images_lib, "_jpeg_with_opencv", lambda *a: calls.append(a) or real(*a))
    stored = process_image(data, ImageSettings(max_size=299))
    assert [call[-1] for call in calls] == ([] if area is None else [area])
    # None above is Pillow's path, or no encode at all: only a kept file ends in the source's scans.
    assert (b"\xff\xda" in data and _as_fetched(data, stored.jpeg)) == as_fetched


def _segments(jpeg: bytes) -> list:
    """The markers before the first scan, in order."""
    markers, i = [], 2
    while jpeg[i + 1] != 0xDA:
        markers.append(jpeg[i + 1])
        i += 2 + int.from_bytes(jpeg[i + 2 : i + 4], "big")
    return markers


def _with_metadata(width: int, height: int, quality: int, **save) -> bytes:
    """A JPEG carrying what phones and photo editors add: EXIF (rotate 90), an ICC profile, a comment."""
    exif = Image.Exif()
    exif[0x0112] = 6
    buf = io.BytesIO()
    Image.open(io.BytesIO(jpeg_bytes(width, height))).save(
        buf, format="JPEG", quality=quality, exif=exif.tobytes(), icc_profile=b"\0" * 3000, comment=b"shop", **save
    )
    return buf.getvalue()


@pytest.mark.parametrize("quality", [90, 75, 40])
@pytest.mark.parametrize("progressive", [False, True])
def test_fitting_jpeg_no_finer_than_the_setting_is_stored_as_fetched_less_metadata(quality, progressive):
    data = _with_metadata(120, 80, quality, progressive=progressive)
    stored = process_image(data, ImageSettings(max_size=299, jpeg_quality=90))
    assert (stored.width, stored.height) == (120, 80)
    # The pixels the source holds, no second generation of loss; only the metadata gone.
    assert np.array_equal(_rgb(stored.jpeg), _rgb(data))
    assert 0xE0 in _segments(stored.jpeg) and not {0xE1, 0xE2, 0xFE} & set(_segments(stored.jpeg))
    assert {0xE1, 0xE2, 0xFE} <= set(_segments(data))
    assert stored.jpeg.endswith(data[data.index(b"\xff\xda") :])  # the compressed image, byte for byte
    assert len(stored.jpeg) < len(data) - 3000


def test_fitting_jpeg_finer_than_the_setting_is_reencoded_at_it():
    data = _with_metadata(120, 80, 97)
    stored = process_image(data, ImageSettings(max_size=299, jpeg_quality=90))
    assert sum(Image.open(io.BytesIO(stored.jpeg)).quantization[0]) == quality_table_sum(90)
    assert len(stored.jpeg) < len(data) and not {0xE1, 0xE2, 0xFE} & set(_segments(stored.jpeg))


def test_fitting_greyscale_jpeg_is_still_stored_as_rgb():
    buf = io.BytesIO()
    Image.new("L", (120, 80), 100).save(buf, format="JPEG", quality=50)
    assert Image.open(io.BytesIO(process_image(buf.getvalue(), ImageSettings()).jpeg)).mode == "RGB"


def test_fitting_jpeg_corrupt_inside_is_refused():
    data = bytearray(_with_metadata(120, 80, 75))
    data[data.index(b"\xff\xda") + 5] = 9  # the scan names a component the frame lacks
    with pytest.raises(ImageError) as err:
        process_image(bytes(data), ImageSettings())
    assert err.value.status == "corrupt_image" and "does not decode" in str(err.value)


@pytest.mark.parametrize("quality", [10, 50, 75, 90, 95, 100])
def test_quality_table_sum_is_what_the_encoders_write(quality):
    buf = io.BytesIO()
    Image.new("RGB", (16, 16)).save(buf, format="JPEG", quality=quality)
    assert sum(Image.open(buf).quantization[0]) == quality_table_sum(quality)
    cv2 = images_lib._opencv()
    ok, encoded = cv2.imencode(".jpg", np.zeros((16, 16, 3), np.uint8), [cv2.IMWRITE_JPEG_QUALITY, quality])
    assert ok and sum(Image.open(io.BytesIO(encoded.tobytes())).quantization[0]) == quality_table_sum(quality)


def test_strip_metadata_keeps_fill_bytes_out_and_refuses_what_it_does_not_know():
    data = _with_metadata(64, 48, 75)
    frame = data.index(b"\xff\xc0")
    # Fill bytes before a marker are allowed by the standard; the output keeps none of them.
    padded = data[:frame] + b"\xff\xff" + data[frame:]
    assert strip_metadata(padded) == strip_metadata(data) and strip_metadata(data) is not None
    arithmetic = data[:frame] + b"\xff\xc9" + data[frame + 2 :]
    twelve_bit = data[: frame + 4] + b"\x0c" + data[frame + 5 :]
    no_frame = data[:frame] + data[data.index(b"\xff\xda") :]
    short_frame = data[:frame] + b"\xff\xc0\x00\x02"  # a frame header of no bytes, at the very end
    for bad in (arithmetic, twelve_bit, no_frame, short_frame, data[2:], data[: frame + 3]):
        assert strip_metadata(bad) is None


def _as_fetched(data: bytes, stored: bytes) -> bool:
    return stored.endswith(data[data.index(b"\xff\xda") :])


@pytest.mark.parametrize("progressive", [False, True])
def test_stray_marker_in_the_compressed_data_is_reencoded_not_stored(progressive):
    # libjpeg (Pillow, OpenCV) warns and decodes on at an unknown marker; TensorFlow's decoder
    # fails, and one such record would stop training. A re-encode stores clean pixels instead.
    data = _with_metadata(120, 80, 75, progressive=progressive)
    last_scan = data.rindex(b"\xff\xda")
    at = last_scan + 2 + int.from_bytes(data[last_scan + 2 : last_scan + 4], "big") + 10
    broken = data[:at] + b"\xff\x9a" + data[at + 2 :]
    if progressive:  # OpenCV's decode gives up on this one: refused, as it was before
        with pytest.raises(ImageError, match="does not decode"):
            process_image(broken, ImageSettings())
        return
    stored = process_image(broken, ImageSettings())
    assert not _as_fetched(broken, stored.jpeg)
    Image.open(io.BytesIO(stored.jpeg)).load()  # Pillow refuses the broken one: "broken data stream"


@pytest.mark.parametrize(
    "change",
    [
        "bytes after the end",  # a payload hidden after EOI
        "comment between scans",  # metadata where the first walk does not look
        "thumbnail in JFIF",
        "luma on the fine table",  # table 0 coarse, but the luma component uses table 1
    ],
)
def test_only_the_image_is_stored_as_fetched(change):
    data = _with_metadata(120, 80, 75, progressive=True)
    if change == "bytes after the end":
        data = data + b"SECRET" * 1000 + b"\xff\xd9"
    elif change == "comment between scans":
        second = data.index(b"\xff\xda", data.index(b"\xff\xda") + 2)
        data = data[:second] + b"\xff\xfe\x00\x08SECRET" + data[second:]
    elif change == "thumbnail in JFIF":
        app0 = data.index(b"\xff\xe0")
        length = int.from_bytes(data[app0 + 2 : app0 + 4], "big")
        # JFIF with a 2 x 2 thumbnail: 12 bytes of RGB after the 16 of the plain form.
        jfif = data[app0 + 4 : app0 + 2 + length - 2] + b"\x02\x02" + b"SECRETSECRET"
        data = data[:app0] + b"\xff\xe0" + (len(jfif) + 2).to_bytes(2, "big") + jfif + data[app0 + 2 + length :]
    else:
        buf = io.BytesIO()
        Image.open(io.BytesIO(jpeg_bytes(120, 80))).save(buf, format="JPEG", qtables=[[60] * 64, [1] * 64])
        data = bytearray(buf.getvalue())
        frame = data.index(b"\xff\xc0")
        for component in range(3):  # luma on table 1 (all ones), chroma on table 0
            data[frame + 12 + 3 * component] = 1 if component == 0 else 0
        data = bytes(data)
        assert sum(Image.open(io.BytesIO(data)).quantization[0]) >= quality_table_sum(90)
    assert Image.open(io.BytesIO(data)).size == (120, 80)
    stored = process_image(data, ImageSettings())
    assert not _as_fetched(data, stored.jpeg) and b"SECRET" not in stored.jpeg


def test_restart_markers_are_stored_as_fetched():
    buf = io.BytesIO()
    Image.open(io.BytesIO(jpeg_bytes(120, 80))).save(buf, format="JPEG", quality=75, restart_marker_blocks=4)
    data = buf.getvalue()
    stored = process_image(data, ImageSettings())
    assert _as_fetched(data, stored.jpeg) and b"\xff\xdd" in stored.jpeg
    assert np.array_equal(_rgb(stored.jpeg), _rgb(data))
