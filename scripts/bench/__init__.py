"""Throughput benchmark: our crawler against Scrapy, img2dataset and a plain gevent list
downloader, on one generated site served by a private nginx on 127.0.0.1.

Run it with ``bash scripts/bench.sh``, which installs what it needs; this package runs in
the separate ``.bench-venv`` (psutil, the baselines) and calls the project's ``.venv`` for
our crawler and the site generator, so neither environment leaks into the other.
"""
