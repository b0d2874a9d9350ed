"""What a crawl leaves for people and tools: the manifest, the progress log and ``tail``,
``status``, ``export`` and the HTML report."""
