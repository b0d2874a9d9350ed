"""What a request carries for its host besides the crawl's User-Agent and Referer:
the cookies of a browser's ``cookies.txt`` (``cookies``) and per-host header rules
(``headers``), for pages and images alike.

Guarantee: a cookie goes only to the domains and paths (and, when marked secure, only
over HTTPS) its line names, as a browser sends it (``http.cookiejar``'s policy); a
header rule only to the hosts its pattern covers, checked again after each redirect.
Their values are secrets: no message of ours shows them.
"""

from __future__ import annotations

import functools
import http.cookiejar
from collections.abc import Mapping

from crawler.config import CrawlConfig, HeaderRule, parse_header_rule
from crawler.errors import ConfigError
from crawler.urls import host_matches, host_of


@functools.cache
def load_cookies(path: str) -> http.cookiejar.CookieJar:
    """The cookies of a Netscape ``cookies.txt`` (as browsers and their extensions
    export them), loaded once per process; a file that is not there or not in that
    format is a ``ConfigError`` naming the file, never showing a value.

    Session cookies (expiry 0 or empty in the file) are kept for the whole crawl."""
    jar = http.cookiejar.MozillaCookieJar(path)
    try:
        jar.load(ignore_discard=True, ignore_expires=True)
    except FileNotFoundError:
        raise ConfigError(f"cookies: no such file {path!r}") from None
    except http.cookiejar.LoadError:  # (an OSError too, so first)
        raise ConfigError(
            f"cookies: {path!r} is not a Netscape cookies.txt (its first line should be "
            "'# Netscape HTTP Cookie File' or '# HTTP Cookie File')"
        ) from None
    except OSError as exc:
        raise ConfigError(f"cookies: cannot read {path!r}: {exc.strerror or exc}") from None
    for cookie in jar:
        if not cookie.expires:  # 0 in the file: a session cookie, not one from 1970
            cookie.expires, cookie.discard = None, False
    return jar


class HostHeaders:
    """The ``headers`` rules: which headers a request for a URL carries."""

    def __init__(self, rules: tuple[HeaderRule, ...] = ()) -> None:
        self.rules = rules

    @classmethod
    def from_config(cls, entries: tuple[str, ...]) -> HostHeaders:
        return cls(tuple(parse_header_rule(text, n) for n, text in enumerate(entries, 1)))

    def __bool__(self) -> bool:
        return bool(self.rules)

    def for_url(self, url: str) -> Mapping[str, str]:
        """Every rule's header whose pattern covers the URL's host (a later rule for
        the same header wins)."""
        netloc = host_of(url)
        return {rule.name: rule.value for rule in self.rules if host_matches(netloc, rule.pattern)}


def credentials(config: CrawlConfig) -> tuple[http.cookiejar.CookieJar | None, HostHeaders]:
    """The cookies (None without a file) and header rules the settings give."""
    jar = load_cookies(config.cookies) if config.cookies else None
    return jar, HostHeaders.from_config(config.headers)
