"""The web, read safely: HTTP with an address policy, pages and their extraction, CSS,
robots.txt, image checks. Knows nothing of the crawl."""
