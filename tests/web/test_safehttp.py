"""The address policy (pure) and the redirect/encoding rules of crawler.web.safehttp."""

from __future__ import annotations

import http.server
import ipaddress
import socket
import threading

import gevent.socket
import pytest
import requests

from crawler.config import CrawlConfig, load_config
from crawler.demo.server import serve as serve_files
from crawler.errors import ConfigError
from crawler.web.credentials import HostHeaders
from crawler.web.safehttp import (
    AddressPolicy,
    SessionOptions,
    _pool_classes,
    make_session,
    open_url,
    tls_verify,
)

PUBLIC = ["93.184.216.34", "8.8.8.8", "2606:4700::1111", "1.1.1.1"]
NOT_PUBLIC = [
    "127.0.0.1",
    "127.8.9.10",
    "10.1.2.3",
    "172.16.0.1",
    "172.31.255.254",
    "192.168.1.1",
    "169.254.169.254",
    "100.64.0.1",
    "0.0.0.0",
    "224.0.0.1",
    "239.255.255.250",
    "255.255.255.255",
    "::1",
    "::",
    "fe80::1",
    "fe80::1%eth0",
    "fc00::1",
    "fd12:3456::1",
    "ff02::1",
    "::ffff:127.0.0.1",
    "::ffff:10.0.0.1",
    "::ffff:169.254.169.254",
]


@pytest.mark.parametrize("address", PUBLIC)
def test_public_addresses_are_allowed(address):
    assert AddressPolicy().allows(address)


@pytest.mark.parametrize("address", NOT_PUBLIC)
def test_non_public_addresses_are_refused_by_default(address):
    assert not AddressPolicy().allows(address)


@pytest.mark.parametrize("address", NOT_PUBLIC + PUBLIC)
def test_allow_private_allows_everything(address):
    assert AddressPolicy(allow_private=True).allows(address)


def test_allowed_networks_open_only_themselves():
    policy = AddressPolicy(allowed_networks=(ipaddress.ip_network("10.1.0.0/16"),))
    assert policy.allows("10.1.200.3")
    assert policy.allows("::ffff:10.1.0.9")
    assert not policy.allows("10.2.0.1")
    assert not policy.allows("127.0.0.1")
    assert policy.allows("93.184.216.34")


def test_policy_from_config():
    config = CrawlConfig(allow_networks=("127.0.0.2/32", "fd00::/8"))
    policy = AddressPolicy.from_config(config)
    assert policy.allows("127.0.0.2") and policy.allows("fd00::5")
    assert not policy.allows("127.0.0.1")


def test_a_bad_network_in_the_config_names_the_key():
    with pytest.raises(ConfigError, match="CRAWLER_ALLOW_NETWORKS"):
        load_config(environ={"CRAWLER_ALLOW_NETWORKS": "10.0.0.0/8,not-a-net"})


@pytest.mark.parametrize("socketpair", [socket.socketpair, gevent.socket.socketpair])
def test_a_pooled_connection_is_reused_only_while_its_peer_is_silent(socketpair):
    """Both paths of the reuse check (a peek on the socket gevent wraps, urllib3's own
    for plain sockets): idle is reusable; bytes no request asked for, or the peer's
    close, are not; the check consumes nothing."""
    connection_class = _pool_classes(AddressPolicy())["http"].ConnectionCls
    ours, peer = socketpair()
    connection = connection_class("images.example", 80)
    connection.sock = ours
    assert connection.is_connected
    peer.sendall(b"x")
    assert not connection.is_connected
    assert ours.recv(1) == b"x"
    assert connection.is_connected
    peer.close()
    assert not connection.is_connected
    ours.close()
    connection.sock = None
    assert not connection.is_connected


# -- which CAs HTTPS certificates are checked against ---------------------------------


def test_the_ca_bundle_setting_wins_then_the_requests_variables(tmp_path):
    mine, theirs, curl = (tmp_path / name for name in ("mine.pem", "theirs.pem", "curl.pem"))
    for path in (mine, theirs, curl):
        path.write_text("-----BEGIN CERTIFICATE-----\n")
    environ = {"REQUESTS_CA_BUNDLE": str(theirs), "CURL_CA_BUNDLE": str(curl)}
    assert tls_verify(str(mine), environ) == str(mine)
    assert tls_verify("", environ) == str(theirs)
    assert tls_verify("", {"CURL_CA_BUNDLE": str(curl)}) == str(curl)
    assert tls_verify("", {}) is True
    assert tls_verify(str(tmp_path), {}) == str(tmp_path)  # a folder of hashed certificates


@pytest.mark.parametrize(
    ("setting", "environ", "origin"),
    [
        ("/nowhere/ca.pem", {}, "ca_bundle"),
        ("", {"REQUESTS_CA_BUNDLE": "/nowhere/ca.pem"}, "REQUESTS_CA_BUNDLE"),
    ],
)
def test_a_ca_bundle_that_is_not_there_is_said_at_start_with_its_origin(setting, environ, origin):
    with pytest.raises(ConfigError, match=f"^{origin}: no readable CA bundle .* '/nowhere/ca.pem'"):
        tls_verify(setting, environ)


def test_a_session_checks_certificates_against_its_bundle_on_both_paths(private_site):
    url = private_site.url + "index.html"
    trusting = make_session(
        2, "ua", AddressPolicy(allow_private=True), SessionOptions(verify=str(private_site.ca_pem))
    )
    public_only = make_session(2, "ua", AddressPolicy(allow_private=True))
    for lean in (False, True):
        with open_url(trusting, url, 5.0, 3, lean=lean) as response:
            assert response.status_code == 200
        with pytest.raises(requests.exceptions.SSLError):
            open_url(public_only, url, 5.0, 3, lean=lean)


def test_a_header_rule_is_not_carried_across_a_redirect_to_another_host(tmp_path):
    (tmp_path / "x.html").write_text("x")
    carried = []
    with serve_files(tmp_path) as other:

        class Redirect(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                carried.append(self.headers.get("X-Key"))
                self.send_response(302)
                self.send_header("Location", other.url + "x.html")
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        first = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Redirect)
        threading.Thread(target=first.serve_forever, daemon=True).start()
        try:
            port = first.server_address[1]
            rules = HostHeaders.from_config((f"127.0.0.1:{port} X-Key: K",))
            session = make_session(
                2, "ua", AddressPolicy(allow_private=True), SessionOptions(host_headers=rules)
            )
            for lean in (False, True):
                with open_url(session, f"http://127.0.0.1:{port}/", 5.0, 3, lean=lean) as response:
                    assert response.status_code == 200
                assert "x-key" not in other.header_names["/x.html"]
                assert "user-agent" in other.header_names["/x.html"]
            assert carried == ["K", "K"]
        finally:
            first.shutdown()
            first.server_close()
