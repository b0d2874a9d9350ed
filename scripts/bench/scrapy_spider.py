"""Baseline: how a Scrapy user collects a site's images.

A spider that follows every in-site link (LinkExtractor, which skips links to images
and other non-pages by extension) and yields, per page, the image URLs found the usual
way: <img src>, lazy data-src, srcset of <img> and <source>, and <a href> ending in an
image extension. FilesPipeline (not ImagesPipeline: no re-encoding, no thumbnails)
stores the original bytes under FILES_STORE/full/<sha1 of the URL>.<ext> and fetches
each URL once per run.

    scrapy runspider scrapy_spider.py -a start=URL -s FILES_STORE=DIR \
        -s CONCURRENT_REQUESTS=128 -s CONCURRENT_REQUESTS_PER_DOMAIN=128
"""

from urllib.parse import urlsplit

import scrapy
from scrapy.linkextractors import LinkExtractor

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".gif", ".webp", ".avif", ".bmp", ".svg")


class SiteImages(scrapy.Spider):
    name = "site_images"
    custom_settings = {  # noqa: RUF012 (Scrapy's documented way)
        "ITEM_PIPELINES": {"scrapy.pipelines.files.FilesPipeline": 1},
        "ROBOTSTXT_OBEY": True,
        "AUTOTHROTTLE_ENABLED": False,
        "DOWNLOAD_DELAY": 0,
        "DEPTH_LIMIT": 10,
        "LOG_LEVEL": "WARNING",
        "TELNETCONSOLE_ENABLED": False,  # it would open a port of its own
        "MEDIA_ALLOW_REDIRECTS": True,
        "RETRY_ENABLED": True,
    }

    def __init__(self, start: str, **kwargs) -> None:
        super().__init__(**kwargs)
        self.start_urls = [start]
        # OffsiteMiddleware drops other hosts' pages (LinkExtractor's own allow_domains
        # would compare host:port with the bare host and drop every link).
        self.allowed_domains = [urlsplit(start).hostname]
        self.links = LinkExtractor()

    def parse(self, response):
        found = set(response.css("img::attr(src), img::attr(data-src)").getall())
        for srcset in response.css("img::attr(srcset), source::attr(srcset)").getall():
            found.update(part.split()[0] for part in srcset.split(",") if part.strip())
        for href in response.css("a::attr(href)").getall():
            if urlsplit(href).path.lower().endswith(IMAGE_EXTENSIONS):
                found.add(href)
        urls = sorted(response.urljoin(u) for u in found if not u.startswith("data:"))
        if urls:
            yield {"page": response.url, "file_urls": urls}
        for link in self.links.extract_links(response):
            yield response.follow(link, callback=self.parse)
