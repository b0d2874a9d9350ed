"""Tests for crawler.verify: sniffing real image bytes, and reading dimensions."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from PIL import Image

from crawler.verify import SNIFF_BYTES, image_dimensions, sniff_image_type


def encode_image(pillow_format: str, size: tuple[int, int] = (24, 16)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, (200, 40, 10)).save(buffer, pillow_format)
    return buffer.getvalue()


@pytest.mark.parametrize(
    ("pillow_format", "expected"),
    [
        ("JPEG", ("image/jpeg", "jpg")),
        ("PNG", ("image/png", "png")),
        ("GIF", ("image/gif", "gif")),
        ("WEBP", ("image/webp", "webp")),
        ("BMP", ("image/bmp", "bmp")),
        ("TIFF", ("image/tiff", "tif")),
        ("ICO", ("image/x-icon", "ico")),
    ],
)
def test_sniff_real_images(pillow_format: str, expected: tuple[str, str]):
    head = encode_image(pillow_format)[:SNIFF_BYTES]
    assert sniff_image_type(head) == expected


def test_sniff_big_endian_tiff():
    assert sniff_image_type(b"MM\x00*\x00\x00\x00\x08" + b"\x00" * 32) == ("image/tiff", "tif")


@pytest.mark.parametrize("brand", [b"avif", b"avis"])
def test_sniff_avif_by_header(brand: bytes):
    head = b"\x00\x00\x00\x20ftyp" + brand + b"\x00\x00\x00\x00mif1miafMA1B" + b"\x00" * 16
    assert sniff_image_type(head) == ("image/avif", "avif")


def test_other_iso_media_brands_are_not_avif():
    head = b"\x00\x00\x00\x20ftypisom\x00\x00\x02\x00isomiso2mp41" + b"\x00" * 16
    assert sniff_image_type(head) is None


@pytest.mark.parametrize(
    "svg",
    [
        b'<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"></svg>',
        b'<?xml version="1.0" encoding="UTF-8"?>\n<svg xmlns="http://www.w3.org/2000/svg"/>',
        b'\xef\xbb\xbf<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg"/>',
        b'\xef\xbb\xbf<svg xmlns="http://www.w3.org/2000/svg"/>',
        b'\n\n  <SVG xmlns="http://www.w3.org/2000/svg"/>',
        b'<!-- made by hand -->\n<svg xmlns="http://www.w3.org/2000/svg"/>',
        b'<?xml version="1.0"?>\n<!DOCTYPE svg PUBLIC "-//W3C//DTD SVG 1.1//EN" '
        b'"http://www.w3.org/Graphics/SVG/1.1/DTD/svg11.dtd">\n<svg/>',
    ],
)
def test_sniff_svg(svg: bytes):
    assert sniff_image_type(svg) == ("image/svg+xml", "svg")


@pytest.mark.parametrize(
    "head",
    [
        b"",
        b"<!DOCTYPE html><html><head><title>404 Not Found</title></head></html>",
        b"<html><body><svg></svg></body></html>",
        b'<?xml version="1.0"?><html xmlns="http://www.w3.org/1999/xhtml"><svg/></html>',
        b'<?xml version="1.0"?><rss version="2.0"></rss>',
        b'{"error": "not found"}',
        b"GIF",  # too short to be a GIF
        b"BM",  # "BM" alone is not a bitmap header
        b"\x00\x00\x01\x00\x00\x00",  # an icon directory with no images
        b"RIFF\x24\x00\x00\x00WAVEfmt ",  # RIFF, but audio
        b"\xff\xd8",  # truncated JPEG marker
        b"\x89PNG\r\n",  # truncated PNG signature
    ],
)
def test_sniff_rejects_non_images(head: bytes):
    assert sniff_image_type(head) is None


@pytest.mark.parametrize("pillow_format", ["JPEG", "PNG", "GIF", "WEBP", "BMP", "TIFF"])
def test_image_dimensions_of_a_real_file(tmp_path: Path, pillow_format: str):
    path = tmp_path / f"image.{pillow_format.lower()}"
    path.write_bytes(encode_image(pillow_format, size=(37, 21)))
    assert image_dimensions(path) == (37, 21)


@pytest.mark.parametrize(
    "content",
    [
        b"",
        b"<html>this is not an image</html>",
        b"\xff\xd8\xff" + b"\x00" * 64,  # JPEG magic, garbage after
        b"GIF89a" + b"\xff" * 3,  # GIF magic, header cut short
    ],
)
def test_image_dimensions_of_a_corrupt_file(tmp_path: Path, content: bytes):
    path = tmp_path / "corrupt.jpg"
    path.write_bytes(content)
    assert image_dimensions(path) is None


def test_image_dimensions_of_a_missing_file(tmp_path: Path):
    assert image_dimensions(tmp_path / "absent.png") is None
