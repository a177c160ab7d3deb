"""The structure check (scripts/check_structure.py) on small trees built for each rule."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import textwrap
from pathlib import Path
from types import ModuleType

import pytest

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "scripts" / "check_structure.py"
CONFIG = REPO / "scripts" / "structure.toml"


def _load_checker() -> ModuleType:
    spec = importlib.util.spec_from_file_location("check_structure", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while being built
    spec.loader.exec_module(module)
    return module


checker = _load_checker()


def write(root: Path, relative: str, text: str = "") -> Path:
    path = root / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
    return path


def lines_of_code(count: int, docstring: str = "A module.") -> str:
    """A module of exactly `count` lines."""
    head = f'"""{docstring}"""\n'
    return head + "".join(f"x{i} = {i}\n" for i in range(count - 1))


def violations(root: Path, rules_path: Path = CONFIG) -> list[tuple[str, str, str]]:
    report = checker.check(root, checker.load_rules(rules_path))
    return [(v.path, v.rule, v.detail) for v in report.violations]


def run_check(root: Path) -> subprocess.CompletedProcess[str]:
    """The command as `make lint` runs it, on the tree at `root`."""
    command = [sys.executable, str(SCRIPT), "--root", str(root)]
    return subprocess.run(command, capture_output=True, text=True, check=False)


def rules_broken_by(root: Path, files: dict[str, str]) -> list[tuple[str, str]]:
    """(path, rule) of each violation in the clean tree with `files` written into it."""
    clean_tree(root)
    for relative, source in files.items():
        write(root, relative, source)
    return sorted((path, rule) for path, rule, _ in violations(root))


def clean_tree(root: Path) -> None:
    """A small tree following every rule, in the shapes the real code uses."""
    write(root, "services/__init__.py", '"""The services."""\n')
    write(
        root,
        "leadflow/cli.py",
        """
        import importlib

        import services
        from services.capture import app
        from services.router.handlers import handle_lead_scored
        from shared.db import uow


        def load(name):
            return importlib.import_module("services.scoring.app")
        """,
    )
    write(root, "leadflow/__init__.py")
    write(
        root,
        "services/capture/app.py",
        """
        from typing import TYPE_CHECKING

        from shared.db.uow import UnitOfWork

        from . import handlers
        from .handlers import handle_capture

        if TYPE_CHECKING:
            from shared.settings import Settings
        """,
    )
    write(root, "services/capture/handlers.py", "from services.capture import domain\n")
    write(root, "services/capture/domain.py", "import re\n")
    write(root, "services/router/handlers.py", "from shared.clock import utc_now\n")
    write(root, "services/scoring/app.py", "def create_app(): ...\n")
    write(root, "shared/__init__.py")
    write(root, "shared/clock.py", "import datetime\n")
    write(root, "shared/settings.py", "from shared import clock\n")
    write(root, "shared/db/__init__.py", "from shared.db.engine import Database\n")
    write(root, "shared/db/engine.py", "class Database: ...\n")
    write(root, "shared/db/uow.py", "from shared.db.engine import Database\n")
    # A file over 300 lines that says why is fine; the phrase may wrap across lines.
    write(
        root,
        "services/router/store.py",
        lines_of_code(350, "Tables.\n\nIt is over 300\nlines because it is one table."),
    )
    # Outside production code: ignored however long or tangled.
    write(root, "services/capture/migrations/versions/0001.py", lines_of_code(500))
    write(root, "services/capture/migrations/env.py", "from services.router import store\n")
    write(root, "shared/db/alembic_template/env.py", "import leadflow.cli\n")
    write(root, "tests/test_x.py", "from services.router import store\n")
    write(root, "bench/run.py", "from services.router import store\n")


def test_a_clean_tree_passes(tmp_path: Path) -> None:
    clean_tree(tmp_path)
    assert violations(tmp_path) == []


def test_the_command_exits_0_with_one_summary_line_on_a_clean_tree(tmp_path: Path) -> None:
    clean_tree(tmp_path)
    done = run_check(tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.count("\n") == 1
    assert "no import cycles" in done.stdout


def test_the_command_exits_1_with_one_line_per_violation(tmp_path: Path) -> None:
    clean_tree(tmp_path)
    imports = "import os\n\nfrom services.router import handlers\n"
    write(tmp_path, "services/scoring/handlers.py", imports)
    write(tmp_path, "shared/http.py", lines_of_code(401))
    done = run_check(tmp_path)
    assert done.returncode == 1
    assert sorted(done.stdout.splitlines()) == [
        "services/scoring/handlers.py:3: import-arrow: services.scoring → services.router is not"
        " allowed (services.scoring.handlers imports services.router.handlers;"
        " services.scoring may import: services.scoring, shared)",
        "shared/http.py:1: file-length: 401 lines, over the 400-line limit",
    ]


def test_the_command_fails_when_it_finds_nothing_to_check(tmp_path: Path) -> None:
    done = run_check(tmp_path)
    assert done.returncode == 2
    assert "no .py file" in done.stderr


@pytest.mark.parametrize("count", [401, 650])
def test_a_file_over_400_lines_is_refused_even_when_it_says_why(tmp_path: Path, count: int) -> None:
    clean_tree(tmp_path)
    write(tmp_path, "services/capture/http.py", lines_of_code(count, "over 300 lines because"))
    assert violations(tmp_path) == [
        ("services/capture/http.py", "file-length", f"{count} lines, over the 400-line limit")
    ]


def test_a_file_of_exactly_400_lines_that_says_why_passes(tmp_path: Path) -> None:
    clean_tree(tmp_path)
    write(tmp_path, "shared/http.py", lines_of_code(400, "It is over 300 lines because."))
    assert violations(tmp_path) == []


@pytest.mark.parametrize(
    "docstring", ["Routes.", "Routes, over 300 lines.", "over 200 lines because it grew"]
)
def test_a_file_over_300_lines_must_say_why_in_its_docstring(
    tmp_path: Path, docstring: str
) -> None:
    clean_tree(tmp_path)
    write(tmp_path, "services/nurture/http.py", lines_of_code(301, docstring))
    write(tmp_path, "services/nurture/store.py", lines_of_code(300, docstring))
    assert [(path, rule) for path, rule, _ in violations(tmp_path)] == [
        ("services/nurture/http.py", "file-length")
    ]


def test_the_reason_must_be_in_the_module_docstring_not_a_comment(tmp_path: Path) -> None:
    clean_tree(tmp_path)
    text = "# over 300 lines because of reasons\n" + lines_of_code(320, "Routes.")
    write(tmp_path, "services/nurture/http.py", text)
    assert [rule for _, rule, _ in violations(tmp_path)] == ["file-length"]


@pytest.mark.parametrize(
    ("relative", "source"),
    [
        # every spelling of one service importing another, wherever the import sits
        ("services/router/handlers.py", "import services.capture.domain\n"),
        ("services/router/handlers.py", "from services.capture.domain import score\n"),
        ("services/router/handlers.py", "from services.capture import domain\n"),
        ("services/router/handlers.py", "from services import capture\n"),
        ("services/router/handlers.py", "from ..capture import domain\n"),
        ("services/router/handlers.py", "def f():\n    from services.capture import domain\n"),
        (
            "services/router/handlers.py",
            "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n"
            "    from services.capture.domain import Lead\n",
        ),
        (
            "services/router/handlers.py",
            "import importlib\nm = importlib.import_module('services.capture.domain')\n",
        ),
        # services and shared never import the composition root
        ("services/router/handlers.py", "from leadflow.devsinks import MailSink\n"),
        ("services/router/handlers.py", "def f():\n    import leadflow.registry\n"),
        ("shared/settings.py", "from leadflow import registry\n"),
        # shared never imports a service
        ("shared/settings.py", "from services.scoring.app import create_app\n"),
        ("shared/db/uow.py", "def f():\n    from services.router import handlers\n"),
    ],
)
def test_an_import_against_the_arrows_is_refused(
    tmp_path: Path, relative: str, source: str
) -> None:
    clean_tree(tmp_path)
    write(tmp_path, relative, source)
    found = violations(tmp_path)
    assert [(path, rule) for path, rule, _ in found] == [(relative, "import-arrow")]
    assert "is not allowed" in found[0][2]


def test_the_violation_names_the_line_of_the_import(tmp_path: Path) -> None:
    clean_tree(tmp_path)
    write(tmp_path, "services/router/handlers.py", "import os\n\n\ndef f():\n    import leadflow\n")
    report = checker.check(tmp_path, checker.load_rules(CONFIG))
    assert [(v.line, v.rule) for v in report.violations] == [(5, "import-arrow")]


def test_a_module_in_no_declared_layer_is_refused(tmp_path: Path) -> None:
    files = {
        "services/registry.py": "import os\n",
        "services/billing/app.py": "from shared import clock\n",
        "services/__init__.py": '"""The services."""\nfrom shared import clock\n',
    }
    assert rules_broken_by(tmp_path, files) == [
        ("services/__init__.py", "layer"),
        ("services/billing/app.py", "layer"),
        ("services/registry.py", "layer"),
    ]


def test_a_new_layer_is_one_line_in_the_declared_rules(tmp_path: Path) -> None:
    clean_tree(tmp_path / "tree")
    write(tmp_path / "tree", "services/billing/app.py", "from services.billing import store\n")
    write(tmp_path / "tree", "services/billing/store.py", "from shared import clock\n")
    assert [rule for _, rule, _ in violations(tmp_path / "tree")] == ["layer", "layer"]
    declared = CONFIG.read_text(encoding="utf-8")
    assert declared.count('    "services.insights",\n') == 1
    extended = declared.replace(
        '    "services.insights",\n', '    "services.insights",\n    "services.billing",\n'
    )
    rules = write(tmp_path, "structure.toml", extended)
    assert violations(tmp_path / "tree", rules) == []
    write(tmp_path / "tree", "services/billing/app.py", "from services.router import store\n")
    assert [rule for _, rule, _ in violations(tmp_path / "tree", rules)] == ["import-arrow"]


def test_a_cycle_through_a_function_level_import_is_reported_once(tmp_path: Path) -> None:
    clean_tree(tmp_path)
    write(tmp_path, "services/nurture/rendering.py", "from services.nurture import settings\n")
    write(
        tmp_path,
        "services/nurture/settings.py",
        "def load():\n    from services.nurture.rendering import render\n",
    )
    found = violations(tmp_path)
    assert [(path, rule) for path, rule, _ in found] == [
        ("services/nurture/rendering.py", "import-cycle")
    ]
    assert "services.nurture.rendering, services.nurture.settings" in found[0][2]


def test_a_longer_cycle_names_every_module_once(tmp_path: Path) -> None:
    clean_tree(tmp_path)
    write(tmp_path, "shared/a.py", "from shared import b\n")
    write(tmp_path, "shared/b.py", "from . import c\n")
    write(tmp_path, "shared/c.py", "import shared.a\nfrom shared.b import x\n")
    write(tmp_path, "shared/d.py", "import shared.a\n")  # reaches the cycle, is not in it
    found = violations(tmp_path)
    assert len(found) == 1
    path, rule, detail = found[0]
    assert (path, rule) == ("shared/a.py", "import-cycle")
    assert detail.startswith("3 modules import each other: shared.a, shared.b, shared.c;")
    assert "shared.d" not in detail


def test_two_separate_cycles_are_two_violations(tmp_path: Path) -> None:
    files = {
        "services/insights/console/app.py": "from . import routes\n",
        "services/insights/console/routes.py": "from .app import console\n",
        "services/scoring/model.py": "from services.scoring import app\n",
        "services/scoring/app.py": "from .model import weights\n",
    }
    assert rules_broken_by(tmp_path, files) == [
        ("services/insights/console/app.py", "import-cycle"),
        ("services/scoring/app.py", "import-cycle"),
    ]


def test_from_package_import_name_is_the_package_unless_name_is_a_module(tmp_path: Path) -> None:
    clean_tree(tmp_path)
    # `from shared.db import uow` loads shared/db/uow.py, not shared/db/__init__.py: no cycle.
    write(tmp_path, "shared/db/__init__.py", "from shared.tools import helper\n")
    write(tmp_path, "shared/tools.py", "from shared.db import uow\n")
    assert violations(tmp_path) == []
    # `from shared.db import Database` is a name of the package itself: that is a cycle.
    write(tmp_path, "shared/tools.py", "from shared.db import Database\n")
    assert [rule for _, rule, _ in violations(tmp_path)] == ["import-cycle"]


def test_a_file_that_does_not_parse_is_reported(tmp_path: Path) -> None:
    clean_tree(tmp_path)
    write(tmp_path, "shared/broken.py", "def f(:\n")
    assert [(path, rule) for path, rule, _ in violations(tmp_path)] == [
        ("shared/broken.py", "syntax")
    ]


@pytest.mark.parametrize(
    ("package", "level", "module", "expected"),
    [
        ("services.capture", 1, None, "services.capture"),
        ("services.capture", 1, "handlers", "services.capture.handlers"),
        ("services.capture.sources", 2, "domain", "services.capture.domain"),
        ("services.capture", 2, "router.store", "services.router.store"),
        ("shared", 0, "shared.db", "shared.db"),
        ("shared", 3, "x", None),
    ],
)
def test_relative_imports_resolve_against_the_importing_package(
    package: str, level: int, module: str | None, expected: str | None
) -> None:
    assert checker.resolve_relative(package, level, module) == expected
