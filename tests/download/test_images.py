"""Image checks and resizing."""

import io

import pytest
from PIL import Image

from components.download.images import ImageError, ImageSettings, process_image, sniff_format, target_size
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
