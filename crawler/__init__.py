"""Distributed image crawler: a harvester node finds images, downloader nodes fetch them."""
