"""TLS on the manager wire: the contexts each side uses, and what a failed handshake means.

What TLS adds to the authkey handshake (which stays, inside TLS): everything on the
wire is encrypted (URLs, results, the crawl's User-Agent), a connection's messages
cannot be changed or injected after it is authenticated, and nodes talk only to a
harvester whose certificate their CA signed, for the name or address they connect to.
With ``tls_ca`` on the harvester, only nodes holding a certificate that CA signed get
as far as the key handshake (mutual TLS).

Both ends are this crawler, so the contexts accept TLS 1.2 at least (1.3 is what two
current OpenSSLs agree on). Key files are held to the authkey's rule: readable by
their owner only. Never an error that shows a key or a certificate's contents.

Imported only after gevent has patched ``ssl`` (a node's wire opens it lazily).
"""

from __future__ import annotations

import ssl
import stat
from pathlib import Path

from crawler.config import TlsConfig
from crawler.errors import ConfigError, NotAHarvester, TlsError

# A peer's alerts that mean it refused our certificate (or our lack of one).
_REFUSED_OUR_CERTIFICATE = frozenset(
    {
        "TLSV13_ALERT_CERTIFICATE_REQUIRED",
        "SSLV3_ALERT_BAD_CERTIFICATE",
        "SSLV3_ALERT_CERTIFICATE_UNKNOWN",
        "SSLV3_ALERT_CERTIFICATE_EXPIRED",
        "SSLV3_ALERT_CERTIFICATE_REVOKED",
        "SSLV3_ALERT_UNSUPPORTED_CERTIFICATE",
        "TLSV1_ALERT_UNKNOWN_CA",
        "TLSV1_ALERT_ACCESS_DENIED",
        "TLSV1_ALERT_DECRYPT_ERROR",
    }
)


def server_context(tls: TlsConfig) -> ssl.SSLContext:
    """The harvester's context: its certificate, and with ``tls_ca`` the CA a node's
    certificate must be signed by. Raises ``ConfigError`` naming the file at fault."""
    if not tls.tls_cert:
        raise ConfigError(
            "tls: --tls-ca on the harvester checks the nodes' certificates; the harvester "
            "needs its own too: --tls-cert and --tls-key (`crawler keygen --tls DIR`)"
        )
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    _load_own_certificate(context, tls)
    if tls.tls_ca:
        context.verify_mode = ssl.CERT_REQUIRED
        _load_ca(context, tls.tls_ca)
    return context


def client_context(tls: TlsConfig) -> ssl.SSLContext:
    """A node's context: the harvester's certificate is checked against ``tls_ca``
    (else the system's CAs) and the name connected to; ``tls_cert`` is shown when the
    harvester asks for one."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # CERT_REQUIRED, check_hostname
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    if tls.tls_ca:
        _load_ca(context, tls.tls_ca)
    else:
        context.load_default_certs(ssl.Purpose.SERVER_AUTH)
    if tls.tls_cert:
        _load_own_certificate(context, tls)
    return context


def _load_ca(context: ssl.SSLContext, path: str) -> None:
    _readable(path, "tls_ca")
    try:
        context.load_verify_locations(cafile=path)
    except ssl.SSLError as exc:
        raise ConfigError(f"tls_ca: {path} holds no PEM certificate ({_reason(exc)})") from None


def _load_own_certificate(context: ssl.SSLContext, tls: TlsConfig) -> None:
    _readable(tls.tls_cert, "tls_cert")
    key = tls.tls_key or tls.tls_cert
    _readable(key, "tls_key")
    _private(key)
    try:
        context.load_cert_chain(tls.tls_cert, tls.tls_key or None, password=_no_password)
    except ssl.SSLError as exc:
        raise ConfigError(
            f"tls: {tls.tls_cert} and {key} are not a PEM certificate and its private key "
            f"({_reason(exc)})"
        ) from None


def _no_password() -> bytes:
    raise ConfigError("tls_key: the key is encrypted; give it without a passphrase (mode 0600)")


def _readable(path: str, key: str) -> None:
    try:
        with open(path, "rb"):
            pass
    except OSError as exc:
        raise ConfigError(f"{key}: cannot read {path}: {exc.strerror}") from None


def _private(path: str) -> None:
    mode = stat.S_IMODE(Path(path).stat().st_mode)
    if mode & 0o077:
        raise ConfigError(
            f"refusing private key {path}: mode {mode:04o} lets others read it; "
            f"run `chmod 600 {path}`"
        )


def _reason(exc: ssl.SSLError) -> str:
    return (exc.reason or type(exc).__name__).lower().replace("_", " ")


def handshake_error(exc: ssl.SSLError, where: str) -> Exception:
    """What a node's failed TLS handshake (or first read after it) means, for the user.

    A certificate either side refuses is a ``TlsError`` (final: the settings are
    wrong); a peer that does not speak TLS is ``NotAHarvester``; a connection cut in
    the middle is an ``EOFError`` (the network's, worth a retry).
    """
    if isinstance(exc, ssl.SSLCertVerificationError):
        return TlsError(
            f"the harvester at {where} showed a certificate we do not trust "
            f"({exc.verify_message}): give the CA that signed it (--tls-ca), and sign it for "
            "the name nodes connect to (`crawler keygen --tls DIR --host NAME`)"
        )
    if isinstance(exc, ssl.SSLEOFError | ssl.SSLZeroReturnError | ssl.SSLSyscallError):
        return EOFError(f"the connection closed during the TLS handshake ({_reason(exc)})")
    if exc.reason in _REFUSED_OUR_CERTIFICATE:
        return TlsError(
            f"the harvester at {where} refused this node's certificate ({_reason(exc)}): "
            "it asks for one signed by its --tls-ca (--tls-cert and --tls-key here)"
        )
    return NotAHarvester(
        f"{where} did not answer in TLS ({_reason(exc)}): is the harvester started with --tls-cert?"
    )
