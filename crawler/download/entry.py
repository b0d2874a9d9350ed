"""The entry of a downloader process. Its first statement patches the standard library
for gevent: imported before anything imports ``socket`` or ``ssl`` (``cli.py`` imports
it first thing for ``crawler download``), it makes every blocking call of the node
cooperative. Import it nowhere else: the patch is for the whole process."""

from gevent import monkey

monkey.patch_all()

from crawler.config import Config  # noqa: E402
from crawler.download.node import DownloaderNode  # noqa: E402
from crawler.download.processes import say_metrics  # noqa: E402
from crawler.metrics import node_metrics  # noqa: E402


def run_node(config: Config, authkey: bytes, node_id: str) -> int:
    """One process of a downloader node, until the crawl is done; its exit code. With
    metrics served, the final figures wait for a scrape (``metrics_linger`` at most)."""
    metrics = node_metrics(config.metrics)
    try:
        say_metrics(node_id, metrics.where)
        node = DownloaderNode(config, authkey, node_id, metrics=metrics)
        code = node.run()
        if code == 0:  # (a signal now stops the node once more: the wait ends)
            metrics.linger(config.metrics.metrics_linger, lambda: node.stopping)
        return code
    finally:
        metrics.close()
