"""Tests for crawler.web.verify: sniffing real image bytes, reading dimensions, checking files."""

from __future__ import annotations

import io
import math
import struct
import time
import warnings
import zlib
from pathlib import Path

import pytest
from PIL import Image

from crawler.web import verify
from crawler.web.verify import (
    SNIFF_BYTES,
    ImageCheck,
    check_image,
    sniff_image_type,
)

RASTER_FORMATS = [
    ("JPEG", "jpg"),
    ("PNG", "png"),
    ("GIF", "gif"),
    ("WEBP", "webp"),
    ("BMP", "bmp"),
    ("TIFF", "tif"),
    ("ICO", "ico"),
]


def encode_image(pillow_format: str, size: tuple[int, int] = (24, 16)) -> bytes:
    buffer = io.BytesIO()
    # Pillow's icon writer scales to standard sizes unless told the size to keep.
    options = {"sizes": [size]} if pillow_format == "ICO" else {}
    Image.new("RGB", size, (200, 40, 10)).save(buffer, pillow_format, **options)
    return buffer.getvalue()


def noisy_png(size: tuple[int, int] = (64, 48)) -> bytes:
    """A PNG whose pixel data does not compress away, so that its IDAT is long."""
    buffer = io.BytesIO()
    Image.effect_noise(size, 64).save(buffer, "PNG")
    return buffer.getvalue()


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_header_only(width: int, height: int) -> bytes:
    """A well-formed PNG that claims ``width`` x ``height`` 1-bit pixels but holds one row.

    Every chunk CRC is right, so only the pixel count can make it fail.
    """
    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    row = b"\x00" + bytes(math.ceil(width / 8))
    return (
        b"\x89PNG\r\n\x1a\n"
        + png_chunk(b"IHDR", header)
        + png_chunk(b"IDAT", zlib.compress(row))
        + png_chunk(b"IEND", b"")
    )


def write(tmp_path: Path, content: bytes) -> Path:
    path = tmp_path / "download.tmp"
    path.write_bytes(content)
    return path


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


@pytest.mark.parametrize(("pillow_format", "extension"), RASTER_FORMATS)
def test_check_real_raster_images(tmp_path: Path, pillow_format: str, extension: str):
    path = write(tmp_path, encode_image(pillow_format, size=(37, 21)))
    assert check_image(path, extension) == ImageCheck(None, 37, 21)


def test_check_multi_picture_jpeg(tmp_path: Path):
    # Cameras write MPO (several JPEGs in one file); Pillow names it MPO, not JPEG.
    buffer = io.BytesIO()
    image = Image.new("RGB", (37, 21))
    image.save(buffer, "MPO", save_all=True, append_images=[image])
    content = buffer.getvalue()
    assert sniff_image_type(content[:SNIFF_BYTES]) == ("image/jpeg", "jpg")
    assert check_image(write(tmp_path, content), "jpg") == ImageCheck(None, 37, 21)


@pytest.mark.skipif(not verify.AVIF_READABLE, reason="this Pillow cannot read AVIF")
def test_check_real_avif_when_pillow_reads_it(tmp_path: Path):
    path = write(tmp_path, encode_image("AVIF", size=(37, 21)))
    assert check_image(path, "avif") == ImageCheck(None, 37, 21)


def iso_box(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", 8 + len(data)) + kind + data


AVIF_HEADER_ONLY = b"\x00\x00\x00\x20ftypavif\x00\x00\x00\x00mif1miafMA1B" + b"\x00" * 16
# A picture handler but no image item: libavif reports this as a RuntimeError.
AVIF_WITHOUT_IMAGE = iso_box(b"ftyp", b"avif\x00\x00\x00\x00avifmif1miafMA1B") + iso_box(
    b"meta", bytes(4) + iso_box(b"hdlr", bytes(8) + b"pict" + bytes(13))
)


@pytest.mark.skipif(not verify.AVIF_READABLE, reason="this Pillow cannot read AVIF")
@pytest.mark.parametrize("content", [AVIF_HEADER_ONLY, AVIF_WITHOUT_IMAGE])
def test_check_broken_avif_when_pillow_reads_it(tmp_path: Path, content: bytes):
    assert sniff_image_type(content) == ("image/avif", "avif")
    assert check_image(write(tmp_path, content), "avif") == ImageCheck("corrupt_image")


def test_check_avif_is_accepted_unread_when_pillow_cannot_read_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setattr(verify, "AVIF_READABLE", False)
    path = write(tmp_path, AVIF_HEADER_ONLY)
    assert check_image(path, "avif", min_width=100, min_height=100) == ImageCheck()


def test_check_refuses_a_decompression_bomb_without_allocating_it(tmp_path: Path):
    width = height = 30_000  # 900 M pixels, more than twice Pillow's limit
    assert width * height > 2 * Image.MAX_IMAGE_PIXELS
    path = write(tmp_path, png_header_only(width, height))
    assert path.stat().st_size < 10_000
    started = time.monotonic()
    assert check_image(path, "png") == ImageCheck("decompression_bomb")
    assert time.monotonic() - started < 1.0


def test_check_refuses_images_pillow_only_warns_about(tmp_path: Path):
    # Between 1x and 2x its limit Pillow only warns: the image would open and verify.
    side = math.isqrt(Image.MAX_IMAGE_PIXELS * 3 // 2)
    assert Image.MAX_IMAGE_PIXELS < side * side <= 2 * Image.MAX_IMAGE_PIXELS
    path = write(tmp_path, png_header_only(side, side))
    filters_before = list(warnings.filters)
    assert check_image(path, "png") == ImageCheck("decompression_bomb")
    assert warnings.filters == filters_before


def test_check_keeps_pillow_warnings_about_a_damaged_file_quiet(tmp_path: Path):
    path = write(tmp_path, encode_image("TIFF")[:50])  # cut inside the tag directory
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert check_image(path, "tif") == ImageCheck("corrupt_image")
    assert caught == []


def test_check_max_pixels_lowers_the_limit(tmp_path: Path):
    path = write(tmp_path, encode_image("PNG", size=(24, 16)))
    assert check_image(path, "png", max_pixels=24 * 16) == ImageCheck(None, 24, 16)
    assert check_image(path, "png", max_pixels=24 * 16 - 1) == ImageCheck("decompression_bomb")


@pytest.mark.parametrize(
    "cut",
    [
        pytest.param(lambda size: size // 2, id="half"),
        pytest.param(lambda size: size - 12, id="no-IEND"),
        pytest.param(lambda size: size - 16, id="no-IDAT-checksum"),
    ],
)
def test_check_refuses_a_truncated_png(tmp_path: Path, cut):
    content = noisy_png()
    path = write(tmp_path, content[: cut(len(content))])
    assert check_image(path, "png") == ImageCheck("corrupt_image")


def flip_byte(content: bytes, offset: int) -> bytes:
    return content[:offset] + bytes([content[offset] ^ 0xFF]) + content[offset + 1 :]


@pytest.mark.parametrize(
    "offset",
    [
        pytest.param(8 + 8 + 2, id="IHDR-data"),  # signature, length and type, into width
        pytest.param(8 + 8 + 13, id="IHDR-checksum"),
        pytest.param(-20, id="IDAT-data"),  # before IDAT's CRC (4) and IEND (12)
        pytest.param(-14, id="IDAT-checksum"),
    ],
)
def test_check_refuses_a_png_with_a_wrong_checksum(tmp_path: Path, offset: int):
    content = noisy_png()
    assert check_image(write(tmp_path, content), "png").error is None
    path = write(tmp_path, flip_byte(content, offset % len(content)))
    assert check_image(path, "png") == ImageCheck("corrupt_image")


@pytest.mark.parametrize(
    ("pillow_format", "sniffed"),
    [
        ("GIF", "png"),
        ("PNG", "gif"),
        ("JPEG", "webp"),
        ("BMP", "ico"),
        pytest.param(
            "PNG",
            "avif",
            marks=pytest.mark.skipif(
                not verify.AVIF_READABLE,
                reason="this Pillow cannot read AVIF (an AVIF is kept unread, as documented)",
            ),
        ),
    ],
)
def test_check_refuses_content_of_another_format(tmp_path: Path, pillow_format: str, sniffed):
    path = write(tmp_path, encode_image(pillow_format))
    assert check_image(path, sniffed) == ImageCheck("corrupt_image")


@pytest.mark.parametrize(
    ("content", "extension"),
    [
        (b"\xff\xd8\xff" + b"\x00" * 64, "jpg"),  # JPEG magic, garbage after
        (b"GIF89a" + b"\xff" * 3, "gif"),  # GIF magic, header cut short
        (b"\x89PNG\r\n\x1a\n", "png"),  # PNG signature and nothing else
        (b"RIFF\x24\x00\x00\x00WEBPVP8 ", "webp"),
    ],
)
def test_check_refuses_a_header_pillow_cannot_read(tmp_path: Path, content: bytes, extension):
    assert check_image(write(tmp_path, content), extension) == ImageCheck("corrupt_image")


@pytest.mark.parametrize(
    ("min_width", "min_height", "error"),
    [(0, 0, None), (37, 21, None), (38, 0, "too_small"), (0, 22, "too_small")],
)
def test_check_minimum_size(tmp_path: Path, min_width: int, min_height: int, error):
    path = write(tmp_path, encode_image("PNG", size=(37, 21)))
    assert check_image(path, "png", min_width, min_height) == ImageCheck(error, 37, 21)


SVG_WITH_XHTML_INSIDE = (
    b'<?xml version="1.0"?>\n<svg xmlns="http://www.w3.org/2000/svg">'
    b'<foreignObject><html xmlns="http://www.w3.org/1999/xhtml"><p>hi</p></html>'
    b"</foreignObject></svg>"
)


@pytest.mark.parametrize(
    "svg",
    [
        b'<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"></svg>',
        b'<?xml version="1.0"?>\n<svg xmlns="http://www.w3.org/2000/svg"/>',
        SVG_WITH_XHTML_INSIDE,
    ],
)
def test_check_svg_is_kept_unread(tmp_path: Path, svg: bytes):
    path = write(tmp_path, svg)
    assert check_image(path, "svg", min_width=100, min_height=100) == ImageCheck()


@pytest.mark.parametrize(
    "html",
    [
        b"<html><body><svg></svg></body></html>",
        b'<?xml version="1.0"?><html xmlns="http://www.w3.org/1999/xhtml"><svg/></html>',
        b"<!-- svg --><html><body><svg/></body></html>",
    ],
)
def test_check_html_posing_as_svg_is_not_an_image(tmp_path: Path, html: bytes):
    assert check_image(write(tmp_path, html), "svg") == ImageCheck("not_an_image")


def test_sniff_svg_with_xhtml_inside_is_svg():
    # <html> after the <svg> root (inside <foreignObject>) does not make it a web page.
    assert sniff_image_type(SVG_WITH_XHTML_INSIDE) == ("image/svg+xml", "svg")


def test_check_a_missing_file_is_a_bug_not_a_corrupt_image(tmp_path: Path):
    with pytest.raises(FileNotFoundError):
        check_image(tmp_path / "absent.png", "png")


@pytest.mark.parametrize(("pillow_format", "extension"), RASTER_FORMATS)
def test_check_from_bytes_agrees_with_the_file(tmp_path: Path, pillow_format: str, extension: str):
    """The downloader checks bodies in memory: same verdicts as from the file."""
    content = encode_image(pillow_format, size=(37, 21))
    assert check_image(content, extension) == check_image(write(tmp_path, content), extension)
    assert check_image(content, extension) == ImageCheck(None, 37, 21)


def test_check_from_bytes_refuses_broken_images():
    content = noisy_png()
    assert check_image(content[: len(content) // 2], "png") == ImageCheck("corrupt_image")
    assert check_image(flip_byte(content, -20), "png") == ImageCheck("corrupt_image")
    assert check_image(b"<html><svg></svg></html>", "svg") == ImageCheck("not_an_image")
