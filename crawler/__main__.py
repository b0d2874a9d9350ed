"""``python -m crawler``: the same entry point as the ``crawler`` console script."""

from crawler.cli import main

raise SystemExit(main())
