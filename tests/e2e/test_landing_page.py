"""A real browser fills examples/landing-page.html and the lead arrives with its UTM attribution.

Headless Chromium (Debian's `chromium` and `chromium-driver`) driven over WebDriver
loads the example page from a local static server with campaign parameters in its
URL, fills and submits the form as a plain HTML post, follows the 303 to the
thank-you page, and the lead arrives on leads.captured attributed to facebook_ads.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import shutil
import subprocess
import threading
import uuid
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import uvicorn

from leadflow.processes import free_port
from services.capture.app import create_app
from tests.conftest import ROOT, migrate_service
from tests.integration.capture.support import captured_events, write_config

pytestmark = pytest.mark.e2e

EXAMPLES = ROOT / "examples"
EXAMPLE_CAPTURE_URL = "http://127.0.0.1:8001"
CHROMIUM, CHROMEDRIVER = "chromium", "chromedriver"


def _browser_missing() -> str | None:
    """Why the browser test cannot run here, or None; installs Debian's packages when allowed."""
    if shutil.which(CHROMIUM) and shutil.which(CHROMEDRIVER):
        return None
    apt = shutil.which("apt-get")
    if apt is None or os.geteuid() != 0:
        return "chromium / chromium-driver are missing and apt-get is not usable here"
    try:
        subprocess.run([apt, "update", "-qq"], check=True, capture_output=True, timeout=300)
        subprocess.run(
            [apt, "install", "-y", "-qq", "chromium", "chromium-driver"],
            check=True,
            capture_output=True,
            timeout=600,
            env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"},
        )
    except (subprocess.SubprocessError, OSError) as exc:
        return f"could not install chromium and chromium-driver with apt-get: {exc}"
    if shutil.which(CHROMIUM) and shutil.which(CHROMEDRIVER):
        return None
    return "apt-get ran but chromium / chromedriver are still not on PATH"


class _ExamplesHandler(SimpleHTTPRequestHandler):
    """Serves examples/, with the page's form pointed at this test's capture service."""

    capture_url = EXAMPLE_CAPTURE_URL

    def do_GET(self) -> None:
        if self.path.split("?")[0] == "/landing-page.html":
            page = (EXAMPLES / "landing-page.html").read_text(encoding="utf-8")
            body = page.replace(EXAMPLE_CAPTURE_URL, self.capture_url).encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return
        super().do_GET()

    def log_message(self, format: str, *args: Any) -> None:
        pass


@contextlib.contextmanager
def static_site(capture_url: str) -> Iterator[str]:
    handler = type("Handler", (_ExamplesHandler,), {"capture_url": capture_url})
    server = ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(handler, directory=str(EXAMPLES))
    )
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def drive_browser(page_url: str, shots: Path, email: str) -> tuple[str, str]:
    """Fill and submit the form; the final URL and the thank-you heading."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions
    from selenium.webdriver.support.ui import WebDriverWait

    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which(CHROMIUM) or CHROMIUM
    for flag in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        "--disable-dev-shm-usage",
        "--window-size=1280,900",
        f"--user-data-dir={shots / 'profile'}",
    ):
        options.add_argument(flag)
    driver = webdriver.Chrome(
        service=Service(shutil.which(CHROMEDRIVER) or CHROMEDRIVER), options=options
    )
    try:
        driver.set_page_load_timeout(30)
        driver.get(page_url)
        wait = WebDriverWait(driver, 15)
        wait.until(
            lambda d: d.find_element(By.NAME, "utm_source").get_attribute("value") == "facebook"
        )
        driver.find_element(By.ID, "name").send_keys("Grace Hopper")
        driver.find_element(By.ID, "work_email").send_keys(email)
        driver.find_element(By.ID, "title").send_keys("Rear Admiral")
        driver.find_element(By.NAME, "marketing_consent").click()
        driver.save_screenshot(str(shots / "landing-page.png"))
        driver.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
        wait.until(expected_conditions.url_contains("/thanks.html"))
        heading = wait.until(expected_conditions.presence_of_element_located((By.ID, "thanks")))
        driver.save_screenshot(str(shots / "thanks.png"))
        return driver.current_url, heading.text
    finally:
        driver.quit()


@contextlib.asynccontextmanager
async def serve_capture(settings: Any, port: int):  # type: ignore[no-untyped-def]
    """The capture service on a real socket, as a browser needs."""
    await migrate_service(settings, "capture")
    config = uvicorn.Config(
        create_app(settings), host="127.0.0.1", port=port, log_config=None, lifespan="on"
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    try:
        for _ in range(200):
            if server.started:
                break
            await asyncio.sleep(0.05)
        assert server.started, "capture did not start"
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 15)


async def test_browser_submits_the_landing_page_and_the_lead_keeps_its_utms(
    broker, settings_factory, tmp_path
):
    pytest.importorskip("selenium", reason="selenium (a dev dependency) is not installed")
    reason = _browser_missing()
    if reason:
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI must run the browser test: {reason}")
        pytest.skip(reason)
    port = free_port()
    capture_url = f"http://127.0.0.1:{port}"
    email = f"grace-{uuid.uuid4().hex[:6]}@example.com"
    with static_site(capture_url) as site:
        config = write_config(
            tmp_path,
            forms={
                "demo-request": {
                    "thank_you_url": f"{site}/thanks.html",
                    "allowed_origins": [site],
                }
            },
        )
        settings = settings_factory(kafka_bootstrap=broker.bootstrap, config=config)
        async with serve_capture(settings, port):
            page = (
                f"{site}/landing-page.html?utm_source=facebook&utm_medium=cpc&utm_campaign=spring"
            )
            final_url, heading = await asyncio.to_thread(drive_browser, page, tmp_path, email)
            events = await captured_events(broker.bootstrap, 1, timeout=15)
    assert final_url == f"{site}/thanks.html"
    assert "Thanks" in heading
    assert (tmp_path / "landing-page.png").stat().st_size > 10_000
    [event] = events
    assert event.contact.email == email
    assert (event.contact.first_name, event.contact.last_name) == ("Grace", "Hopper")
    assert event.contact.job_title == "Rear Admiral"
    assert event.channel == "facebook_ads"
    attribution = event.attribution
    assert (attribution.utm_source, attribution.utm_medium, attribution.utm_campaign) == (
        "facebook",
        "cpc",
        "spring",
    )
    assert attribution.landing_page == page
    assert event.first_touch.channel == "facebook_ads"
    assert event.marketing_consent is True
    assert event.form_id == "demo-request"
    assert not {"lf_rendered_at", "lf_elapsed_ms", "idempotency_key", "website"} & set(event.fields)
