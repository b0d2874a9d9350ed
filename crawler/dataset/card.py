"""The dataset card: the ``README.md`` an export writes beside its shards.

``dataset_card(figures)`` is a pure function of ``CardFigures``: what is in the shards
(counts, hosts, the shard list), what was left out (opt-outs by signal, failures), the
near-duplicate groups, the fields of a sample, and how it was made. The card never
holds a secret: no header value or cookie is among the figures, a URL's user and
password are hidden, and a command's header, cookie, token or password arguments are
replaced by ``***``.
"""

from __future__ import annotations

import re
import shlex
from collections import Counter
from dataclasses import dataclass, field

from crawler.dataset.shards import DEFAULT_SHARD_SIZE, META_COLUMNS, ShardInfo
from crawler.urls import without_userinfo

MAX_HOSTS = 20
MAX_SHARDS = 50
# Command-line flags whose value is a secret, and name=value pairs that look like one.
_SECRET_FLAGS = ("--header", "-H", "--cookie", "-b", "--authkey", "--password", "--token")
_SECRET_NAME = re.compile(r"(?i)(auth|cookie|password|passwd|secret|token|key|signature|sig)")


@dataclass
class CardFigures:
    """What the card reports, filled in by the export as it goes."""

    format: str = "webdataset"
    shard_size: int = DEFAULT_SHARD_SIZE
    samples: int = 0
    shards: list[ShardInfo] = field(default_factory=list)
    hosts: Counter[str] = field(default_factory=Counter)  # host -> samples
    total_bytes: int = 0  # the images' bytes
    opted_out_left_out: int = 0
    opt_out_signals: Counter[str] = field(default_factory=Counter)  # signal -> images
    ignored_opt_out: bool = False
    near_duplicate_groups: int = 0
    near_duplicate_images: int = 0
    max_distance: int = 6
    images_without_text: int = 0  # no alt text and no caption
    failed: Counter[str] = field(default_factory=Counter)  # error code -> images not stored
    skipped: Counter[str] = field(default_factory=Counter)  # reason -> images not exported
    seeds: list[str] = field(default_factory=list)
    pages: int | None = None  # pages the crawl fetched, when known
    created: str = ""  # ISO 8601 time of the export
    command: str = ""


def dataset_card(figures: CardFigures) -> str:
    """The card's Markdown for ``figures``; holds no header value, cookie or password."""
    sections = [
        _title(figures),
        _summary(figures),
        _hosts(figures),
        _shards(figures),
        _opt_outs(figures),
        _near_duplicates(figures),
        _fields(figures),
        _made(figures),
    ]
    return "\n\n".join(section.rstrip("\n") for section in sections) + "\n"


def _title(figures: CardFigures) -> str:
    return (
        f"# Image dataset: {figures.samples:,} images in {len(figures.shards):,} "
        f"{_format_name(figures.format)} shards\n\n"
        "Images found on the web by a crawl, each with the text of the page that shows it. "
        "The images belong to their owners; this card grants no licence to them."
    )


def _summary(figures: CardFigures) -> str:
    rows = [
        ("images", f"{figures.samples:,}"),
        ("shards", f"{len(figures.shards):,} (at most {figures.shard_size:,} images each)"),
        ("image bytes", _size(figures.total_bytes)),
        ("hosts", f"{len(figures.hosts):,}"),
        ("images without alt text or caption", f"{figures.images_without_text:,}"),
    ]
    if figures.ignored_opt_out:
        rows.append(("opted-out images", "kept (--ignore-opt-out)"))
    rows.append(("opted-out images left out", f"{figures.opted_out_left_out:,}"))
    rows.append(
        (
            "near-duplicate groups",
            f"{figures.near_duplicate_groups:,} ({figures.near_duplicate_images:,} images)",
        )
    )
    rows.append(("images not stored by the crawl", f"{sum(figures.failed.values()):,}"))
    if figures.skipped:
        rows.append(("images skipped by the export", f"{sum(figures.skipped.values()):,}"))
    if figures.pages is not None:
        rows.append(("pages crawled", f"{figures.pages:,}"))
    lines = ["## Summary", "", "| | |", "| --- | ---: |"]
    lines += [f"| {name} | {value} |" for name, value in rows]
    for title, counts in (("Not stored", figures.failed), ("Skipped", figures.skipped)):
        if counts:
            lines += ["", f"{title}, by reason:", "", "| reason | images |", "| --- | ---: |"]
            lines += [f"| {_cell(name)} | {n:,} |" for name, n in _ranked(counts)]
    return "\n".join(lines)


def _hosts(figures: CardFigures) -> str:
    lines = ["## Hosts", ""]
    if not figures.hosts:
        return "\n".join([*lines, "No images."])
    ranked = _ranked(figures.hosts)
    lines += ["| host | images |", "| --- | ---: |"]
    lines += [f"| {_cell(host)} | {n:,} |" for host, n in ranked[:MAX_HOSTS]]
    rest = ranked[MAX_HOSTS:]
    if rest:
        images = sum(n for _, n in rest)
        lines += ["", f"and {len(rest):,} more hosts ({images:,} images)."]
    return "\n".join(lines)


def _shards(figures: CardFigures) -> str:
    if figures.format == "parquet":
        layout = (
            "Each shard is a Parquet file, one row per image: the columns under Fields, "
            "the image's bytes, unchanged, in `image`."
        )
    else:
        layout = (
            "Each shard is a WebDataset tar: per image, `KEY.EXT` holds its bytes, "
            "unchanged, and `KEY.json` the fields under Fields."
        )
    lines = ["## Shards", "", layout, ""]
    if not figures.shards:
        return "\n".join([*lines, "No shards: no image was exported."])
    lines += ["| shard | images | bytes |", "| --- | ---: | ---: |"]
    shown = figures.shards[:MAX_SHARDS]
    lines += [f"| {shard.name} | {shard.samples:,} | {shard.bytes:,} |" for shard in shown]
    rest = figures.shards[MAX_SHARDS:]
    if rest:
        images, size = sum(s.samples for s in rest), sum(s.bytes for s in rest)
        lines += ["", f"and {len(rest):,} more shards ({images:,} images, {size:,} bytes)."]
    return "\n".join(lines)


def _opt_outs(figures: CardFigures) -> str:
    lines = ["## Opt-outs", ""]
    if figures.ignored_opt_out:
        lines.append(
            "Opted-out images were **kept** (`--ignore-opt-out`): each one's `opt_out` "
            "names the signal it carries."
        )
        if figures.opted_out_left_out:
            lines.append(
                f"{figures.opted_out_left_out:,} opted-out images are absent all the same "
                "(the crawl did not store them)."
            )
    elif figures.opted_out_left_out:
        lines.append(
            f"{figures.opted_out_left_out:,} images were left out: an opt-out signal (the "
            "image's own response, or a page that shows it) asks not to use them."
        )
    else:
        lines.append("No image carried an opt-out signal.")
    if figures.opt_out_signals:
        lines += ["", "| signal | images left out |", "| --- | ---: |"]
        lines += [f"| {_cell(sig)} | {n:,} |" for sig, n in _ranked(figures.opt_out_signals)]
    return "\n".join(lines)


def _near_duplicates(figures: CardFigures) -> str:
    return (
        "## Near-duplicates\n\n"
        f"{figures.near_duplicate_images:,} images fall into "
        f"{figures.near_duplicate_groups:,} groups of near-duplicates (perceptual hashes "
        f"at most {figures.max_distance} bits apart). `near_duplicate_of` is the sha256 of "
        "the group's representative, its largest image; the representative points at "
        "itself; null means no near-duplicate within that distance. All of them are in "
        "the shards: choose which to keep."
    )


def _fields(figures: CardFigures) -> str:
    lines = ["## Fields", ""]
    if figures.format != "parquet":
        lines += [
            "`KEY.json` holds these fields (null when unknown); the image is `KEY.EXT`.",
            "",
        ]
    for column in META_COLUMNS:
        if figures.format != "parquet" and column.name in ("key", "extension", "image"):
            continue
        meaning = (column.metadata or {}).get(b"description", b"").decode()
        lines.append(f"- `{column.name}` ({column.type}): {meaning}")
    return "\n".join(lines)


def _made(figures: CardFigures) -> str:
    lines = ["## How it was made", ""]
    if figures.command:
        lines.append(f"- command: `{_scrubbed(figures.command)}`")
    if figures.created:
        lines.append(f"- date: {figures.created}")
    lines.append(f"- format: {figures.format}, shards of at most {figures.shard_size:,} images")
    if figures.seeds:
        lines.append("- seeds: " + ", ".join(f"<{_scrubbed_url(s)}>" for s in figures.seeds))
    if figures.pages is not None:
        lines.append(f"- pages crawled: {figures.pages:,}")
    return "\n".join(lines)


def _format_name(fmt: str) -> str:
    return {"webdataset": "WebDataset", "parquet": "Parquet"}.get(fmt, fmt)


def _ranked(counts: Counter[str]) -> list[tuple[str, int]]:
    """Most first, then by name: the same figures always make the same card."""
    return sorted(counts.items(), key=lambda item: (-item[1], item[0]))


def _cell(text: str) -> str:
    """``text`` safe in a Markdown table cell."""
    return " ".join(str(text).split()).replace("|", "\\|")


def _size(n: int) -> str:
    for unit, scale in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= scale:
            return f"{n:,} ({n / scale:.1f} {unit})"
    return f"{n:,}"


def _scrubbed(command: str) -> str:
    """``command`` with secret-bearing arguments replaced by ``***``: a secret flag's value
    (every word up to the next flag, as an unquoted header value spans several), a
    secret-looking ``name=value``, a URL's user, password and secret query values."""
    try:
        words = shlex.split(command)
    except ValueError:  # unbalanced quotes
        words = command.split()
    out: list[str] = []
    hiding = False
    for word in words:
        if hiding and not word.startswith("-"):
            if out[-1] != "***":
                out.append("***")
            continue
        hiding = False
        flag, eq, _ = word.partition("=")
        if flag in _SECRET_FLAGS:
            out.append(f"{flag}=***" if eq else flag)
            hiding = not eq
        elif eq and "://" not in flag and _SECRET_NAME.search(flag):
            out.append(f"{flag}=***")
        else:
            out.append(_scrubbed_url(word) if "://" in word else word)
    return " ".join(out).replace("`", "'")


def _scrubbed_url(url: str) -> str:
    """``url`` without its user and password, and without secret-looking query values."""
    scheme, sep, rest = without_userinfo(url).partition("://")
    base, query_sep, query = rest.partition("?")
    if query_sep:
        pairs = []
        for pair in query.split("&"):
            name, eq, _ = pair.partition("=")
            pairs.append(f"{name}=***" if eq and _SECRET_NAME.search(name) else pair)
        base += "?" + "&".join(pairs)
    return f"{scheme}{sep}{base}".replace(">", "%3E").replace("`", "'")
