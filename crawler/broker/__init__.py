"""The crawl's task board: image tasks in SQLite with leases and retries, the per-host
politeness of the whole cluster, and the thread-safe ``Broker`` that nodes call."""
