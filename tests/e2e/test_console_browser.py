"""The console in a real browser, against the whole system started as `leadflow up` starts it.

Headless Chromium (Debian's `chromium` and `chromium-driver`) over WebDriver: an
unauthenticated visit lands on the login page; after logging in, the test finds the
lead it submitted, opens its timeline and reads the routing reason, sees the funnel's
charts keep their text size at two window widths, downloads the funnel CSV, releases a
quarantined submission, re-drives a dead letter (and sees the re-driven event in the
lead's timeline) and a CRM delivery that failed (and sees the CRM stand-in receive it),
and a page on another site cannot make the console act. Every page's screenshot is
saved (LEADFLOW_CONSOLE_SHOTS, else tmp_path).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from shared.events import Envelope, LeadEngaged, encode
from tests.e2e.test_landing_page import CHROMEDRIVER, CHROMIUM, _browser_missing
from tests.e2e.test_walking_skeleton import ROOT, _free_block, _wait_for

pytestmark = pytest.mark.e2e
PASSWORD = "console-e2e-password"


@contextlib.contextmanager
def leadflow_up(tmp_path: Path, **extra_env: str) -> Iterator[tuple[dict[str, str], str]]:
    """`leadflow up` on a free block of ports; the service URLs and the broker address."""
    base = _free_block()
    env = {
        **os.environ,
        "LEADFLOW_CONSOLE_PASSWORD": PASSWORD,
        "LEADFLOW_LOG_FORMAT": "json",
        **extra_env,
    }
    env.pop("LEADFLOW_CONFIG", None)
    env.pop("LEADFLOW_ADMIN_TOKEN", None)
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "leadflow.cli",
            "up",
            "--port-base",
            str(base - 1),
            "--smtp-port",
            str(base + 5),
            "--var-dir",
            str(tmp_path / "var"),
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    output: list[str] = []
    threading.Thread(
        target=lambda: output.extend(iter(process.stdout.readline, "")),  # type: ignore[union-attr]
        daemon=True,
    ).start()
    try:
        _wait_for(
            # The banner is read line by line: wait for its console line, which follows
            # "leadflow is up".
            lambda: any("/console" in line for line in output) or process.poll() is not None,
            90,
            "start-up",
        )
        assert process.poll() is None, "".join(output)
        names = ("capture", "scoring", "nurture", "router", "insights")
        urls = {name: f"http://127.0.0.1:{base + i}" for i, name in enumerate(names)}
        banner = "".join(output)
        assert f"{urls['insights']}/console" in banner
        broker = re.search(r"broker\s+(127\.0\.0\.1:\d+)", banner)
        assert broker, banner
        yield urls, broker.group(1)
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(30)
        finally:
            if process.poll() is None:
                process.kill()


@contextlib.contextmanager
def other_site(target: str) -> Iterator[str]:
    """A page on another site (localhost is not 127.0.0.1) that posts to the console."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = (
                "<!doctype html><title>free prize</title>"
                f'<form id="f" method="post" action="{target}">'
                '<input name="csrf" value="guessed"></form>'
                "<script>document.getElementById('f').submit()</script>"
            ).encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://localhost:{server.server_address[1]}/prize.html"
    finally:
        server.shutdown()
        server.server_close()


class Crm:
    """A CRM stand-in for the router's webhook destination: answers `status`, and keeps
    the delivery ids (Idempotency-Key) of the requests it accepted and refused."""

    def __init__(self) -> None:
        self.status = 400
        self.accepted: list[str] = []
        self.refused: list[str] = []
        self.url = ""


@contextlib.contextmanager
def crm_stand_in() -> Iterator[Crm]:
    crm = Crm()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            status, delivery = crm.status, self.headers.get("Idempotency-Key", "")
            (crm.accepted if status < 300 else crm.refused).append(delivery)
            body = b'{"ok": true}' if status < 300 else b'{"error": "owner_id is not a user"}'
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    crm.url = f"http://127.0.0.1:{server.server_address[1]}/leads"
    try:
        yield crm
    finally:
        server.shutdown()
        server.server_close()


async def publish_dead_letter(bootstrap: str, lead_id: str) -> str:
    """A repeat-visit event of the lead, dead-lettered as a consumer would have."""
    from aiokafka import AIOKafkaProducer

    envelope = Envelope(
        data=LeadEngaged(lead_id=lead_id, kind="repeat_visit", occurred_at=datetime.now(UTC)),
        source="leadflow/e2e",
    )
    key, value, headers = encode(envelope)
    headers = [
        *headers,
        ("dlq_error", b"RuntimeError: the database was having a bad day"),
        ("dlq_handler", b"handle_lead_engaged"),
        ("dlq_attempts", b"3"),
        ("dlq_original_topic", b"leads.engagement"),
        ("dlq_original_partition", b"0"),
        ("dlq_original_offset", b"0"),
        ("dlq_failed_at", datetime.now(UTC).isoformat().encode()),
        ("dlq_consumer", b"scoring"),
    ]
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await producer.start()
    try:
        await producer.send_and_wait("leads.engagement.dlq", value, key=key, headers=headers)
    finally:
        await producer.stop()
    return envelope.id


def make_driver(profile: Path, downloads: Path) -> Any:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

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
        "--window-size=1400,1000",
        f"--user-data-dir={profile}",
    ):
        options.add_argument(flag)
    options.add_experimental_option(
        "prefs",
        {"download.default_directory": str(downloads), "download.prompt_for_download": False},
    )
    driver = webdriver.Chrome(
        service=Service(shutil.which(CHROMEDRIVER) or CHROMEDRIVER), options=options
    )
    driver.execute_cdp_cmd(
        "Page.setDownloadBehavior", {"behavior": "allow", "downloadPath": str(downloads)}
    )
    driver.set_page_load_timeout(30)
    return driver


def drive(
    console: str,
    email: str,
    leads: int,
    held_id: str,
    other_held_id: str,
    letter_id: str,
    crm: Crm,
    shots: Path,
) -> dict[str, Any]:
    """The browser session (`leads` were submitted); returns what it saw."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    downloads = shots / "downloads"
    downloads.mkdir(parents=True, exist_ok=True)
    driver = make_driver(shots / "profile", downloads)
    seen: dict[str, Any] = {}
    wait = WebDriverWait(driver, 20)

    def text_of(css: str) -> str:
        return str(wait.until(ec.presence_of_element_located((By.CSS_SELECTOR, css))).text)

    def shot(name: str) -> None:
        driver.save_screenshot(str(shots / f"console-{name}.png"))

    def reload_until(url: str, check: Any, timeout: float = 30) -> None:
        def ready(d: Any) -> bool:
            d.get(url)
            return bool(check(d))

        WebDriverWait(driver, timeout, poll_frequency=0.5).until(ready)

    try:
        # Not signed in: any page sends the browser to the login page.
        driver.get(f"{console}/leads")
        wait.until(ec.url_contains("/console/login"))
        seen["login_redirect"] = driver.current_url
        shot("login")
        driver.find_element(By.ID, "password").send_keys(PASSWORD)
        driver.find_element(By.ID, "sign-in").click()
        wait.until(ec.presence_of_element_located((By.ID, "lead-search")))

        # Find the submitted lead (insights may still be consuming it) and open its story.
        search = f"{console}/leads?q={email}"
        reload_until(search, lambda d: d.find_elements(By.CSS_SELECTOR, "#leads-table a"))
        shot("leads")
        driver.find_element(By.CSS_SELECTOR, "#leads-table a").click()
        lead_url = driver.current_url
        reload_until(lead_url, lambda d: d.find_elements(By.CSS_SELECTOR, ".routing-reason"))
        seen["email"] = text_of("#lead-email")
        seen["routing_reason"] = text_of(".routing-reason")
        seen["timeline"] = text_of("#timeline")
        shot("lead")

        # The funnel, its charts and the CSV; chart text keeps its size at any width.
        total = "#funnel-table tr.total td"  # the first cell: leads
        reload_until(
            f"{console}/funnel", lambda d: d.find_element(By.CSS_SELECTOR, total).text == str(leads)
        )
        seen["charts"] = len(driver.find_elements(By.CSS_SELECTOR, "svg.chart"))
        seen["chart_text_heights"] = set()
        for width in (700, 1400):
            driver.set_window_size(width, 1000)
            seen["chart_text_heights"] |= set(
                driver.execute_script(
                    "return [...document.querySelectorAll('svg.chart text')]"
                    ".map(t => Math.round(t.getBoundingClientRect().height))"
                )
            )
        seen["funnel"] = text_of("#funnel-table")
        shot("funnel")
        driver.find_element(By.ID, "csv").click()
        WebDriverWait(driver, 20).until(
            lambda _: [p for p in downloads.glob("*.csv") if p.stat().st_size > 0]
        )
        seen["csv"] = next(downloads.glob("*.csv")).read_text()

        # Release the quarantined submission.
        driver.get(f"{console}/quarantine")
        row = f'tr[data-submission="{held_id}"]'
        wait.until(ec.presence_of_element_located((By.CSS_SELECTOR, row)))
        shot("quarantine")
        driver.find_element(By.CSS_SELECTOR, f"{row} button.release").click()
        seen["released"] = text_of("#notice")
        seen["still_held"] = bool(driver.find_elements(By.CSS_SELECTOR, row))

        # Re-drive the dead letter; the event then reaches the lead's timeline.
        driver.get(f"{console}/dead-letters")
        letter = f'tr.dead-letter[data-event="{letter_id}"]'
        wait.until(ec.presence_of_element_located((By.CSS_SELECTOR, letter)))
        shot("dead-letters")
        driver.find_element(By.CSS_SELECTOR, f"{letter} button.redrive").click()
        seen["redriven"] = text_of("#notice")
        reload_until(lead_url, lambda d: "Repeat visit" in d.find_element(By.ID, "timeline").text)
        seen["timeline_after_redrive"] = driver.find_element(By.ID, "timeline").text

        # The CRM refused the lead's delivery (400: not retried). Once the CRM is fixed,
        # re-driving it from the console delivers it.
        lead_id = lead_url.rsplit("/", 1)[1]
        failed = f'tr.delivery[data-lead="{lead_id}"]'
        reload_until(f"{console}/dead-letters", lambda d: d.find_elements(By.CSS_SELECTOR, failed))
        seen["failed_delivery"] = driver.find_element(By.CSS_SELECTOR, failed).text
        delivery_id = driver.find_element(By.CSS_SELECTOR, failed).get_attribute("data-delivery")
        seen["refused_before_redrive"] = list(crm.refused)
        crm.status = 200
        driver.find_element(By.CSS_SELECTOR, f"{failed} button.redrive").click()
        seen["delivery_redriven"] = text_of("#notice")
        seen["still_failed"] = bool(driver.find_elements(By.CSS_SELECTOR, failed))
        WebDriverWait(driver, 30, poll_frequency=0.2).until(lambda _: delivery_id in crm.accepted)
        webhook = 'tr.delivery[data-destination="webhook"]'
        reload_until(
            lead_url,
            lambda d: "delivered" in d.find_element(By.CSS_SELECTOR, f"{webhook} td.status").text,
        )
        seen["webhook_delivery"] = driver.find_element(By.CSS_SELECTOR, webhook).text
        seen["delivery_id"] = delivery_id

        driver.get(f"{console}/health")
        seen["health"] = text_of("main")
        shot("health")

        # Another site cannot make the console act, even while the user is signed in.
        with other_site(f"{console}/quarantine/{other_held_id}/reject") as prize:
            driver.get(prize)
            wait.until(ec.url_contains("/console/quarantine/"))
            seen["cross_site"] = text_of("body")
            shot("cross-site")
        driver.get(f"{console}/quarantine")
        seen["other_still_held"] = bool(
            driver.find_elements(By.CSS_SELECTOR, f'tr[data-submission="{other_held_id}"]')
        )

        # Signing out ends the session.
        driver.find_element(By.CSS_SELECTOR, ".logout button").click()
        wait.until(ec.url_contains("/console/login"))
        driver.get(f"{console}/funnel")
        wait.until(ec.url_contains("/console/login"))
        seen["after_logout"] = driver.current_url
        return seen
    finally:
        driver.quit()


def test_console_tells_a_leads_story_in_a_real_browser(tmp_path: Path) -> None:
    pytest.importorskip("selenium", reason="selenium (a dev dependency) is not installed")
    reason = _browser_missing()
    if reason:
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI must run the browser test: {reason}")
        pytest.skip(reason)
    shots = Path(os.environ.get("LEADFLOW_CONSOLE_SHOTS") or tmp_path / "shots")
    shots.mkdir(parents=True, exist_ok=True)
    tag = uuid.uuid4().hex[:8]
    email = f"ada.{tag}@analytical-engines.co.uk"
    with (
        crm_stand_in() as crm,
        leadflow_up(tmp_path, LEADFLOW_ROUTER_WEBHOOK_URL=crm.url) as (
            urls,
            bootstrap,
        ),
    ):
        hot = httpx.post(
            f"{urls['capture']}/v1/forms/demo-request",
            json={
                "work_email": email,
                "name": "Ada Lovelace",
                "company": "Analytical Engines",
                "title": "Director of Engineering",
                "country": "GB",
                "company_size": "120",
                "utm_source": "google",
                "utm_medium": "cpc",
                "marketing_consent": "yes",
            },
        )
        assert hot.status_code == 202, hot.text
        lead_id = hot.json()["lead_id"]
        # A few more leads over several channels and grades, for the charts.
        others = [
            (
                "demo-request",
                {
                    "work_email": f"grace.{tag}@cobol.example",
                    "company": "Navy",
                    "country": "US",
                    "utm_source": "facebook",
                    "utm_medium": "paid_social",
                },
            ),
            (
                "guide-download",
                {"email": f"alan.{tag}@bletchley.example", "utm_source": "fb", "utm_medium": "cpc"},
            ),
            ("guide-download", {"email": f"edsger.{tag}@eindhoven.example"}),
            ("guide-download", {"email": f"barbara.{tag}@clu.example", "promo_code": "RADIO26"}),
            ("demo-request", {"work_email": f"john.{tag}@lisp.example", "gclid": f"g-{tag}"}),
        ]
        for form, fields in others:
            other = httpx.post(f"{urls['capture']}/v1/forms/{form}", json=fields)
            assert other.status_code == 202, other.text
        held = []
        for who in ("bot", "bot2"):
            spam = httpx.post(
                f"{urls['capture']}/v1/forms/demo-request",
                json={"work_email": f"{who}.{tag}@example.org", "website": "http://spam.example"},
            )
            assert spam.json()["status"] == "quarantined", spam.text
            held.append(spam.json()["submission_id"])
        letter_id = asyncio.run(publish_dead_letter(bootstrap, lead_id))

        seen = drive(
            f"{urls['insights']}/console",
            email,
            1 + len(others),
            held[0],
            held[1],
            letter_id,
            crm,
            shots,
        )

        listing = httpx.get(f"{urls['capture']}/v1/quarantine").json()["items"]
    assert "/console/login" in seen["login_redirect"]
    assert seen["email"] == email
    assert seen["routing_reason"].startswith("matched rule "), seen["routing_reason"]
    assert "New lead" in seen["timeline"] and "Scored" in seen["timeline"]
    assert "Routed" in seen["timeline"]
    assert seen["charts"] == 3 and "Google Ads" in seen["funnel"]
    assert seen["chart_text_heights"] and max(seen["chart_text_heights"]) <= 18
    assert seen["csv"].startswith("channel,label,") and "google_ads" in seen["csv"]
    assert seen["released"].startswith(f"Released submission {held[0]}")
    assert not seen["still_held"]
    assert "Re-drove" in seen["redriven"] and "Repeat visit" in seen["timeline_after_redrive"]
    assert seen["refused_before_redrive"] == [seen["delivery_id"]]
    assert "webhook" in seen["failed_delivery"] and "400" in seen["failed_delivery"]
    assert seen["delivery_redriven"].startswith(f"Re-drove delivery {seen['delivery_id']}")
    assert not seen["still_failed"]
    assert crm.accepted == [seen["delivery_id"]]
    assert (
        "delivered" in seen["webhook_delivery"] and "re-driven 1\u00d7" in seen["webhook_delivery"]
    )
    assert "Consumer lag" in seen["health"] and "Outbox depth" in seen["health"]
    assert "Refused" in seen["cross_site"] and seen["other_still_held"]
    assert "/console/login" in seen["after_logout"]
    held_now = {item["submission_id"] for item in listing}
    assert held[0] not in held_now and held[1] in held_now
    for page in ("login", "leads", "lead", "funnel", "quarantine", "dead-letters", "health"):
        assert (shots / f"console-{page}.png").stat().st_size > 10_000, page
