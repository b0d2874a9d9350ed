"""The dataset card: a pure function of its figures, so plain values test it."""

from __future__ import annotations

from collections import Counter

from crawler.dataset.card import MAX_HOSTS, MAX_SHARDS, CardFigures, dataset_card
from crawler.dataset.shards import META_COLUMNS, ShardInfo


def figures(**changes: object) -> CardFigures:
    made = CardFigures(
        format="webdataset",
        shard_size=10,
        samples=25,
        shards=[
            ShardInfo("00000.tar", 10, 20480),
            ShardInfo("00001.tar", 10, 20480),
            ShardInfo("00002.tar", 5, 10240),
        ],
        hosts=Counter({"a.example": 15, "b.example": 10}),
        total_bytes=3 * 1024 * 1024,
        opted_out_left_out=4,
        opt_out_signals=Counter({"X-Robots-Tag: noai": 3, "meta robots noimageai": 1}),
        near_duplicate_groups=2,
        near_duplicate_images=5,
        max_distance=6,
        images_without_text=7,
        failed=Counter({"http_404": 2, "timeout": 1}),
        created="2025-01-02T03:04:05+00:00",
        command="crawler export /data/crawl --format webdataset --output /data/shards",
    )
    for name, value in changes.items():
        setattr(made, name, value)
    return made


def test_the_card_holds_the_counts() -> None:
    card = dataset_card(figures())
    assert card.startswith("# Image dataset: 25 images in 3 WebDataset shards")
    assert "| images | 25 |" in card
    assert "| shards | 3 (at most 10 images each) |" in card
    assert "| image bytes | 3,145,728 (3.0 MiB) |" in card
    assert "| images without alt text or caption | 7 |" in card
    assert "| opted-out images left out | 4 |" in card
    assert "| near-duplicate groups | 2 (5 images) |" in card
    assert "| images not stored by the crawl | 3 |" in card
    assert "| http_404 | 2 |" in card
    assert "| 00002.tar | 5 | 10,240 |" in card
    assert "| a.example | 15 |" in card and "| b.example | 10 |" in card
    assert "- command: `crawler export /data/crawl --format webdataset" in card
    assert "- date: 2025-01-02T03:04:05+00:00" in card
    assert card == dataset_card(figures())  # the same figures, the same card


def test_hosts_are_capped() -> None:
    hosts = Counter({f"h{n:02d}.example": 100 - n for n in range(MAX_HOSTS + 5)})
    card = dataset_card(figures(hosts=hosts))
    assert "| h00.example | 100 |" in card
    assert f"| h{MAX_HOSTS - 1:02d}.example |" in card
    assert f"| h{MAX_HOSTS:02d}.example |" not in card
    rest = sum(100 - n for n in range(MAX_HOSTS, MAX_HOSTS + 5))
    assert f"and 5 more hosts ({rest:,} images)." in card


def test_shards_are_capped() -> None:
    shards = [ShardInfo(f"{n:05d}.parquet", 10, 1000) for n in range(MAX_SHARDS + 3)]
    card = dataset_card(figures(format="parquet", shards=shards))
    assert f"| {MAX_SHARDS - 1:05d}.parquet | 10 | 1,000 |" in card
    assert f"{MAX_SHARDS:05d}.parquet" not in card
    assert "and 3 more shards (30 images, 3,000 bytes)." in card
    assert "Parquet file, one row per image" in card


def test_opt_outs_left_out_by_signal() -> None:
    card = dataset_card(figures())
    assert "4 images were left out" in card
    assert "| X-Robots-Tag: noai | 3 |" in card
    assert "| meta robots noimageai | 1 |" in card
    assert "kept (--ignore-opt-out)" not in card

    none = dataset_card(figures(opted_out_left_out=0, opt_out_signals=Counter()))
    assert "No image carried an opt-out signal." in none


def test_opt_outs_kept_with_ignore_opt_out() -> None:
    card = dataset_card(figures(ignored_opt_out=True, opted_out_left_out=0, opt_out_signals={}))
    assert "| opted-out images | kept (--ignore-opt-out) |" in card
    assert "were **kept** (`--ignore-opt-out`)" in card
    assert "images were left out" not in card


def test_near_duplicates_and_fields_are_explained() -> None:
    card = dataset_card(figures())
    assert "5 images fall into 2 groups of near-duplicates" in card
    assert "at most 6 bits apart" in card
    assert "representative, its largest image" in card
    assert "points at itself; null means no near-duplicate" in card
    # WebDataset: the json's fields; the image is its own member.
    for column in META_COLUMNS.names:
        listed = f"- `{column}` (" in card
        assert listed == (column not in ("key", "extension", "image")), column
    parquet = dataset_card(figures(format="parquet"))
    assert all(f"- `{column}` (" in parquet for column in META_COLUMNS.names)
    assert "- `references` (int32): how many pages show it" in parquet


def test_no_secrets() -> None:
    command = (
        "crawler export s3://AKIAKEY:hunter2@bucket/crawl --header 'Authorization: Bearer tok1'"
        " --cookie=session=cookie1 --images https://u:pw3@store.example/x?sig=sig4&page=2"
        " api_token=tok5"
    )
    seeds = ["https://user:pw6@site.example/?token=tok7&q=cats"]
    card = dataset_card(figures(command=command, seeds=seeds, pages=12))
    for secret in ("hunter2", "AKIAKEY", "tok1", "Bearer", "cookie1", "pw3", "sig4", "tok5"):
        assert secret not in card, secret
    assert "pw6" not in card and "tok7" not in card
    assert "s3://***@bucket/crawl" in card
    assert "page=2" in card and "q=cats" in card
    assert "- pages crawled: 12" in card


def test_an_empty_export() -> None:
    card = dataset_card(CardFigures())
    assert "# Image dataset: 0 images in 0 WebDataset shards" in card
    assert "No shards: no image was exported." in card
    assert "No images." in card
