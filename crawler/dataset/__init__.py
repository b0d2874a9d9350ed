"""From a crawl to a dataset: near-duplicate groups, WebDataset and Parquet shards, the
dataset card, and the export that makes them (the opt-out signals are ``web.optout``)."""
