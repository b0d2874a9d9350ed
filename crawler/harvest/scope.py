"""Which pages the crawl visits and which images it takes: pure policy, no I/O.

Pages stay on allowed hosts (the seeds' own, plus ``allow_hosts``), optionally their
subdomains, under an optional URL prefix, and must pass the include/exclude regexes.
Images may come from any host unless ``image_hosts`` names some: sites serve their
images from CDNs, and a browser shows those.

Host patterns: ``example.org`` matches that host on any port, ``example.org:8080``
only that port, and ``*.example.org`` the domain itself and every subdomain.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from crawler.config import CrawlConfig
from crawler.urls import has_port, host_matches, host_of, normalize


class Scope:
    """The crawl's page and image scope, built once from the config and the seeds."""

    def __init__(self, crawl: CrawlConfig, seeds: Iterable[str]) -> None:
        self.crawl = crawl
        self.seed_hosts: list[str] = []  # host[:port], exactly
        self._seed_origins: tuple[str, ...] = ()
        for url in seeds:
            self.add_host(url)
        self.prefixes = [normalize(prefix) or prefix for prefix in crawl.prefixes]
        self.include = [re.compile(pattern) for pattern in crawl.include]
        self.exclude = [re.compile(pattern) for pattern in crawl.exclude]

    def add_host(self, url: str) -> None:
        """Allow a seed's host, or the host a seed redirected to (``http`` -> ``https``)."""
        host = host_of(url)
        if host not in self.seed_hosts:
            self.seed_hosts.append(host)
        # A URL that starts with one of these is on a seed's host, without parsing it:
        # the host of a URL is what lies between "//" and the next "/" (pages have many
        # links, most of them to their own site).
        self._seed_origins = tuple(
            f"{scheme}://{seed}/" for seed in self.seed_hosts for scheme in ("http", "https")
        )

    def page_allowed(self, url: str) -> bool:
        if (
            self.crawl.same_host
            and not url.startswith(self._seed_origins)
            and not self._on_page_hosts(host_of(url))
        ):
            return False
        if self.prefixes and not any(url.startswith(prefix) for prefix in self.prefixes):
            return False
        if self.include and not any(pattern.search(url) for pattern in self.include):
            return False
        return not any(pattern.search(url) for pattern in self.exclude)

    def host_allowed(self, url: str) -> bool:
        """The URL's host is one pages may come from (prefixes and patterns aside)."""
        return (
            not self.crawl.same_host
            or url.startswith(self._seed_origins)
            or self._on_page_hosts(host_of(url))
        )

    def image_allowed(self, url: str) -> bool:
        netloc = host_of(url)
        return not self.crawl.image_hosts or any(
            host_matches(netloc, pattern) for pattern in self.crawl.image_hosts
        )

    def _on_page_hosts(self, netloc: str) -> bool:
        if netloc in self.seed_hosts or any(
            host_matches(netloc, pattern) for pattern in self.crawl.allow_hosts
        ):
            return True
        # A seed's subdomains, on any port: www.example.org for example.org, say.
        return self.crawl.allow_subdomains and any(
            host_matches(netloc, _without_port(seed), subdomains=True) for seed in self.seed_hosts
        )


def _without_port(netloc: str) -> str:
    return netloc.rpartition(":")[0] if has_port(netloc) else netloc
