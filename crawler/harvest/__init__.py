"""The harvester: the crawl loop (frontier -> pages -> image tasks -> manifest), its scope,
its parse workers, and requeueing for ``verify``/``--retry-failed``."""
