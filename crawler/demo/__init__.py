"""The demo site: a deterministic site of pages and images, its server and the check of a
crawl against it (``scripts/demo.sh``). Not imported by the crawler."""
