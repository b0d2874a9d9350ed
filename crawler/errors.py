"""Two exception roots: errors a user can act on, and what became of one URL.

``CrawlerError``: each subclass names a kind of mistake a user can act on; ``cli.py``
prints the message on one line and exits with the class's ``exit_code``. Anything
else is a bug and keeps its traceback. The exit codes:

==  ==================================================================================
2   ``ConfigError``, ``AuthKeyError``, ``TlsError``, ``StateError``,
    ``BrokerUnavailable``, ``NotAHarvester``: the command cannot run as given
    (scripts and the end-to-end tests rely on 2 for each of these)
4   ``OtherCrawl``: the state or output folder holds another crawl
==  ==================================================================================

The commands' own codes are not errors: 0 done, 1 ``crawler verify`` found a wrong
or missing file (or ``crawler urls`` could not fetch the page), 3 a crawl that fetched
no page, 5 a harvester that could not write its own files, 128 + signal when stopped.

``OutcomeError``: raised while fetching one URL and caught by the code that fetches
it, which records ``code`` as that URL's outcome (``blocked_address: ...``); the crawl
goes on. Never a ``CrawlerError``: an ``except CrawlerError`` must not take one URL's
outcome for the user's mistake, nor one escape as a one-line error.
"""

EXIT_ERROR = 2
EXIT_OTHER_CRAWL = 4


class CrawlerError(Exception):
    """Root of every error the crawler raises on purpose for the user to act on."""

    exit_code = EXIT_ERROR


class ConfigError(CrawlerError):
    """A configuration file, environment variable or flag is wrong."""

    exit_code = EXIT_ERROR


class AuthKeyError(CrawlerError):
    """The manager's authkey is missing, too short or stored unsafely."""

    exit_code = EXIT_ERROR


class TlsError(CrawlerError):
    """A TLS peer's certificate is refused, or refuses ours: the TLS settings are wrong."""

    exit_code = EXIT_ERROR


class BrokerUnavailable(CrawlerError):
    """The harvester's queues cannot be reached (not started yet, gone, wrong key)."""

    exit_code = EXIT_ERROR


class NotAHarvester(CrawlerError):
    """The address answers, but not as a crawler harvester: another server, or silence."""

    exit_code = EXIT_ERROR


class StateError(CrawlerError):
    """The state or output folder cannot be used (locked by another harvester, unwritable)."""

    exit_code = EXIT_ERROR


class OtherCrawl(StateError):
    """The state or output folder holds another crawl (other seeds, or a manifest
    without its state)."""

    exit_code = EXIT_OTHER_CRAWL


class OutcomeError(Exception):
    """Root of the exceptions that describe one URL's outcome; ``code`` names it."""

    code = "outcome_error"


class UnsafeTarget(OutcomeError):
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
