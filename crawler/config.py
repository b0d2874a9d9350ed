"""Settings: frozen dataclasses, merged from defaults < TOML file < environment < flags.

This is the only place defaults live; ``config/default.toml`` mirrors it key by key
(a test keeps the two equal). Every key has a unique name across sections, so the
environment variable for key ``max_pages`` is ``CRAWLER_MAX_PAGES``.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import os
import re
import tomllib
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from crawler.errors import ConfigError

ENV_PREFIX = "CRAWLER_"
# Settings whose values are secrets: an error about them never shows the value.
SECRET_KEYS = frozenset({"headers"})
# Environment variables that start with the prefix but are not settings.
ENV_NOT_SETTINGS = frozenset(
    {"CRAWLER_AUTHKEY", "CRAWLER_NODE_ID", "CRAWLER_SHARED_TERMINAL", "CRAWLER_METRICS_DIR"}
)


def _positive(value: float) -> bool:
    return value > 0


def _not_negative(value: float) -> bool:
    return value >= 0


def _networks(values: tuple[str, ...]) -> bool:
    try:
        for value in values:
            ipaddress.ip_network(value)
    except ValueError:
        return False
    return True


def _regexes(values: tuple[str, ...]) -> bool:
    try:
        for value in values:
            re.compile(value)
    except re.error:
        return False
    return True


def _http_urls(values: tuple[str, ...]) -> bool:
    return all(value.lower().startswith(("http://", "https://")) for value in values)


def _host_rules(values: tuple[str, ...]) -> bool:
    for value in values:
        parse_host_rule(value)  # raises a ConfigError that quotes the bad entry
    return True


def _header_rules(values: tuple[str, ...]) -> bool:
    for number, value in enumerate(values, 1):
        parse_header_rule(value, number)  # raises a ConfigError that never shows the value
    return True


def _header_value(value: str) -> bool:
    # A CR or LF would end the header and start another one (header injection);
    # http.client encodes header values as latin-1 and requests refuses leading spaces.
    return value == value.strip() and all(" " <= char <= "~" for char in value)


def per_core(count: int) -> int:
    """A process count as the settings give it, where 0 means one per core this
    process may run on (its CPU affinity, not every core of the machine)."""
    if count:
        return count
    try:
        return len(os.sched_getaffinity(0)) or 1
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def _setting(default: Any, check: typing.Callable[[Any], bool] | None = None, rule: str = ""):
    return field(default=default, metadata={"check": check, "rule": rule})


@dataclass(frozen=True)
class CrawlConfig:
    """How the harvester walks pages."""

    max_depth: int = _setting(5, _not_negative, "must be >= 0")
    max_pages: int = _setting(10000, _not_negative, "must be >= 0 (0 means no limit)")
    max_images: int = _setting(0, _not_negative, "must be >= 0 (0 means no limit)")
    same_host: bool = True
    allow_hosts: tuple[str, ...] = ()
    allow_subdomains: bool = False
    prefixes: tuple[str, ...] = _setting((), _http_urls, "must be http:// or https:// URLs")
    include: tuple[str, ...] = _setting((), _regexes, "must be valid regular expressions")
    exclude: tuple[str, ...] = _setting((), _regexes, "must be valid regular expressions")
    obey_nofollow: bool = False
    image_hosts: tuple[str, ...] = ()
    page_workers: int = _setting(64, _positive, "must be > 0")
    parse_processes: int = _setting(0, _not_negative, "must be >= 0 (0 means one per core)")
    page_timeout: float = _setting(15.0, _positive, "must be > 0")
    max_page_bytes: int = _setting(10 * 1024 * 1024, _positive, "must be > 0")
    user_agent: str = _setting(
        "distributed-image-crawler/0.1 (+https://example.org/crawler-contact)",
        _header_value,
        "must be printable ASCII without control characters (CR, LF, tab) "
        "or leading/trailing spaces: it is sent as the User-Agent header",
    )
    obey_robots: bool = True
    allow_private: bool = False
    allow_networks: tuple[str, ...] = _setting(
        (), _networks, "must be IP networks, e.g. 10.1.0.0/16"
    )
    max_redirects: int = _setting(10, _not_negative, "must be >= 0")
    ca_bundle: str = ""
    cookies: str = ""
    proxy: str = ""
    headers: tuple[str, ...] = _setting((), _header_rules, "")
    sitemaps: bool = True
    max_sitemaps: int = _setting(100, _not_negative, "must be >= 0")
    referer: str = _setting(
        "page", lambda v: v in ("page", "origin", "none"), "must be page, origin or none"
    )


@dataclass(frozen=True)
class QueueConfig:
    """How the harvester serves tasks to downloader nodes."""

    listen: str = "127.0.0.1:5599"
    lease_seconds: float = _setting(60.0, _positive, "must be > 0")
    max_attempts: int = _setting(3, _positive, "must be > 0")
    node_timeout: float = _setting(30.0, _positive, "must be > 0")
    linger_seconds: float = _setting(10.0, _not_negative, "must be >= 0")
    authkey_file: str = ""
    max_connections: int = _setting(256, _positive, "must be > 0")
    handshake_timeout: float = _setting(10.0, _positive, "must be > 0")
    max_lease_wait: float = _setting(2.0, _positive, "must be > 0")


@dataclass(frozen=True)
class PolitenessConfig:
    """Per-host limits the harvester enforces across every downloader node."""

    host_concurrency: int = _setting(8, _positive, "must be > 0")
    host_delay: float = _setting(0.0, _not_negative, "must be >= 0")
    host_limits: tuple[str, ...] = _setting((), _host_rules, "")
    host_down_timeout: float = _setting(600.0, _not_negative, "must be >= 0")


@dataclass(frozen=True)
class DownloadConfig:
    """How a downloader node fetches images."""

    connect: str = "127.0.0.1:5599"
    processes: int = _setting(0, _not_negative, "must be >= 0 (0 means one per core)")
    concurrency: int = _setting(32, _positive, "must be > 0")
    batch_size: int = _setting(0, _not_negative, "must be >= 0 (0 means the concurrency)")
    connect_timeout: float = _setting(10.0, _positive, "must be > 0")
    read_timeout: float = _setting(30.0, _positive, "must be > 0")
    total_timeout: float = _setting(300.0, _positive, "must be > 0")
    max_image_bytes: int = _setting(
        64 * 1024 * 1024, lambda v: 0 < v < 2**31, "must be > 0 and < 2147483648"
    )
    min_width: int = _setting(0, _not_negative, "must be >= 0")
    min_height: int = _setting(0, _not_negative, "must be >= 0")
    wait_for_harvester: float = _setting(0.0, _not_negative, "must be >= 0 (0 means forever)")
    sync_files: bool = True
    report_interval: float = _setting(0.25, _positive, "must be > 0")
    shutdown_grace: float = _setting(10.0, _positive, "must be > 0")
    spool: str = ""


@dataclass(frozen=True)
class OutputConfig:
    """Where results go."""

    out: str = "downloads"
    state: str = ""
    log: str = ""
    totals_interval: float = _setting(2.0, _positive, "must be > 0")

    @property
    def out_dir(self) -> Path:
        return Path(self.out)

    @property
    def state_dir(self) -> Path:
        return Path(self.state) if self.state else self.out_dir / ".state"

    @property
    def log_path(self) -> Path:
        return Path(self.log) if self.log else self.out_dir / "progress.log"


def _metrics_address(value: str) -> bool:
    try:
        return not value or bool(metrics_address(value))
    except ConfigError:
        return False


@dataclass(frozen=True)
class MetricsConfig:
    """The Prometheus endpoint of ``crawler harvest`` and ``crawler download``."""

    metrics: str = _setting(
        "", _metrics_address, "must be HOST:PORT, or a PORT on 127.0.0.1 (e.g. 9100)"
    )
    metrics_top_hosts: int = _setting(20, _positive, "must be > 0")
    metrics_top_nodes: int = _setting(50, _positive, "must be > 0")
    metrics_linger: float = _setting(15.0, _not_negative, "must be >= 0")


@dataclass(frozen=True)
class RenderConfig:
    """The browser pass for pages whose scripts make their images (``crawler.render``)."""

    render: str = _setting(
        "never", lambda v: v in ("never", "auto", "always"), "must be never, auto or always"
    )
    render_concurrency: int = _setting(2, _positive, "must be > 0")
    render_timeout: float = _setting(20.0, _positive, "must be > 0")
    render_pages_per_browser: int = _setting(100, _positive, "must be > 0")
    render_max_requests: int = _setting(300, _positive, "must be > 0")
    chromium: str = ""


@dataclass(frozen=True)
class TlsConfig:
    """TLS on the wire between harvester and nodes (``crawler.wire.tls``); off when empty.

    The harvester serves TLS when given ``tls_cert`` and checks nodes' certificates
    (mutual TLS) when also given ``tls_ca``. A node or ``crawler status`` speaks TLS
    when given ``tls_ca`` or ``tls_cert``, and always checks the harvester's certificate
    (against ``tls_ca``, else the system's trusted CAs).
    """

    tls_cert: str = ""
    tls_key: str = ""
    tls_ca: str = ""

    @property
    def enabled(self) -> bool:
        return bool(self.tls_cert or self.tls_ca)


@dataclass(frozen=True)
class DatasetConfig:
    """A crawl for a dataset (``crawler.dataset``; "Building a dataset" in the README).

    ``for_dataset``: each (image, page) reference is written to
    ``OUT/references.jsonl`` with the page's text for it, each host's
    ``/.well-known/tdmrep.json`` is read, and an opted-out image (``X-Robots-Tag:
    noai``, TDMRep ...) is not downloaded unless ``ignore_opt_out``. ``variants``:
    ``largest`` fetches only the largest candidate of each srcset/picture.
    ``near_duplicate_distance``: the Hamming distance of perceptual hashes at or
    under which the export groups two images (``dataset.neardup``).
    """

    for_dataset: bool = False
    ignore_opt_out: bool = False
    variants: str = _setting("all", lambda v: v in ("all", "largest"), "must be all or largest")
    near_duplicate_distance: int = _setting(8, lambda v: 0 <= v <= 16, "must be from 0 to 16")
    shard_size: int = _setting(10000, _positive, "must be > 0")


@dataclass(frozen=True)
class SharedConfig:
    """A crawl shared through Redis (``crawler.shared``; README "Scaling out with Redis").

    ``broker``: ``redis://[:password@]host:port/db`` or ``rediss://`` (empty: the
    embedded broker). ``crawl_name`` names the crawl in it (``--crawl``). Hosts are
    hashed onto ``partitions`` partitions (fixed when the crawl starts); each is owned
    by one live harvester, whose lease on it lasts ``partition_lease`` seconds and is
    renewed three times in that time. The password may also come from
    ``redis_password`` (``CRAWLER_REDIS_PASSWORD``) or ``redis_password_file`` (mode
    0600); it is never printed or logged.
    """

    broker: str = _setting(
        "",
        lambda v: v == "" or v.partition("://")[0] in ("redis", "rediss"),
        "must be a redis:// or rediss:// URL",
    )
    crawl_name: str = ""
    partitions: int = _setting(64, lambda v: 1 <= v <= 1024, "must be from 1 to 1024")
    partition_lease: float = _setting(10.0, lambda v: v >= 1, "must be >= 1")
    redis_password: str = field(default="", repr=False)
    redis_password_file: str = ""


@dataclass(frozen=True)
class Config:
    crawl: CrawlConfig = field(default_factory=CrawlConfig)
    queue: QueueConfig = field(default_factory=QueueConfig)
    politeness: PolitenessConfig = field(default_factory=PolitenessConfig)
    download: DownloadConfig = field(default_factory=DownloadConfig)
    output: OutputConfig = field(default_factory=OutputConfig)
    metrics: MetricsConfig = field(default_factory=MetricsConfig)
    render: RenderConfig = field(default_factory=RenderConfig)
    tls: TlsConfig = field(default_factory=TlsConfig)
    dataset: DatasetConfig = field(default_factory=DatasetConfig)
    shared: SharedConfig = field(default_factory=SharedConfig)


SECTIONS: dict[str, type] = {f.name: f.default_factory for f in dataclasses.fields(Config)}


def _key_index() -> dict[str, tuple[str, dataclasses.Field]]:
    index: dict[str, tuple[str, dataclasses.Field]] = {}
    for section, cls in SECTIONS.items():
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            f.type = hints[f.name]
            index[f.name] = (section, f)
    return index


KEYS = _key_index()


# The wires of ``crawler.wire`` (a test keeps the two lists equal): ``tcp://HOST:PORT``
# (or plain ``HOST:PORT``), the harvester's manager; ``memory://NAME``, in this process;
# ``redis://`` and ``rediss://``, a crawl shared through Redis (``crawler.shared``).
BROKER_SCHEMES = ("tcp", "memory", "redis", "rediss")


def split_broker_url(url: str, key: str) -> tuple[str, str]:
    """``"tcp://h:1"`` -> ``("tcp", "h:1")``; a URL without a scheme is ``tcp``."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        return "tcp", url
    if scheme not in BROKER_SCHEMES:
        known = ", ".join(f"{name}://" for name in BROKER_SCHEMES)
        raise ConfigError(f"{key}: unknown broker scheme {scheme}:// in {url!r} ({known})")
    return scheme, rest


def check_broker_url(url: str, key: str) -> None:
    """Raise ``ConfigError`` (naming ``key``) unless ``url`` is a broker URL."""
    scheme, rest = split_broker_url(url, key)
    if scheme == "tcp":
        parse_address(rest, key)
    elif not rest:
        raise ConfigError(f"{key}: {scheme}:// needs a name, got {url!r}")


def parse_address(text: str, key: str = "address") -> tuple[str, int]:
    """``"HOST:PORT"`` -> ``(host, port)``; IPv6 hosts go in brackets."""
    host, sep, port = text.rpartition(":")
    bracketed = host.startswith("[") and host.endswith("]")
    host = host[1:-1] if bracketed else host
    # Without brackets "::1:5599" is ambiguous; a leftover bracket is a typo; a host
    # holds no space or control character (the address is written to the progress log).
    malformed = "[" in host or "]" in host or (":" in host and not bracketed)
    malformed = malformed or " " in host or not host.isprintable()
    digits = port.isascii() and port.isdigit()  # "²".isdigit() is True, int("²") fails
    if not sep or not host or malformed or not digits or not 0 < int(port) < 65536:
        raise ConfigError(f"{key}: expected HOST:PORT (e.g. 127.0.0.1:5599), got {text!r}")
    return host, int(port)


def metrics_address(text: str) -> tuple[str, int]:
    """``"HOST:PORT"`` -> ``(host, port)``; a bare ``PORT`` is on 127.0.0.1."""
    if text.isascii() and text.isdigit():
        text = f"127.0.0.1:{text}"
    return parse_address(text, "metrics")


def _coerce(key: str, f: dataclasses.Field, value: Any, origin: str) -> Any:
    """Check a value from a file (typed) against the field's type; return it normalized."""
    expected = f.type
    where = f"{key} (from {origin})"
    if expected is bool:
        ok = isinstance(value, bool)
    elif expected is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif expected is float:
        ok = isinstance(value, int | float) and not isinstance(value, bool)
        value = float(value) if ok else value
    elif expected is str:
        ok = isinstance(value, str)
    else:  # tuple[str, ...]
        ok = isinstance(value, list | tuple) and all(isinstance(v, str) for v in value)
        value = tuple(value) if ok else value
    shown = "a value not shown (it is secret)" if f.name in SECRET_KEYS else repr(value)
    if not ok:
        raise ConfigError(f"{where}: expected {_type_name(expected)}, got {shown}")
    check = f.metadata.get("check")
    if check is not None and not check(value):
        raise ConfigError(f"{where}: {f.metadata['rule']}, got {shown}")
    return value


def _type_name(expected: Any) -> str:
    if isinstance(expected, types.GenericAlias):
        return "a list of strings"
    return {bool: "true or false", int: "an integer", float: "a number", str: "a string"}[expected]


def _from_text(key: str, f: dataclasses.Field, text: str, origin: str) -> Any:
    """Parse an environment string into the field's type, then check it."""
    expected = f.type
    value: Any = text
    try:
        if expected is bool:
            lowered = text.strip().lower()
            if lowered not in {"1", "0", "true", "false", "yes", "no", "on", "off"}:
                raise ValueError
            value = lowered in {"1", "true", "yes", "on"}
        elif expected is int:
            value = int(text)
        elif expected is float:
            value = float(text)
        elif expected is not str:
            value = [part.strip() for part in text.split(",") if part.strip()]
    except ValueError:
        raise ConfigError(
            f"{key} (from {origin}): expected {_type_name(expected)}, got {text!r}"
        ) from None
    return _coerce(key, f, value, origin)


def read_toml(path: Path) -> dict[str, dict[str, Any]]:
    """Read a config file: ``[section]`` tables of known keys only."""
    try:
        with path.open("rb") as handle:
            data = tomllib.load(handle)
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {path}") from None
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    values: dict[str, Any] = {}
    for section, table in data.items():
        if section not in SECTIONS:
            known = ", ".join(SECTIONS)
            raise ConfigError(f"{path}: unknown section [{section}] (known: {known})")
        if not isinstance(table, dict):
            raise ConfigError(f"{path}: {section} must be a [{section}] table")
        for key, value in table.items():
            if key not in KEYS or KEYS[key][0] != section:
                raise ConfigError(f"{path}: unknown key {section}.{key}")
            values[key] = _coerce(f"{section}.{key}", KEYS[key][1], value, str(path))
    return values


def read_environment(environ: Mapping[str, str]) -> dict[str, Any]:
    """Read ``CRAWLER_<KEY>`` variables; an unknown one is an error, not a silent no-op."""
    values: dict[str, Any] = {}
    for name, text in environ.items():
        if not name.startswith(ENV_PREFIX) or name in ENV_NOT_SETTINGS:
            continue
        key = name[len(ENV_PREFIX) :].lower()
        if key not in KEYS:
            raise ConfigError(f"unknown environment setting {name}")
        values[key] = _from_text(name, KEYS[key][1], text, "environment")
    return values


def check_flags(flags: Mapping[str, Any]) -> dict[str, Any]:
    """Validate values given on the command line (already typed by argparse)."""
    values = {}
    for key, value in flags.items():
        if value is None:
            continue
        flag = "--" + key.replace("_", "-")
        values[key] = _coerce(flag, KEYS[key][1], value, "command line")
    return values


def build_config(values: Mapping[str, Any]) -> Config:
    """Make a Config from flat ``key -> value`` settings (already checked)."""
    per_section: dict[str, dict[str, Any]] = {name: {} for name in SECTIONS}
    for key, value in values.items():
        per_section[KEYS[key][0]][key] = value
    config = Config(**{name: SECTIONS[name](**kw) for name, kw in per_section.items()})
    check_broker_url(config.queue.listen, "listen")
    check_broker_url(config.download.connect, "connect")
    return config


def load_config(
    path: Path | None = None,
    environ: Mapping[str, str] | None = None,
    flags: Mapping[str, Any] | None = None,
) -> Config:
    """Merge the layers: defaults < file < environment < flags."""
    values: dict[str, Any] = {}
    if path is not None:
        values.update(read_toml(path))
    values.update(read_environment(os.environ if environ is None else environ))
    values.update(check_flags(flags or {}))
    return build_config(values)


_HEADER_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")  # an HTTP token (RFC 9110)


@dataclass(frozen=True)
class HeaderRule:
    """``headers`` entry: ``"PATTERN Name: value"``, the header sent with every request
    to a host the pattern covers (``urls.host_matches``). The value is secret: it is
    never shown, in a message or a repr."""

    pattern: str
    name: str
    value: str = field(repr=False)


def parse_header_rule(text: str, number: int = 1) -> HeaderRule:
    pattern, _, header = text.strip().partition(" ")
    name, colon, value = header.partition(":")
    name, value = name.strip(), value.strip()
    where = f"headers: entry {number}"
    if not pattern or not colon or not _HEADER_NAME.fullmatch(name):
        shown = f"{pattern} {name}".strip() if _HEADER_NAME.fullmatch(name) else pattern
        raise ConfigError(
            f"{where} ({shown!r}...): expected 'PATTERN Name: value', e.g. "
            "'*.example.org Authorization: Bearer TOKEN' (the value is not shown)"
        )
    if not _header_value(value) or not value:
        raise ConfigError(
            f"{where} ({pattern} {name}): the value must be printable ASCII without "
            "control characters (the value is not shown)"
        )
    return HeaderRule(pattern, name, value)


_RULE = re.compile(r"^\s*(\S+)((?:\s+\w+\s*=\s*\S+)*)\s*$")


_FIELD = re.compile(r"(\w+)\s*=\s*(\S+)")


@dataclass(frozen=True)
class HostRule:
    """``host_limits`` entry: ``"PATTERN concurrency=N delay=SECONDS"`` (either optional)."""

    pattern: str
    concurrency: int | None = None
    delay: float | None = None


def parse_host_rule(text: str) -> HostRule:
    match = _RULE.match(text)
    if not match:
        raise ConfigError(f"host_limits: expected 'PATTERN concurrency=N delay=S', got {text!r}")
    fields: dict[str, float] = {}
    for name, value in _FIELD.findall(match.group(2)):
        try:
            number = float(value)
        except ValueError:
            number = -1.0
        if name not in ("concurrency", "delay") or number < 0:
            raise ConfigError(
                f"host_limits: {text!r}: expected concurrency=N (N >= 1) and/or "
                f"delay=SECONDS (>= 0), got {name}={value}"
            )
        fields[name] = number
    concurrency = fields.get("concurrency")
    if concurrency is not None and (concurrency < 1 or concurrency != int(concurrency)):
        raise ConfigError(f"host_limits: {text!r}: concurrency must be a whole number >= 1")
    return HostRule(
        match.group(1),
        None if concurrency is None else int(concurrency),
        fields.get("delay"),
    )
