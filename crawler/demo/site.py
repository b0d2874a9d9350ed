"""Deterministic local demo web site: the generator, and the command line of the demo.

The demo script, the end-to-end tests and the benchmarks need a site whose every image,
broken reference and duplicate is known in advance, without touching the network.
`generate_site` writes such a site together with its ground truth; `server.serve` serves
it on 127.0.0.1 and `check.compare_with_truth` checks a crawl against it.

Usage:
    python -m crawler.demo.site generate DIR [--pages N] [--images N] [--seed N]
        [--image-bytes LOW-HIGH] [--page-kb LOW-HIGH]
    python -m crawler.demo.site serve DIR [--host H] [--port P] [--port-file F] [--access-log F]
        [--tls-cert PEM --tls-key PEM]
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import posixpath
import random
import signal
import sys
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from functools import cache, partial
from pathlib import Path

from PIL import Image, ImageDraw

from crawler.demo.check import compare_with_truth
from crawler.demo.filler import Filler, make_filler
from crawler.demo.formats import FORMATS, ImageFormat, content_type
from crawler.demo.server import serve

PLACEHOLDER = "data:image/gif;base64,R0lGODlhAQABAAAAACH5BAEKAAEALAAAAAABAAEAAAICTAEAOw=="
EXTERNAL_URL = "http://example.invalid/page.html"
TEXT_FILE = "/files/readme.txt"
BROKEN_PAGES = ("/pages/missing-1.html",)
BROKEN_IMAGES = ("/img/missing-1.png", "/img/missing-2.jpg", "/img/missing-3.gif")
REREFERENCED_SHARE = 0.1


# Markup kinds in the order they are dealt out; weights give each kind a good share of images.
MARKUP_CYCLE = ("img_src", "lazy", "link", "srcset", "img_src", "lazy", "link", "picture")
BLOCK_SIZES = {"img_src": 1, "lazy": 1, "link": 1, "srcset": 3, "picture": 4}

WORDS = ("harbor", "lantern", "meadow", "pixel", "orchard", "granite", "velvet", "comet", "ember")


@dataclass
class _Image:
    path: str
    data: bytes
    fmt: ImageFormat
    width: int
    height: int


@dataclass
class _Block:
    """A group of image references rendered as one HTML fragment."""

    kind: str
    paths: list[str]
    variant: int = 0  # picks between equivalent spellings (e.g. x vs w srcset descriptors)


# ---------------------------------------------------------------- generation


def generate_site(
    root: Path,
    *,
    pages: int = 30,
    images: int = 300,
    seed: int = 1,
    image_bytes: tuple[int, int] | None = None,
    page_bytes: tuple[int, int] | None = None,
) -> dict:
    """Write the demo site under `root` and return its ground truth (also in ground_truth.json).

    `pages` counts real HTML pages including /index.html; `images` counts image URL paths,
    one of which is a byte-identical copy of another, so there are `images - 1` distinct
    contents. `image_bytes` (low, high) makes each encoded image about a size drawn
    uniformly from that range (the benchmark's 2-80 KB), by painting shapes over noise;
    without it images are small drawings of a few hundred bytes. `page_bytes` (low, high)
    pads each page with real-looking markup (`filler.make_filler`: no images, links only
    to the site's pages) to exactly a size drawn from that range, or leaves it as it is
    when its content is larger; the images, links to them and the ground truth stay those
    of the unpadded site (which is byte for byte the site without `page_bytes`), apart
    from a "page_bytes" entry. Existing files under `root` are overwritten, never deleted.
    """
    if pages < 1 or images < 2:
        raise ValueError("need pages >= 1 and images >= 2")
    if image_bytes is not None and not 64 <= image_bytes[0] <= image_bytes[1]:
        raise ValueError("image sizes need 64 <= low <= high bytes")
    if page_bytes is not None and not 1 <= page_bytes[0] <= page_bytes[1]:
        raise ValueError("page sizes need 1 <= low <= high bytes")
    rng = random.Random(seed)
    page_paths = ["/index.html"] + [f"/pages/p{n:03d}.html" for n in range(1, pages)]
    all_images = _make_images(rng, images, image_bytes)
    blocks = _deal_blocks(rng, [img.path for img in all_images])
    placement = _place_blocks(rng, blocks, len(page_paths))
    rerefs = _rereferences(rng, placement, len(page_paths))
    pad = None if page_bytes is None else partial(_filler, seed, page_paths, page_bytes)

    root.mkdir(parents=True, exist_ok=True)
    for img in all_images:
        _write(root, img.path, img.data)
    # Pages written as they are rendered: padded ones are big. Nothing else draws from rng.
    for path, text in _render_pages(rng, page_paths, placement, rerefs, pad):
        _write(root, path, text.encode())
    _write(root, TEXT_FILE, b"Demo site for the image crawler. Not an image, not a page.\n")

    truth = _ground_truth(seed, page_paths, all_images, placement)
    if page_bytes is not None:
        truth["page_bytes"] = list(page_bytes)
    _write(root, "/ground_truth.json", (json.dumps(truth, indent=2) + "\n").encode())
    return truth


def _make_images(
    rng: random.Random, count: int, image_bytes: tuple[int, int] | None = None
) -> list[_Image]:
    """Draw `count - 1` images with distinct contents, plus one copy of one of them."""
    seen: set[bytes] = set()
    made: list[_Image] = []
    for n in range(1, count):
        fmt = FORMATS[n % len(FORMATS)]
        while True:
            if image_bytes is None:
                data, width, height = _draw(rng, fmt)
            else:
                data, width, height = _draw_sized(rng, fmt, rng.randint(*image_bytes))
            digest = hashlib.sha256(data).digest()
            if digest not in seen:
                break
        seen.add(digest)
        made.append(_Image(f"/img/{fmt.directory}/i{n:04d}{fmt.ext}", data, fmt, width, height))
    src = rng.choice(made)
    copy_path = f"/img/copy/same-as-{posixpath.basename(src.path)}"
    made.append(_Image(copy_path, src.data, src.fmt, src.width, src.height))
    return made


def _draw(rng: random.Random, fmt: ImageFormat) -> tuple[bytes, int, int]:
    """Render shapes and noise pixels on a random background and encode them in `fmt`."""
    width, height = rng.randint(16, 200), rng.randint(16, 160)
    img = Image.new("RGB", (width, height), _color(rng))
    draw = ImageDraw.Draw(img)
    for _ in range(rng.randint(1, 4)):
        xs = sorted(rng.randrange(width) for _ in range(2))
        ys = sorted(rng.randrange(height) for _ in range(2))
        shape = draw.rectangle if rng.random() < 0.5 else draw.ellipse
        shape([xs[0], ys[0], xs[1], ys[1]], fill=_color(rng))
    for _ in range(rng.randint(4, 12)):
        img.putpixel((rng.randrange(width), rng.randrange(height)), _color(rng))
    buf = io.BytesIO()
    img.save(buf, format=fmt.pil, **fmt.options)
    return buf.getvalue(), width, height


# Encoded bytes per pixel of noise, a first guess that one re-encode corrects.
_NOISE_BYTES_PER_PIXEL = {"JPEG": 1.6, "PNG": 3.0, "GIF": 1.2, "WEBP": 1.4}


def _draw_sized(rng: random.Random, fmt: ImageFormat, target: int) -> tuple[bytes, int, int]:
    """An image of about `target` encoded bytes: shapes over seeded noise, whose area is
    guessed from the format, then scaled once by how far the first encoding missed."""
    ratio = rng.uniform(0.6, 1.6)  # width / height
    pixels = target / _NOISE_BYTES_PER_PIXEL[fmt.pil]
    noise_seed = rng.getrandbits(64)
    shapes = [(_color(rng), rng.random() < 0.5, [rng.random() for _ in range(4)]) for _ in range(3)]
    # GIF: noise drawn straight in palette indices (quantizing RGB noise is much slower).
    mode, depth = ("P", 1) if fmt.pil == "GIF" else ("RGB", 3)
    palette = random.Random(noise_seed).randbytes(768)
    for _attempt in range(2):
        width = max(8, round((pixels * ratio) ** 0.5))
        height = max(8, round(pixels / width))
        noise = random.Random(noise_seed).randbytes(width * height * depth)
        img = Image.frombytes(mode, (width, height), noise)
        if mode == "P":
            img.putpalette(palette)
        draw = ImageDraw.Draw(img)
        for color, ellipse, (x0, x1, y0, y1) in shapes:
            # Small shapes: they compress well and would pull the size below target.
            box = [x0 * width, y0 * height, (x0 + 0.15 * x1) * width, (y0 + 0.15 * y1) * height]
            fill = color[0] if mode == "P" else color
            (draw.ellipse if ellipse else draw.rectangle)(box, fill=fill)
        buf = io.BytesIO()
        # WebP's fastest method: its default is slow on noise (docs/design-notes.md).
        img.save(
            buf,
            format=fmt.pil,
            **{**fmt.options, "method": 0} if fmt.pil == "WEBP" else fmt.options,
        )
        data = buf.getvalue()
        pixels *= target / len(data)
    return data, width, height


def _color(rng: random.Random) -> tuple[int, int, int]:
    return rng.randrange(256), rng.randrange(256), rng.randrange(256)


def _deal_blocks(rng: random.Random, paths: list[str]) -> list[_Block]:
    """Split shuffled image paths into markup blocks, cycling through the markup kinds."""
    pool = paths[:]
    rng.shuffle(pool)
    blocks: list[_Block] = []
    n = 0
    while pool:
        kind = MARKUP_CYCLE[n % len(MARKUP_CYCLE)]
        if BLOCK_SIZES[kind] > len(pool):
            kind = "img_src"
        size = BLOCK_SIZES[kind]
        blocks.append(_Block(kind, pool[:size], variant=n // len(MARKUP_CYCLE) % 2))
        del pool[:size]
        n += 1
    return blocks


def _place_blocks(rng: random.Random, blocks: list[_Block], n_pages: int) -> list[list[_Block]]:
    """Spread blocks evenly over the pages, in shuffled order."""
    order = blocks[:]
    rng.shuffle(order)
    placement: list[list[_Block]] = [[] for _ in range(n_pages)]
    for i, block in enumerate(order):
        placement[i % n_pages].append(block)
    return placement


def _rereferences(
    rng: random.Random, placement: list[list[_Block]], n_pages: int
) -> list[list[_Block]]:
    """Reference ~10% of images again, always on a later page, so their first use stays primary."""
    extra: list[list[_Block]] = [[] for _ in range(n_pages)]
    candidates = [
        (page, path)
        for page, blocks in enumerate(placement[:-1])
        for block in blocks
        for path in block.paths
    ]
    n_images = sum(len(block.paths) for blocks in placement for block in blocks)
    wanted = min(len(candidates), max(1, round(REREFERENCED_SHARE * n_images)))
    for page, path in sorted(rng.sample(candidates, wanted)):
        kind = rng.choice(("img_src", "lazy", "link"))
        extra[rng.randrange(page + 1, n_pages)].append(_Block(kind, [path]))
    return extra


def _ground_truth(
    seed: int, page_paths: list[str], all_images: list[_Image], placement: list[list[_Block]]
) -> dict:
    markup = {path: block.kind for blocks in placement for block in blocks for path in block.paths}
    entries = [
        {
            "path": img.path,
            "sha256": hashlib.sha256(img.data).hexdigest(),
            "bytes": len(img.data),
            "format": img.fmt.pil,
            "width": img.width,
            "height": img.height,
            "markup": markup[img.path],
        }
        for img in sorted(all_images, key=lambda img: img.path)
    ]
    return {
        "seed": seed,
        "pages": page_paths,
        "broken_pages": list(BROKEN_PAGES),
        "images": entries,
        "broken_images": list(BROKEN_IMAGES),
        "distinct_contents": len({e["sha256"] for e in entries}),
    }


def _write(root: Path, url_path: str, data: bytes) -> None:
    target = root / url_path.lstrip("/")
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(data)


# ---------------------------------------------------------------- HTML


def _render_pages(
    rng: random.Random,
    page_paths: list[str],
    placement: list[list[_Block]],
    rerefs: list[list[_Block]],
    pad: Callable[[str, int], Filler] | None = None,
) -> Iterator[tuple[str, str]]:
    """Yield each page's path and HTML. The page graph: index -> sections -> leaves, plus
    home and neighbour links.

    The last page also carries the odd links: a broken page, an external host, a text file
    and the broken image references. `pad(page, size)` gives the filler of a page of `size`
    bytes, from a random stream of its own: `rng` is drawn from the same with or without.
    """
    n_sections = max(1, round((len(page_paths) - 1) ** 0.5))
    sections = page_paths[1 : 1 + n_sections]
    leaves = page_paths[1 + n_sections :]
    children: dict[str, list[str]] = {"/index.html": sections}
    for i, leaf in enumerate(leaves):
        children.setdefault(sections[i % len(sections)], []).append(leaf)

    for i, page in enumerate(page_paths):
        u = _UrlMaker(rng, page)
        links = [("Home", u("/index.html"))]
        links += [(_title(p), u(p)) for p in children.get(page, [])]
        if len(page_paths) > 1:
            neighbour = page_paths[i + 1] if i + 1 < len(page_paths) else page_paths[1]
            links.append(("Next: " + _title(neighbour), u(neighbour)))
        body = [_block_html(block, u) for block in placement[i] + rerefs[i]]
        if i == len(page_paths) - 1:
            links += [("Lost page", u(BROKEN_PAGES[0])), ("Elsewhere", EXTERNAL_URL)]
            links.append(("Read me", u(TEXT_FILE)))
            body += _broken_images_html(u)
        fill = None if pad is None else partial(pad, page)
        yield page, _page_html(rng, _title(page), links, body, fill)


def _filler(
    seed: int, page_paths: list[str], page_bytes: tuple[int, int], page: str, size: int
) -> Filler:
    """The filler that brings `page` from `size` bytes to a size drawn from `page_bytes`,
    drawn from a random stream seeded by (seed, page) alone."""
    frng = random.Random(f"{seed}:{page}")
    target = frng.randint(*page_bytes)
    return make_filler(frng, target - size, page=page, pages=page_paths, url=_UrlMaker(frng, page))


class _UrlMaker:
    """Spell a site path as root-relative or page-relative, at random, as real sites do."""

    def __init__(self, rng: random.Random, page: str) -> None:
        self.rng = rng
        self.base = posixpath.dirname(page)

    def __call__(self, path: str) -> str:
        if self.rng.random() < 0.5:
            return path
        return _relative(path, self.base)


@cache
def _relative(path: str, base: str) -> str:
    return posixpath.relpath(path, base)  # cached: padded pages spell many links


def _title(page: str) -> str:
    name = posixpath.splitext(posixpath.basename(page))[0]
    return "Demo home" if name == "index" else f"Demo page {name}"


def _block_html(block: _Block, u: Callable[[str], str]) -> str:
    urls = [u(p) for p in block.paths]
    if block.kind == "img_src":
        return f'<img src="{urls[0]}" alt="picture">'
    if block.kind == "lazy":
        return f'<img src="{PLACEHOLDER}" data-src="{urls[0]}" alt="lazy picture">'
    if block.kind == "link":
        return f'<a href="{urls[0]}">full size</a>'
    if block.kind == "srcset":
        if block.variant:
            return (
                f'<img src="{urls[0]}" srcset="{urls[1]} 320w, {urls[2]} 640w" '
                f'sizes="(max-width: 600px) 320px, 640px" alt="responsive">'
            )
        return f'<img src="{urls[0]}" srcset="{urls[1]} 2x, {urls[2]} 3x" alt="responsive">'
    mime = content_type(block.paths[0])
    return (
        f'<picture><source srcset="{urls[0]}" type="{mime}">'
        f'<source srcset="{urls[1]} 1x, {urls[2]} 2x" media="(min-width: 800px)">'
        f'<img src="{urls[3]}" alt="art direction"></picture>'
    )


def _broken_images_html(u: Callable[[str], str]) -> list[str]:
    first, second, third = BROKEN_IMAGES
    return [
        f'<img src="{u(first)}" alt="broken">',
        f'<img src="{PLACEHOLDER}" data-src="{u(second)}" alt="broken lazy">',
        f'<a href="{u(third)}">broken full size</a>',
    ]


def _page_html(
    rng: random.Random,
    title: str,
    links: list[tuple[str, str]],
    body: list[str],
    fill: Callable[[int], Filler] | None = None,
) -> str:
    """The page; `fill(size)` gives the filler for its slots from the unpadded size."""
    nav = "\n".join(f'<li><a href="{href}">{text}</a></li>' for text, href in links)
    text = " ".join(rng.choice(WORDS) for _ in range(rng.randint(12, 30))).capitalize()
    figures = "\n".join(f"<figure>{item}</figure>" for item in body)

    def page(f: Filler) -> str:
        return (
            "<!DOCTYPE html>\n"
            '<html lang="en">\n'
            f'<head><meta charset="utf-8"><title>{title}</title>{f.head}</head>\n'
            "<body>\n"
            f"{f.header}"
            f"<h1>{title}</h1>\n"
            f"<p>{text}.</p>\n"
            f"<nav><ul>\n{nav}\n</ul></nav>\n"
            f"<main>\n{f.main_top}{figures}\n{f.main_bottom}</main>\n"
            f"{f.footer}"
            "</body>\n"
            "</html>\n"
        )

    unpadded = page(Filler())
    return unpadded if fill is None else page(fill(len(unpadded.encode())))


# ---------------------------------------------------------------- serving


# ---------------------------------------------------------------- command line


class _Stop(Exception):
    """Raised from the signal handler to leave the serving loop cleanly."""


def _raise_stop(signum: int, frame: object) -> None:
    raise _Stop


def _cmd_generate(args: argparse.Namespace) -> int:
    truth = generate_site(
        args.dir,
        pages=args.pages,
        images=args.images,
        seed=args.seed,
        image_bytes=args.image_bytes,
        page_bytes=args.page_kb,
    )
    print(
        f"generated {args.dir}: {len(truth['pages'])} pages, {len(truth['images'])} images "
        f"({truth['distinct_contents']} distinct), {len(truth['broken_pages'])} broken pages, "
        f"{len(truth['broken_images'])} broken images"
    )
    return 0


def _cmd_serve(args: argparse.Namespace) -> int:
    # Handlers first, so a signal arriving during start-up still ends quietly.
    signal.signal(signal.SIGTERM, _raise_stop)
    signal.signal(signal.SIGINT, _raise_stop)
    server = None
    try:
        tls = (args.tls_cert, args.tls_key) if args.tls_cert else None
        server = serve(
            args.dir,
            args.host,
            args.port,
            args.access_log,
            args.image_delay,
            tls,
            args.hotlink_protect,
            tuple(("Cookie", cookie) for cookie in args.require_cookie)
            + tuple(
                (name.strip(), value.strip())
                for name, _, value in (text.partition(":") for text in args.require_header)
            ),
        )
        port = server.server_address[1]
        if args.port_file:
            tmp = args.port_file.with_name(args.port_file.name + ".tmp")
            tmp.write_text(f"{port}\n")
            os.replace(tmp, args.port_file)
        print(f"serving {server.url}", flush=True)
        while True:
            signal.pause()
    except _Stop:
        return 0
    finally:
        if server is not None:
            server.close()


def _cmd_check(args: argparse.Namespace) -> int:
    truth = json.loads((args.dir / "ground_truth.json").read_text())
    problems = compare_with_truth(truth, args.site_url, args.out)
    for problem in problems[:20]:
        print(f"  {problem}")
    total = len(truth["images"])
    print(
        f"checked against the ground truth: {total - len(problems)}/{total} demo images stored "
        f"with the right sha256, {len(truth['broken_images'])} broken links reported as 404"
        if not problems
        else f"checked against the ground truth: {len(problems)} problems"
    )
    return 0 if not problems else 1


def _range(text: str, unit: str, least: int) -> tuple[int, int]:
    low, _, high = text.partition("-")
    if not (low.isdigit() and high.isdigit()) or not least <= int(low) <= int(high):
        raise argparse.ArgumentTypeError(
            f"want LOW-HIGH {unit} with {least} <= LOW <= HIGH, not {text!r}"
        )
    return int(low), int(high)


def _byte_range(text: str) -> tuple[int, int]:
    return _range(text, "bytes", 64)


def _kilobyte_range(text: str) -> tuple[int, int]:
    low, high = _range(text, "KB", 1)
    return low * 1000, high * 1000


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m crawler.demo.site", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    gen = sub.add_parser("generate", help="write the demo site and its ground truth")
    gen.add_argument("dir", type=Path)
    gen.add_argument("--pages", type=int, default=30)
    gen.add_argument("--images", type=int, default=300)
    gen.add_argument("--seed", type=int, default=1)
    gen.add_argument(
        "--image-bytes",
        type=_byte_range,
        metavar="LOW-HIGH",
        help="encoded size of each image drawn from this range, e.g. 2000-80000",
    )
    gen.add_argument(
        "--page-kb",
        type=_kilobyte_range,
        metavar="LOW-HIGH",
        help="pad each page with real-looking markup to a size in this range of KB "
        "(1 KB = 1000 bytes), e.g. 30-150",
    )
    gen.set_defaults(func=_cmd_generate)

    srv = sub.add_parser("serve", help="serve a generated site until SIGTERM/SIGINT")
    srv.add_argument("dir", type=Path)
    srv.add_argument("--host", default="127.0.0.1")
    srv.add_argument("--port", type=int, default=0)
    srv.add_argument("--port-file", type=Path)
    srv.add_argument("--access-log", type=Path)
    srv.add_argument("--image-delay", type=float, default=0.0, metavar="SECONDS")
    srv.add_argument("--tls-cert", type=Path, help="serve HTTPS with this certificate chain")
    srv.add_argument("--tls-key", type=Path, help="and this private key")
    srv.add_argument(
        "--hotlink-protect",
        action="store_true",
        help="refuse images (403) requested without a Referer from this site",
    )
    srv.add_argument(
        "--require-cookie",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="refuse (403) requests without this cookie (robots.txt excepted)",
    )
    srv.add_argument(
        "--require-header",
        action="append",
        default=[],
        metavar="'NAME: VALUE'",
        help="refuse (403) requests without this header (robots.txt excepted)",
    )
    srv.set_defaults(func=_cmd_serve)

    check = sub.add_parser("check", help="compare a crawl's output with the ground truth")
    check.add_argument("dir", type=Path, help="the generated site")
    check.add_argument("site_url", help="the URL the site was served at")
    check.add_argument("out", type=Path, help="the crawl's output folder")
    check.set_defaults(func=_cmd_check)

    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
