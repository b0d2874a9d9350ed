"""From a crawl to a dataset: opt-out signals, near-duplicate groups, shards and the
dataset card."""
