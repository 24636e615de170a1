"""/status in a real headless Chromium against the real fleet: a screenshot that shows the
engines, saved under tests/e2e/artifacts/ for a person to look at."""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from openai import OpenAI
from PIL import Image, ImageStat
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.ui import WebDriverWait

from aragog.localfleet import LocalFleet

ARTIFACTS = Path(__file__).resolve().parent / "artifacts"
CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
# Headless, and nothing that reaches out of the machine (updates, sync, first-run pings).
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
    "--window-size=1400,1000",
)

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def browser() -> Iterator[WebDriver]:
    if not (CHROMIUM.exists() and CHROMEDRIVER.exists()):
        if os.environ.get("CI"):
            pytest.fail("chromium/chromium-driver missing: run scripts/setup.sh")
        pytest.skip("no /usr/bin/chromium or chromedriver: run scripts/setup.sh")
    profile = tempfile.mkdtemp(prefix="aragog-chromium-")
    opts = webdriver.ChromeOptions()
    opts.binary_location = str(CHROMIUM)
    for flag in (*FLAGS, f"--user-data-dir={profile}"):
        opts.add_argument(flag)
    # An explicit driver path keeps Selenium Manager from trying to download one.
    driver = webdriver.Chrome(options=opts, service=Service(str(CHROMEDRIVER)))
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def _drive_some_workflow_calls(client: OpenAI) -> None:
    rid = uuid.uuid4().hex
    for stage in ("generate", "critique", "refine"):
        client.chat.completions.create(
            model="aragog",
            messages=[{"role": "user", "content": f"{stage} something"}],
            max_tokens=4,
            extra_headers={"X-Aragog-Workflow": "refine", "X-Aragog-Request-Id": rid,
                           "X-Aragog-Stage": stage},
        )


def test_status_page_screenshot_shows_the_engines(
    browser: WebDriver, gateway_url: str, client: OpenAI, fleet: LocalFleet
) -> None:
    _drive_some_workflow_calls(client)
    browser.get(gateway_url + "/status")
    want = {spec.engine_id for spec in fleet.specs}

    def rendered(d: WebDriver) -> bool:
        rows = d.find_elements(By.CSS_SELECTOR, "tr.engine-row")
        healthy = [r for r in rows if "healthy" in r.text]
        return len(healthy) == len(want)

    WebDriverWait(browser, 20).until(rendered)
    rows = browser.find_elements(By.CSS_SELECTOR, "tr.engine-row")
    assert {r.get_attribute("data-engine") for r in rows} == want
    stages = browser.find_elements(By.CSS_SELECTOR, "tr.stage-row")
    assert any("tiny-l" in s.text and "%" in s.text for s in stages)  # the model mix

    ARTIFACTS.mkdir(exist_ok=True)
    png = ARTIFACTS / "status.png"
    assert browser.save_screenshot(str(png))
    with Image.open(png) as img:
        rgb = img.convert("RGB")
        # Not blank: many colours, and a good share of pixels unlike the page background.
        colours = rgb.getcolors(maxcolors=1 << 20) or []
        assert len(colours) > 50, f"{png} looks blank ({len(colours)} colours)"
        background = max(colours)[1]
        inked = sum(n for n, c in colours if c != background) / (rgb.width * rgb.height)
        assert inked > 0.05, f"{png}: only {inked:.1%} of pixels differ from the background"
        assert max(ImageStat.Stat(rgb).stddev) > 10
