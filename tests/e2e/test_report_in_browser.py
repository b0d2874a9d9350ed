"""The report as a browser shows it: headless Chromium opens the report of a hand-built
output folder (tests.output.test_report.build_out: every image format, hostile strings).

One Chromium run, about a second, dumps the DOM after layout, logs the console to stderr
and takes a screenshot; every test here reads that run. Without Chromium the tests fail,
not skip: a silently skipped browser check would look like a passing one.
"""

from __future__ import annotations

import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pytest
from PIL import Image, ImageChops

from crawler.output.report import write_report
from tests.browser_site.check import CHROMIUM_FLAGS
from tests.output.test_report import BLUE, GREEN, MAGENTA, PLACEHOLDERS, RED, THUMBNAILS, build_out

REPORT_FLAGS = (
    *CHROMIUM_FLAGS,
    "--hide-scrollbars",
    "--enable-logging=stderr",
    "--v=0",
    "--virtual-time-budget=2000",
    "--window-size=1280,2400",  # tall enough for the whole gallery of build_out
)
RUN_TIMEOUT = 60.0


@dataclass(frozen=True)
class Rendering:
    dom: str
    console: list[str]  # console messages Chromium logged (the page has no script: none)
    screenshot: Image.Image


def render(chromium: str, page: Path, screenshot: Path) -> Rendering:
    with tempfile.TemporaryDirectory(prefix="chromium-profile-") as profile:
        run = subprocess.run(
            [
                chromium,
                *REPORT_FLAGS,
                f"--user-data-dir={profile}",
                f"--screenshot={screenshot}",
                "--dump-dom",
                page.resolve().as_uri(),
            ],
            capture_output=True,
            text=True,
            timeout=RUN_TIMEOUT,
            check=False,
        )
    assert run.returncode == 0, run.stderr[-2000:]
    console = [line for line in run.stderr.splitlines() if ":CONSOLE" in line or "Uncaught" in line]
    return Rendering(run.stdout, console, Image.open(screenshot).convert("RGB"))


@pytest.fixture(scope="module")
def rendering(chromium: str, tmp_path_factory: pytest.TempPathFactory) -> Rendering:
    folder = tmp_path_factory.mktemp("report")
    summary = write_report(build_out(folder / "out"))
    return render(chromium, summary.path, folder / "report.png")


def count_pixels_near(image: Image.Image, color: tuple[int, int, int], tolerance: int = 20) -> int:
    red, green, blue = (
        band.point(lambda value, c=c: 255 if abs(value - c) <= tolerance else 0)
        for band, c in zip(image.split(), color, strict=True)
    )
    return ImageChops.multiply(ImageChops.multiply(red, green), blue).histogram()[255]


def test_every_tile_is_in_the_page(rendering: Rendering):
    assert rendering.dom.count('<figure class="tile">') == THUMBNAILS + PLACEHOLDERS
    assert rendering.dom.count('<img class="thumb"') == THUMBNAILS
    assert rendering.dom.count('<svg class="chart"') == 1


def test_no_console_message(rendering: Rendering):
    """The page has no script: any console line is an error or a load the CSP refused."""
    assert rendering.console == []


def test_hostile_strings_stay_text(rendering: Rendering):
    dom = rendering.dom.lower()
    assert "<script" not in dom
    assert "<img src=x" not in dom
    assert 'href="javascript:' not in dom


@pytest.mark.parametrize(
    ("name", "color"), [("jpeg", RED), ("png", GREEN), ("gif", BLUE), ("webp", MAGENTA)]
)
def test_thumbnail_is_drawn(rendering: Rendering, name: str, color: tuple[int, int, int]):
    """Each thumbnail decoded: its colour covers a patch of the screenshot."""
    assert count_pixels_near(rendering.screenshot, color) > 500, f"{name} thumbnail not drawn"
