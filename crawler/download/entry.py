"""The entry of a downloader process. Its first statement patches the standard library
for gevent: imported before anything imports ``socket`` or ``ssl`` (``cli.py`` imports
it first thing for ``crawler download``), it makes every blocking call of the node
cooperative. Import it nowhere else: the patch is for the whole process."""

from gevent import monkey

monkey.patch_all()

from crawler.config import Config  # noqa: E402
from crawler.download.node import DownloaderNode  # noqa: E402


def run_node(config: Config, authkey: bytes, node_id: str) -> int:
    """One process of a downloader node, until the crawl is done; its exit code."""
    return DownloaderNode(config, authkey, node_id).run()
