"""Real Chromium (Debian's chromium + chromium-driver) driving the real page and JS client."""

import shutil
import tempfile
from pathlib import Path

import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service

from tests.support.processes import ROOT, ServeProcess

ARTIFACTS = ROOT / "tests" / "artifacts"
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
]


@pytest.fixture(scope="module")
def chat_url():
    """``python serve.py`` on a free port, for the whole module."""
    server = ServeProcess()
    yield server.url
    server.stop()


@pytest.fixture
def browser():
    """Open Chromium windows on demand: ``browser(width=1100, height=800)``."""
    drivers, profiles = [], []

    def open_browser(width=1100, height=800):
        profile = tempfile.mkdtemp(prefix="chatwsgi-chromium-")
        options = webdriver.ChromeOptions()
        options.binary_location = shutil.which("chromium") or "/usr/bin/chromium"
        for flag in CHROMIUM_FLAGS + ["--user-data-dir=" + profile, "--window-size=%d,%d" % (width, height)]:
            options.add_argument(flag)
        service = Service(shutil.which("chromedriver") or "/usr/bin/chromedriver")
        driver = webdriver.Chrome(service=service, options=options)
        driver.set_page_load_timeout(20)
        drivers.append(driver)
        profiles.append(profile)
        return driver

    yield open_browser
    for driver in drivers:
        driver.quit()
    for profile in profiles:
        shutil.rmtree(profile, ignore_errors=True)


def screenshot(driver, name):
    """Save a PNG of the page under tests/artifacts/ (git-ignored)."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = Path(ARTIFACTS) / (name + ".png")
    driver.save_screenshot(str(path))
    return path
