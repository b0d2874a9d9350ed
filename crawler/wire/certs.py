"""``crawler keygen --tls DIR``: a private CA and the certificates of a harvester and its nodes.

Written with the ``cryptography`` library, ECDSA P-256 keys, SHA-256 signatures:

* ``ca.pem``: the CA's certificate (valid ``CA_DAYS``). Its key is used once, to sign
  the two below, and never written: to change the harvester's names, run keygen again
  into a new folder and hand out its files.
* ``harvester.pem``, ``harvester-key.pem``: the harvester's certificate (server
  authentication) for ``localhost``, 127.0.0.1, ::1, this machine's name and every
  ``--host`` given (a name, or an IP address), valid ``LEAF_DAYS``.
* ``node.pem``, ``node-key.pem``: one certificate (client authentication) that every
  node shows, as every node holds the same authkey, valid ``LEAF_DAYS``.

Keys are written mode 0600, the folder 0700 when keygen makes it; nothing is ever
overwritten, and nothing is written at all when one of the files exists.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import socket
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from crawler.errors import ConfigError

CA_DAYS = 3650
LEAF_DAYS = 1095
FILES = ("ca.pem", "harvester.pem", "harvester-key.pem", "node.pem", "node-key.pem")


@dataclass(frozen=True)
class TlsFiles:
    """Where keygen wrote a crawl's TLS files, and the names the harvester's holds."""

    folder: Path
    harvester_names: tuple[str, ...]

    def path(self, name: str) -> Path:
        return self.folder / name


def harvester_names(extra: Iterable[str], hostname: str | None = None) -> tuple[str, ...]:
    """The names and addresses a harvester's certificate holds: loopback, this
    machine's host name, then ``extra``; each once. (No DNS lookup: a fully qualified
    name or an address other machines use goes in ``extra``.)"""
    hostname = socket.gethostname() if hostname is None else hostname
    names = ["localhost", "127.0.0.1", "::1"]
    for name in (hostname, *extra):
        name = name.strip().lower().strip("[]")
        if name and name not in names:
            names.append(name)
    return tuple(names)


def write_tls_files(folder: Path, extra_names: Sequence[str] = ()) -> TlsFiles:
    """Make the CA and the two certificates in ``folder``. Raises ``ConfigError``
    (naming the path, never a key) when a file exists or cannot be written."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    names = harvester_names(extra_names)
    for name in names:
        _check_name(name)
    _prepare(folder)
    now = datetime.datetime.now(datetime.UTC) - datetime.timedelta(minutes=5)

    def name(common: str) -> x509.Name:
        return x509.Name(
            [
                x509.NameAttribute(NameOID.ORGANIZATION_NAME, "distributed-image-crawler"),
                x509.NameAttribute(NameOID.COMMON_NAME, common),
            ]
        )

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = name("crawler private CA")
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + datetime.timedelta(days=CA_DAYS))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_key_usage(x509, cert_sign=True), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), False)
        .sign(ca_key, hashes.SHA256())
    )

    def leaf(common: str, usage: x509.ObjectIdentifier, sans: list[x509.GeneralName]):
        key = ec.generate_private_key(ec.SECP256R1())
        builder = (
            x509.CertificateBuilder()
            .subject_name(name(common))
            .issuer_name(ca_name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now)
            .not_valid_after(now + datetime.timedelta(days=LEAF_DAYS))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(_key_usage(x509, cert_sign=False), critical=True)
            .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), False
            )
        )
        if sans:
            builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
        return builder.sign(ca_key, hashes.SHA256()), key

    sans: list[x509.GeneralName] = []
    for host in names:
        try:
            sans.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            sans.append(x509.DNSName(host))
    harvester, harvester_key = leaf("crawler harvester", ExtendedKeyUsageOID.SERVER_AUTH, sans)
    node, node_key = leaf("crawler node", ExtendedKeyUsageOID.CLIENT_AUTH, [])

    def pem(cert: x509.Certificate) -> bytes:
        return cert.public_bytes(serialization.Encoding.PEM)

    def key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
        return key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )

    contents = {
        "ca.pem": (pem(ca), 0o644),
        "harvester.pem": (pem(harvester), 0o644),
        "harvester-key.pem": (key_pem(harvester_key), 0o600),
        "node.pem": (pem(node), 0o644),
        "node-key.pem": (key_pem(node_key), 0o600),
    }
    written: list[Path] = []
    try:
        for file_name, (data, mode) in contents.items():
            path = folder / file_name
            _write_new(path, data, mode)
            written.append(path)
    except BaseException:
        for path in written:
            path.unlink(missing_ok=True)
        raise
    return TlsFiles(folder, names)


def _key_usage(x509, cert_sign: bool):  # type: ignore[no-untyped-def]
    return x509.KeyUsage(
        digital_signature=not cert_sign,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=cert_sign,
        crl_sign=cert_sign,
        encipher_only=False,
        decipher_only=False,
    )


def _check_name(name: str) -> None:
    try:
        ipaddress.ip_address(name)
        return
    except ValueError:
        pass
    labels = name.split(".")
    if not all(label and len(label) <= 63 for label in labels) or not all(
        char.isalnum() or char in "-*" for label in labels for char in label
    ):
        raise ConfigError(f"keygen --host: {name!r} is neither a host name nor an IP address")


def _prepare(folder: Path) -> None:
    existing = [name for name in FILES if (folder / name).exists()]
    if existing:
        raise ConfigError(
            f"{folder} already holds {', '.join(existing)}; not overwriting TLS files "
            "(use a new folder)"
        )
    try:
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"cannot make {folder}: {exc.strerror}") from None


def _write_new(path: Path, data: bytes, mode: int) -> None:
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    except FileExistsError:
        raise ConfigError(f"{path} already exists; not overwriting it") from None
    except OSError as exc:
        raise ConfigError(f"cannot write {path}: {exc.strerror}") from None
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
    except OSError as exc:
        path.unlink(missing_ok=True)
        raise ConfigError(f"cannot write {path}: {exc.strerror}") from None
