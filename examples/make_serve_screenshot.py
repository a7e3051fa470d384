"""README's screenshot of the web page, taken by the headless Chromium of the browser tests.

    python examples/make_serve_screenshot.py [--out examples/gallery/serve.jpg]

Starts `jaxart.serve`'s app in this process (the default VGG19 weights: the original VGG19
offline), runs the fast method on the bundled cat with pretrained style 4, then a 40-step
optimisation in the style of examples/style.png at 160 px, and photographs the page when it
is done: the preview, its loss curve and both results in the strip.
"""

from __future__ import annotations

import argparse
import io
import socket
import tempfile
import threading
import time
from pathlib import Path

import uvicorn
from PIL import Image
from selenium import webdriver
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By

from jaxart.serve import ServeConfig, create_app

HERE = Path(__file__).resolve().parent


def until(condition, seconds: float = 600):
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError("the page did not get there")
        time.sleep(0.2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=HERE / "gallery" / "serve.jpg")
    args = parser.parse_args()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    config = ServeConfig(port=port, runs_dir=tempfile.mkdtemp(), preview_every=5)
    server = uvicorn.Server(uvicorn.Config(create_app(config), port=port, log_level="warning"))
    threading.Thread(target=server.run, daemon=True).start()
    until(lambda: server.started, 60)
    options = Options()
    options.binary_location = "/usr/bin/chromium"
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1280,1320"):
        options.add_argument(flag)
    page = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)
    try:
        page.get(f"http://127.0.0.1:{port}")
        until(lambda: len(page.find_elements(By.CSS_SELECTOR, "#style-pretrained img")) == 26)
        page.find_elements(By.CSS_SELECTOR, "#style-pretrained img")[4].click()
        page.find_element(By.ID, "run").click()
        until(lambda: page.find_elements(By.CSS_SELECTOR, "#results figure"))
        page.find_elements(By.CSS_SELECTOR, "#style-paintings img")[0].click()
        page.find_element(By.CSS_SELECTOR, "input[name=method][value=optimise]").click()
        for field, value in (("size", "160"), ("steps", "40")):
            element = page.find_element(By.ID, field)
            element.clear()
            element.send_keys(value)
        page.find_element(By.ID, "run").click()
        until(lambda: len(page.find_elements(By.CSS_SELECTOR, "#results figure")) == 2)
        time.sleep(1)  # the last images load
        shot = Image.open(io.BytesIO(page.get_screenshot_as_png())).convert("RGB")
        shot.save(args.out, quality=88, optimize=True)
        print(f"wrote {args.out}")
    finally:
        page.quit()
        server.should_exit = True


if __name__ == "__main__":
    main()
