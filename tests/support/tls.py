"""A private CA made by the test (trustme) and an HTTPS demo site on 127.0.0.1 whose
certificate it signed: what an intranet with its own CA looks like."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import trustme

from crawler.demo.server import DemoServer, serve
from crawler.demo.site import generate_site


@dataclass
class PrivateSite:
    server: DemoServer
    url: str  # https://127.0.0.1:PORT/
    ca_pem: Path  # the CA's certificate: the bundle a crawler needs
    truth: dict
    cert_files: tuple[Path, Path]  # the server's chain and key


def make_ca_files(folder: Path) -> tuple[Path, Path, Path]:
    """(CA certificate, server chain, server key) for 127.0.0.1 and localhost."""
    folder.mkdir(parents=True, exist_ok=True)
    ca = trustme.CA()
    leaf = ca.issue_cert("127.0.0.1", "localhost")
    ca_pem, chain, key = folder / "ca.pem", folder / "server.pem", folder / "server.key"
    ca.cert_pem.write_to_path(str(ca_pem))
    leaf.private_key_and_cert_chain_pem.write_to_path(str(chain))
    leaf.private_key_pem.write_to_path(str(key))
    return ca_pem, chain, key


def serve_private_site(tmp_path: Path) -> Iterator[PrivateSite]:
    """A generated site served over HTTPS by a certificate of a fresh private CA
    (``tests/conftest.py`` makes it the ``private_site`` fixture)."""
    ca_pem, chain, key = make_ca_files(tmp_path / "tls")
    truth = generate_site(tmp_path / "site", pages=2, images=6, seed=3)
    server = serve(tmp_path / "site", tls=(chain, key))
    try:
        yield PrivateSite(server, server.url, ca_pem, truth, (chain, key))
    finally:
        server.close()
