"""Machine-readable opt-outs of AI use: what a response's headers, a page's ``<meta>``
and an origin's TDMRep file say. Pure: never raises on what a site sends, and reads a
bounded amount of it.

Signals, each given as a short text (the export's ``opt_out`` field):

* ``X-Robots-Tag: noai`` / ``noimageai`` / ``noml`` (directives, case-insensitive;
  a group ``NAME: directives`` applies only to the robot NAME, matched against our
  product token) -> ``"x-robots-tag: noai"`` (the directives found, sorted);
* ``<meta name="robots" content="noai">`` (or the meta named after our product
  token) -> ``"meta robots: noai"``;
* TDMRep (W3C Community Group report "TDM Reservation Protocol"): the
  ``tdm-reservation: 1`` header -> ``"tdm-reservation: 1"``, its meta
  ``<meta name="tdm-reservation" content="1">`` -> ``"meta tdm-reservation: 1"``, and
  ``/.well-known/tdmrep.json``, a JSON array of ``{"location": PATTERN,
  "tdm-reservation": 0|1, "tdm-policy": URL}`` whose first rule matching the path
  decides -> ``"tdmrep.json: reserved"``. A location is a path pattern where ``*``
  matches any characters and a final ``$`` anchors the end (else a prefix matches).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

OPT_OUT_DIRECTIVES = frozenset({"noai", "noimageai", "noml"})
TDMREP_PATH = "/.well-known/tdmrep.json"
MAX_HEADER_CHARS = 8192  # of all X-Robots-Tag values read
MAX_TDMREP_BYTES = 512 * 1024
MAX_TDMREP_RULES = 10_000
MAX_LOCATION_CHARS = 2048
# Directives whose value holds a colon: not a robot's name before it.
_VALUED_DIRECTIVES = frozenset(
    {"unavailable_after", "max-snippet", "max-image-preview", "max-video-preview"}
)
_AGENT_PREFIX = re.compile(r"\s*([A-Za-z0-9_.-]+)\s*:(.*)", re.S)


def product_token(user_agent: str) -> str:
    """The robot's name in a User-Agent (the part before ``/``), lower case."""
    return user_agent.split("/", 1)[0].strip().lower()


def robots_tag_opt_out(values: str | Iterable[str] | None, agent: str = "") -> str | None:
    """The opt-out in X-Robots-Tag value(s), for every robot or for ``agent``."""
    if values is None:
        return None
    headers = [values] if isinstance(values, str) else [v for v in values if isinstance(v, str)]
    found: set[str] = set()
    budget = MAX_HEADER_CHARS
    for text in headers:  # a NAME: group lasts to the end of its own header
        text, budget = text[:budget], budget - len(text)
        applies = True  # directives before any NAME: apply to every robot
        for part in text.split(","):
            match = _AGENT_PREFIX.match(part)
            if match and match.group(1).lower() not in _VALUED_DIRECTIVES:
                applies = match.group(1).lower() == agent.lower() if agent else False
                part = match.group(2)
            directive = part.strip().lower()
            if applies and directive in OPT_OUT_DIRECTIVES:
                found.add(directive)
        if budget <= 0:
            break
    return f"x-robots-tag: {','.join(sorted(found))}" if found else None


def _header(headers: Mapping[str, str], name: str) -> str | None:
    value = headers.get(name)  # (requests' headers: any case already)
    if value is None and isinstance(headers, dict):  # a plain dict: its keys as written
        value = next((v for k, v in headers.items() if k.lower() == name), None)
    return value if isinstance(value, str) else None


def tdm_header_opt_out(headers: Mapping[str, str]) -> str | None:
    """``"tdm-reservation: 1"`` when the header says so."""
    value = _header(headers, "tdm-reservation")
    return "tdm-reservation: 1" if value is not None and value.strip() == "1" else None


def response_opt_out(headers: Mapping[str, str], agent: str = "") -> str | None:
    """Every opt-out of a response's headers, joined with ``"; "``, or None."""
    found = [
        signal
        for signal in (
            robots_tag_opt_out(_header(headers, "x-robots-tag"), agent),
            tdm_header_opt_out(headers),
        )
        if signal
    ]
    return "; ".join(found) or None


def meta_opt_out(name: str, content: str, agent: str = "") -> str | None:
    """The opt-out of one ``<meta name content>``, or None."""
    name = (name or "").strip().lower()
    content = (content or "")[:MAX_HEADER_CHARS]
    if name == "robots" or (agent and name == agent.lower()):
        directives = {d.strip().lower() for d in content.split(",")} & OPT_OUT_DIRECTIVES
        return f"meta robots: {','.join(sorted(directives))}" if directives else None
    if name == "tdm-reservation" and content.strip() == "1":
        return "meta tdm-reservation: 1"
    return None


@dataclass(frozen=True)
class TdmRule:
    """One rule of a TDMRep file."""

    location: str
    reserved: bool
    policy: str | None = None


def parse_tdmrep(body: bytes) -> list[TdmRule]:
    """The rules of a ``tdmrep.json``, in order; malformed entries are skipped, and a
    file that is not such a list has none."""
    try:
        data = json.loads(body[:MAX_TDMREP_BYTES].decode("utf-8-sig"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        return []
    if not isinstance(data, list):
        return []
    rules = []
    for entry in data[:MAX_TDMREP_RULES]:
        if not isinstance(entry, dict):
            continue
        location, reservation = entry.get("location"), entry.get("tdm-reservation")
        if not isinstance(location, str) or not location or len(location) > MAX_LOCATION_CHARS:
            continue
        if reservation in (1, "1", True):
            reserved = True
        elif reservation in (0, "0", False):
            reserved = False
        else:
            continue
        policy = entry.get("tdm-policy")
        rules.append(TdmRule(location, reserved, policy if isinstance(policy, str) else None))
    return rules


def location_matches(pattern: str, path: str) -> bool:
    """Whether a TDMRep ``location`` matches ``path``: ``*`` is any characters, a final
    ``$`` anchors the end, else the pattern is a prefix. Linear: the literal pieces
    are found in turn, leftmost first (which is enough for ``*`` alone)."""
    anchored = pattern.endswith("$")
    if anchored:
        pattern = pattern[:-1]
    if not pattern.startswith("/"):
        pattern = "/" + pattern
    pieces = pattern.split("*")
    if not path.startswith(pieces[0]):
        return False
    position = len(pieces[0])
    if len(pieces) == 1:
        return not anchored or position == len(path)
    for piece in pieces[1:-1]:
        found = path.find(piece, position)
        if found < 0:
            return False
        position = found + len(piece)
    last = pieces[-1]
    if anchored:
        return len(path) - len(last) >= position and path.endswith(last)
    return path.find(last, position) >= 0


def tdmrep_opt_out(rules: Sequence[TdmRule], path: str) -> str | None:
    """``"tdmrep.json: reserved"`` when the first rule matching ``path`` reserves."""
    for rule in rules:
        if location_matches(rule.location, path):
            return "tdmrep.json: reserved" if rule.reserved else None
    return None


def tdmrep_url(url: str) -> str:
    """The TDMRep file of ``url``'s origin."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}{TDMREP_PATH}"
