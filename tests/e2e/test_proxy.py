"""A crawl through a forward proxy, with real harvester and downloader processes:
every page and image request goes through it."""

from __future__ import annotations

from tests.support.proxy import ForwardProxy


def test_a_whole_crawl_goes_through_the_proxy(cluster, tmp_path):
    proxy = ForwardProxy()
    try:
        truth = cluster.serve_site(pages=4, images=30, seed=17)
        out = tmp_path / "downloads"
        cluster.harvester(out, env={**cluster.env, "CRAWLER_PROXY": proxy.url})
        cluster.downloader("node-a", out, "--proxy", proxy.url)
        assert cluster.wait_all(["harvester", "node-a"]) == {"harvester": 0, "node-a": 0}
        cluster.check(truth, out, nodes=1)
        through = {target for method, target in proxy.requests if method == "GET"}
        base = cluster.site_url.rstrip("/")
        assert {base + image["path"] for image in truth["images"]} <= through
        assert base + "/index.html" in through and base + "/robots.txt" in through
    finally:
        proxy.close()
