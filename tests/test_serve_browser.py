"""The web page in a real browser: Debian's headless Chromium driven by selenium through
Debian's chromedriver (.ci/run installs both; these tests fail, never skip, without them).

One server (uvicorn, in a thread of this process) with random VGG19 weights for speed; each test
opens the page afresh."""

from __future__ import annotations

import io
import shutil
import socket
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import uvicorn
from conftest import EXAMPLES
from PIL import Image
from selenium import webdriver
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver

from jaxart import images, weights
from jaxart.serve import ServeConfig, create_app

CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"


def browser() -> WebDriver:
    """Headless Chromium; pytest.fail (not skip) when it or its driver is missing."""
    if not (shutil.which(CHROMIUM) and shutil.which(CHROMEDRIVER)):
        pytest.fail("the browser tests need Debian's chromium and chromium-driver (.ci/run installs them)")
    options = Options()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1280,1100"):
        options.add_argument(flag)
    return webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Iterator[str]:
    """The page's address, served until the module's tests end."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    params = weights.load("random")
    config = ServeConfig(port=port, runs_dir=str(tmp_path_factory.mktemp("runs")), preview_every=2)
    server = uvicorn.Server(uvicorn.Config(create_app(config, lambda: (params, {})), port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    until(lambda: server.started, 60)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(60)


@pytest.fixture
def page(site) -> Iterator[WebDriver]:
    driver = browser()
    driver.get(site)
    until(lambda: len(driver.find_elements(By.CSS_SELECTOR, "#content-examples img")) == 3)
    yield driver
    driver.quit()


def until(condition: Callable[[], object], seconds: float = 120) -> object:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"not within {seconds} s")


def upload(page: WebDriver, field: str, path: Path) -> None:
    page.find_element(By.ID, field).send_keys(str(path))


def fill(page: WebDriver, **fields: str) -> None:
    for field, value in fields.items():
        element = page.find_element(By.ID, field)
        element.clear()
        element.send_keys(value)


def status(page: WebDriver) -> str:
    return page.find_element(By.ID, "status").get_attribute("data-state") or ""


def results(page: WebDriver) -> list:
    return page.find_elements(By.CSS_SELECTOR, "#results figure")


def test_fast_method_on_an_uploaded_photo_downloads_a_png_of_its_size(page):
    upload(page, "content-file", EXAMPLES / "content.png")
    until(lambda: "/api/uploads/" in (page.find_element(By.ID, "content-shown").get_attribute("src") or ""))
    page.find_elements(By.CSS_SELECTOR, "#style-pretrained img")[4].click()
    fill(page, size="200")
    page.find_element(By.ID, "run").click()
    until(lambda: results(page))
    assert status(page) == "done"
    link = results(page)[0].find_element(By.CSS_SELECTOR, "a.download")
    assert link.get_attribute("download").endswith(".png")
    with urllib.request.urlopen(link.get_attribute("href")) as answer:
        data = answer.read()
    height, width = images.load_image(EXAMPLES / "content.png", max_size=200).shape[:2]
    assert Image.open(io.BytesIO(data)).format == "PNG"
    assert Image.open(io.BytesIO(data)).size == (width, height)


def test_an_optimisation_updates_its_preview_then_shows_the_result(page):
    upload(page, "style-file", EXAMPLES / "style.png")
    until(lambda: "painting: style.png" in page.find_element(By.ID, "style-chosen").text)
    page.find_element(By.CSS_SELECTOR, "input[name=method][value=optimise]").click()
    fill(page, size="64", steps="16")
    page.find_element(By.ID, "run").click()
    seen = set()

    def finished() -> bool:
        version = page.find_element(By.ID, "preview").get_attribute("data-version")
        if version:
            seen.add(version)
        return status(page) == "done" and bool(results(page))

    until(finished)
    assert len(seen) >= 2, seen  # the preview changed at least twice while it ran
    assert "step 16/16" in page.find_element(By.ID, "status").text


def test_a_run_is_cancelled_from_the_page(page):
    page.find_elements(By.CSS_SELECTOR, "#style-paintings img")[0].click()
    page.find_element(By.CSS_SELECTOR, "input[name=method][value=optimise]").click()
    fill(page, size="64", steps="3000")
    page.find_element(By.ID, "run").click()
    until(lambda: status(page) == "running" and "step 0/" not in page.find_element(By.ID, "status").text)
    page.find_element(By.ID, "cancel").click()
    until(lambda: status(page) == "cancelled", 60)
    assert not results(page)


def test_a_text_file_named_png_gets_a_message(page, tmp_path):
    notes = tmp_path / "notes.png"
    notes.write_text("these are my notes, not a picture")
    upload(page, "content-file", notes)
    message = until(lambda: page.find_element(By.ID, "message").text)
    assert "notes.png" in message and "not an image" in message and "Traceback" not in message
