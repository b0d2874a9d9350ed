"""The render stage of the page path: pages whose scripts make their images, in a browser.

``base`` holds the records and the ``Renderer`` protocol, ``hints`` the pure decision of
which pages need a browser, ``chromium`` the Playwright-driven Debian Chromium, and
``double`` the scripted stand-in the crawl loop is tested with.
"""
