"""Forward proxies: which requests go through one, that the address guard still holds
for the target, and pages and images fetched through a real proxy on 127.0.0.1."""

from __future__ import annotations

import pytest

from crawler.config import Config, CrawlConfig
from crawler.demo.server import serve as serve_files
from crawler.demo.site import generate_site
from crawler.download.fetch import FetchLimits, fetch_image
from crawler.errors import BlockedAddress, ConfigError
from crawler.web.pages import fetch_page
from crawler.web.proxies import Proxies, check_target
from crawler.web.safehttp import AddressPolicy, SessionOptions, make_session, open_url
from tests.support.proxy import ForwardProxy


def test_the_setting_wins_then_the_environment_with_no_proxy():
    environ = {
        "HTTP_PROXY": "http://env.lan:3128",
        "https_proxy": "http://envs.lan:3128",
        "NO_PROXY": ".intranet,cdn.test",
    }
    from_env = Proxies.from_settings("", environ)
    assert from_env.for_url("http://a.test/x") == "http://env.lan:3128"
    assert from_env.for_url("https://a.test/x") == "http://envs.lan:3128"
    assert from_env.for_url("http://wiki.intranet/x") is None
    assert from_env.for_url("https://cdn.test:8443/x") is None
    # A proxy set for other programs never takes this machine's loopback.
    assert from_env.for_url("http://127.0.0.1:8080/x") is None
    assert from_env.for_url("http://localhost/x") is None
    mine = Proxies.from_settings("http://mine.lan:8080", environ)
    assert (
        mine.for_url("https://a.test/")
        == mine.for_url("http://127.0.0.1/")
        == ("http://mine.lan:8080")
    )
    assert mine.for_url("http://wiki.intranet/") is None  # NO_PROXY still holds
    assert not Proxies.from_settings("", {})


def test_a_bad_proxy_is_refused_without_its_credentials():
    with pytest.raises(ConfigError, match="proxy: expected") as caught:
        Proxies.from_settings("socks5://user:S3CRET@proxy.lan:1080", {})
    assert "S3CRET" not in str(caught.value)


def test_the_guard_checks_a_proxied_target_before_the_proxy_gets_it():
    with pytest.raises(BlockedAddress, match="non-public"):
        check_target("http://127.0.0.1:9/", AddressPolicy().allows)
    check_target("http://127.0.0.1:9/", AddressPolicy(allow_private=True).allows)


@pytest.fixture
def proxy():
    running = ForwardProxy()
    yield running
    running.close()


def test_pages_and_images_go_through_the_proxy_and_the_guard_still_holds(tmp_path, proxy):
    site = tmp_path / "site"
    truth = generate_site(site, pages=1, images=2, seed=5)
    with serve_files(site) as server:
        config = CrawlConfig(allow_private=True, proxy=proxy.url)
        page = fetch_page(server.url + "index.html", 0, config)
        assert page.error is None and page.images
        image = truth["images"][0]
        url = server.url + image["path"].lstrip("/")
        proxies = Proxies.from_settings(proxy.url, {})
        policy = AddressPolicy(allow_private=True)
        session = make_session(4, "ua", policy, SessionOptions(proxies=proxies))
        result = fetch_image(
            session, 1, url, tmp_path / "out", "n", FetchLimits.from_config(Config())
        )
        assert (result.outcome, result.sha256) == ("stored", image["sha256"])
        assert ("GET", server.url + "index.html") in proxy.requests
        assert ("GET", url) in proxy.requests
        # Without allow_private the target is refused here; the proxy never hears of it.
        seen = len(proxy.requests)
        guarded = make_session(4, "ua", AddressPolicy(), SessionOptions(proxies=proxies))
        with pytest.raises(BlockedAddress):
            open_url(guarded, url, 5.0, 3, lean=True)
        assert len(proxy.requests) == seen


def test_https_goes_through_a_connect_tunnel(proxy, private_site):
    config = CrawlConfig(allow_private=True, proxy=proxy.url, ca_bundle=str(private_site.ca_pem))
    page = fetch_page(private_site.url + "index.html", 0, config)
    assert page.error is None and page.images
    assert ("CONNECT", private_site.url.split("/")[2]) in proxy.requests
