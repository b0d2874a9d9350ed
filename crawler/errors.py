"""One exception root, so that callers (and ``cli.py``) catch one thing.

Each subclass names a kind of mistake a user can act on; ``cli.py`` prints the
message on one line and exits with the class's ``exit_code`` (2 unless it says
otherwise). Anything else is a bug and keeps its traceback.
"""


class CrawlerError(Exception):
    """Root of every error the crawler raises on purpose."""

    exit_code = 2


class ConfigError(CrawlerError):
    """A configuration file, environment variable or flag is wrong."""


class AuthKeyError(CrawlerError):
    """The manager's authkey is missing, too short or stored unsafely."""


class BrokerUnavailable(CrawlerError):
    """The harvester's queues cannot be reached (not started yet, gone, wrong key)."""


class StateError(CrawlerError):
    """The state or output folder cannot be used (locked by another harvester, unwritable)."""


class OtherCrawl(StateError):
    """The state or output folder holds another crawl (other seeds, or a manifest
    without its state)."""

    exit_code = 4


class UnsafeTarget(CrawlerError):
    """A URL or redirect the crawler refuses to follow (private address, bad scheme, loops)."""

    code = "unsafe_target"


class BlockedAddress(UnsafeTarget):
    code = "blocked_address"


class BadRedirect(UnsafeTarget):
    code = "bad_redirect"


class TooManyRedirects(UnsafeTarget):
    code = "too_many_redirects"


class BadEncoding(UnsafeTarget):
    code = "bad_encoding"


class NotAHarvester(CrawlerError):
    """The address answers, but not as a crawler harvester: another server, or silence."""
