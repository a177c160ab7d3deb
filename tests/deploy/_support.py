"""Helpers for the deploy tests: repository paths, external tools, the metrics catalog, PromQL."""

from __future__ import annotations

import ast
import functools
import importlib
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
SCHEMAS = Path(__file__).resolve().parent / "schemas"
ENSURE_TOOLS = DEPLOY / "scripts" / "ensure-tools.sh"
IN_CI = os.environ.get("CI") == "true"


def unavailable(reason: str) -> None:
    """Skip on a developer machine, fail in CI: CI must never silently skip a deploy check."""
    if IN_CI:
        pytest.fail(f"{reason} (CI=true: run deploy/scripts/ensure-tools.sh)", pytrace=False)
    pytest.skip(f"{reason}: run deploy/scripts/ensure-tools.sh")


def _find(name: str) -> str | None:
    beside_python = Path(sys.executable).parent / name
    if beside_python.is_file() and os.access(beside_python, os.X_OK):
        return str(beside_python)
    return shutil.which(name)


@functools.cache
def _ensure_tools() -> str:
    """Run deploy/scripts/ensure-tools.sh once per test run; its output, if it failed."""
    try:
        done = subprocess.run(
            ["bash", str(ENSURE_TOOLS)],
            capture_output=True,
            text=True,
            timeout=600,
            env={**os.environ, "PYTHON": sys.executable},
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return str(exc)
    return "" if done.returncode == 0 else (done.stderr or done.stdout)[-2000:]


def tool(name: str) -> str:
    """The path of a command-line tool, installing the missing ones once; else skip/fail."""
    found = _find(name)
    if found is None:
        problem = _ensure_tools() or "deploy/scripts/ensure-tools.sh does not provide it"
        found = _find(name)
        if found is None:
            unavailable(f"{name} is not installed and could not be installed: {problem}")
    assert found is not None
    return found


def module(name: str) -> ModuleType:
    """Import a test-only dependency, installing the missing ones once; else skip/fail."""
    try:
        return importlib.import_module(name)
    except ImportError:
        problem = _ensure_tools() or "deploy/scripts/ensure-tools.sh does not provide it"
        importlib.invalidate_caches()
        try:
            return importlib.import_module(name)
        except ImportError:
            unavailable(f"Python package {name!r} is missing and could not be installed: {problem}")
            raise


def run(*args: str, cwd: Path = ROOT, timeout: int = 120) -> subprocess.CompletedProcess[str]:
    """Run a command; its output is part of the assertion message when it fails."""
    return subprocess.run(
        list(args), cwd=cwd, capture_output=True, text=True, timeout=timeout, check=False
    )


# --- The metrics catalog (shared/metrics.py) -----------------------------------------------

METRIC_TYPES = {
    "Counter": "counter",
    "Gauge": "gauge",
    "Histogram": "histogram",
    "Summary": "summary",
    "Info": "info",
    "Enum": "stateset",
}
SUFFIXES = {
    "counter": ("_total",),
    "gauge": ("",),
    "histogram": ("_bucket", "_sum", "_count"),
    "summary": ("", "_sum", "_count"),
    "info": ("_info",),
    "stateset": ("",),
}


@dataclass(frozen=True)
class Metric:
    """One metric as declared in shared/metrics.py."""

    variable: str
    name: str
    kind: str
    labels: tuple[str, ...]
    help: str

    @property
    def exposed(self) -> tuple[str, ...]:
        """The series names Prometheus sees for this metric."""
        base = self.name
        if self.kind == "counter" and base.endswith("_total"):
            base = base[: -len("_total")]
        if self.kind == "info" and base.endswith("_info"):
            base = base[: -len("_info")]
        return tuple(base + suffix for suffix in SUFFIXES[self.kind])

    @property
    def main_name(self) -> str:
        """The name to look a metric up by: `_total` for counters, the bare name otherwise."""
        return self.exposed[0] if self.kind in ("counter", "info") else self.name


def _string(node: ast.expr) -> str:
    """A string literal, including implicitly concatenated ones."""
    value = ast.literal_eval(node)
    assert isinstance(value, str)
    return value


@functools.cache
def metrics_catalog() -> dict[str, Metric]:
    """Every metric declared in shared/metrics.py, by declared name (read, not imported)."""
    source = ROOT / "shared" / "metrics.py"
    tree = ast.parse(source.read_text(encoding="utf-8"))
    found: dict[str, Metric] = {}
    for node in tree.body:
        if not (isinstance(node, ast.Assign) and isinstance(node.value, ast.Call)):
            continue
        call = node.value
        func = (
            call.func.attr if isinstance(call.func, ast.Attribute) else getattr(call.func, "id", "")
        )
        if func not in METRIC_TYPES:
            continue
        keywords = {kw.arg: kw.value for kw in call.keywords}
        name = _string(call.args[0] if call.args else keywords["name"])
        doc = _string(call.args[1] if len(call.args) > 1 else keywords["documentation"])
        labels_node = call.args[2] if len(call.args) > 2 else keywords.get("labelnames")
        labels = tuple(ast.literal_eval(labels_node)) if labels_node is not None else ()
        variable = node.targets[0].id  # type: ignore[attr-defined]
        found[name] = Metric(variable, name, METRIC_TYPES[func], labels, doc)
    assert found, f"no metric declarations found in {source}"
    return found


@functools.cache
def exposed_metric_names() -> frozenset[str]:
    """Every series name the services expose, plus Prometheus' own `up`."""
    names = {"up"}
    for metric in metrics_catalog().values():
        names.update(metric.exposed)
    return frozenset(names)


# --- PromQL ------------------------------------------------------------------------------------

_KEYWORDS = {
    "and",
    "or",
    "unless",
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "offset",
    "bool",
    "inf",
    "nan",
    "atan2",
    "start",
    "end",
}
_GRAFANA_VARIABLES = {
    "$__rate_interval": "5m",
    "$__interval": "1m",
    "$__range": "1h",
    "${__range}": "1h",
    "$__range_s": "3600",
}


def grafana_to_promql(expr: str) -> str:
    """Replace Grafana's interval variables and template variables by plain PromQL."""
    for variable, value in _GRAFANA_VARIABLES.items():
        expr = expr.replace(variable, value)
    return re.sub(r"\$\{?\w+\}?", ".*", expr)


def metric_names_in(expr: str) -> set[str]:
    """The metric names a PromQL expression selects (functions, labels and keywords dropped)."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)  # string literals
    text = re.sub(r"`[^`]*`", '""', text)
    text = re.sub(r"\{[^{}]*\}", " ", text)  # label matchers
    text = re.sub(r"\[[^\[\]]*\]", " ", text)  # range and subquery durations
    # Label lists of by/without/on/ignoring/group_x (...)
    text = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^()]*\)", " ", text)
    names = set()
    for match in re.finditer(r"(?<![\w.$])([A-Za-z_:][\w:]*)\b(\s*\()?", text):
        word, is_call = match.group(1), match.group(2)
        if is_call or word.lower() in _KEYWORDS:
            continue
        names.add(word)
    # Durations after offset (e.g. "offset 1w") start with a digit and never match above.
    return names


# --- Markdown ----------------------------------------------------------------------------------


def markdown_anchors(path: Path) -> set[str]:
    """GitHub-style anchors of a Markdown file's headings, plus explicit <a id=...> anchors."""
    anchors = set()
    in_code = False
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.startswith("```"):
            in_code = not in_code
        if in_code:
            continue
        if match := re.match(r"#{1,6}\s+(.*)", line):
            slug = re.sub(r"[^\w\- ]", "", match.group(1).strip().lower()).replace(" ", "-")
            anchors.add(slug)
        anchors.update(re.findall(r'<a (?:id|name)="([^"]+)"', line))
    return anchors
