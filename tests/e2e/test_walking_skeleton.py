"""The system started as a user starts it (`leadflow up`), driven over HTTP.

A hot lead reaches the file sink and a signed webhook exactly once; a cold lead with
consent is enrolled in nurture; insights counts both; Ctrl-C stops every process.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest

from leadflow.embedded import EXAMPLE_LEAD

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
WEBHOOK_SECRET = "e2e-webhook-secret"


def _free_block(size: int = 6) -> int:
    for _ in range(200):
        base = 20000 + (uuid.uuid4().int % 20000)
        ok = True
        for port in range(base, base + size):
            with socket.socket() as sock:
                if sock.connect_ex(("127.0.0.1", port)) == 0:
                    ok = False
                    break
        if ok:
            return base
    raise RuntimeError("no free port block")


class WebhookReceiver:
    """A local HTTP server that records the webhook destination's requests."""

    def __init__(self) -> None:
        self.requests: list[tuple[dict[str, str], bytes]] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", "0")))
                receiver.requests.append(({k.lower(): v for k, v in self.headers.items()}, body))
                self.send_response(200)
                self.send_header("content-length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()


def verify_signature(headers: dict[str, str], body: bytes) -> bool:
    parts = dict(p.split("=", 1) for p in headers["leadflow-signature"].split(","))
    expected = hmac.new(
        WEBHOOK_SECRET.encode(), f"{parts['t']}.".encode() + body, hashlib.sha256
    ).hexdigest()
    return hmac.compare_digest(expected, parts["v1"])


def _children(pid: int) -> list[int]:
    out = subprocess.run(
        ["ps", "-o", "pid=", "--ppid", str(pid)], capture_output=True, text=True
    ).stdout
    return [int(p) for p in out.split()]


def _wait_for(check, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(0.1)
    raise AssertionError(f"{what} not seen within {timeout}s (last: {last!r})")


def test_one_hot_and_one_cold_lead_through_all_five_services(tmp_path):
    receiver = WebhookReceiver()
    base = _free_block()
    var_dir = tmp_path / "var"
    env = {
        **os.environ,
        "LEADFLOW_ROUTER_WEBHOOK_URL": receiver.url,
        "LEADFLOW_ROUTER_WEBHOOK_SECRET": WEBHOOK_SECRET,
        "LEADFLOW_LOG_FORMAT": "json",
    }
    env.pop("LEADFLOW_CONFIG", None)
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
            str(var_dir),
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    capture, nurture, insights = (f"http://127.0.0.1:{base + i}" for i in (0, 2, 4))
    output: list[str] = []
    reader = threading.Thread(
        target=lambda: output.extend(iter(process.stdout.readline, "")), daemon=True
    )
    reader.start()
    try:
        _wait_for(
            lambda: any("leadflow is up" in line for line in output) or process.poll() is not None,
            60,
            "start-up",
        )
        assert process.poll() is None, "".join(output)
        children = _children(process.pid)
        assert len(children) >= 7  # broker, SMTP sink, five services

        tag = uuid.uuid4().hex[:8]
        hot = httpx.post(
            f"{capture}/v1/forms/demo-request",
            json={
                "work_email": f"ada.{tag}@analytical-engines.co.uk",
                "name": "Ada Lovelace",
                "company": "Analytical Engines",
                "title": "Director of Engineering",
                "country": "GB",
                "company_size": "120",
                "phone": "+44 20 7946 0958",
                "utm_source": "google",
                "utm_medium": "cpc",
                "marketing_consent": "yes",
            },
        )
        posted_at = time.monotonic()
        cold = httpx.post(
            f"{capture}/v1/forms/guide-download",
            data={"email": f"sam.{tag}@gmail.com", "first_name": "Sam", "marketing_consent": "on"},
        )
        assert hot.status_code == 202, hot.text
        assert cold.status_code == 202, cold.text
        hot_id, cold_id = hot.json()["lead_id"], cold.json()["lead_id"]

        routed_file = var_dir / "routed.jsonl"

        def routed_lines():
            if not routed_file.exists():
                return []
            return [json.loads(line) for line in routed_file.read_text().splitlines() if line]

        _wait_for(
            lambda: any(r.get("lead_id") == hot_id for r in routed_lines()),
            10,
            "the hot lead in routed.jsonl",
        )
        routed_within = time.monotonic() - posted_at
        _wait_for(lambda: receiver.requests, 10, "the webhook delivery")

        def enrolled():
            response = httpx.get(f"{nurture}/v1/leads/{cold_id}/enrollments")
            return response.status_code == 200 and response.json()

        _wait_for(enrolled, 10, "the cold lead's nurture enrollment")

        def counted():
            report = httpx.get(f"{insights}/v1/reports/channels").json()
            rows = {row["channel"]: row for row in report["channels"]}
            google, direct = rows.get("google_ads", {}), rows.get("direct", {})
            return (
                google.get("leads") == 1
                and google.get("hot") == 1
                and direct.get("leads") == 1
                and direct.get("cold") == 1
                and report
            )

        _wait_for(counted, 10, "both leads in the insights report")
        time.sleep(1.0)  # anything duplicated would have arrived by now
        assert [r["lead_id"] for r in routed_lines()] == [hot_id]
        assert cold_id not in {r["lead_id"] for r in routed_lines()}
        assert len(receiver.requests) == 1
        headers, body = receiver.requests[0]
        assert verify_signature(headers, body)
        assert json.loads(body)["lead_id"] == hot_id
        print(f"hot lead routed {routed_within:.2f}s after its 202")

        # The banner's copy-paste curl submits a lead that is routed too.
        assert EXAMPLE_LEAD in "".join(output).replace("\n", "")
        banner = httpx.post(
            f"{capture}/v1/forms/demo-request",
            content=EXAMPLE_LEAD,
            headers={"Content-Type": "application/json"},
        )
        assert banner.status_code == 202, banner.text
        banner_id = banner.json()["lead_id"]
        _wait_for(
            lambda: any(r.get("lead_id") == banner_id for r in routed_lines()),
            10,
            "the banner's lead in routed.jsonl",
        )
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(30)
        finally:
            if process.poll() is None:
                process.kill()
            receiver.close()
    assert process.returncode == 0, "".join(output)
    leftovers = [
        pid
        for pid in children
        if Path(f"/proc/{pid}").exists()
        and "zombie" not in Path(f"/proc/{pid}/status").read_text().lower()
    ]
    assert leftovers == [], f"orphan processes after Ctrl-C: {leftovers}"
    logs = "\n".join(p.read_text() for p in (var_dir / "logs").glob("*.log"))
    logs += "".join(output)
    # No email address or phone number of a lead in any log line of the whole run.
    assert f"ada.{tag}" not in logs and f"sam.{tag}" not in logs
    assert not re.search(r"7946\W?0958", logs)
    assert not re.search(r"[\w.+-]+@(analytical-engines\.co\.uk|gmail\.com)", logs)
