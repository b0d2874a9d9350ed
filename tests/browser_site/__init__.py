"""A fixture web site with every image markup kind and trap, for tests/browser_site/check.py."""
