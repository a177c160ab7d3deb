"""Check that the production code keeps its layout: file lengths, import arrows, no cycles.

Run from the repository root: `.venv/bin/python scripts/check_structure.py`. The rules
come from `scripts/structure.toml`; every `.py` file under its roots (leadflow/,
services/, shared/) is checked, tests, benchmarks, migrations and templates left out:

1. file length: none over `max_lines`; one over `explain_over` says why in its docstring;
2. import arrows: every module belongs to a layer (a module prefix), and every import of
   a project module (at module level, in a function, under `if TYPE_CHECKING:`, or
   `importlib.import_module("literal")`) follows an allowed arrow between layers;
3. import cycles: no group of two or more modules that import each other, directly or not.

Each violation is one line, `path:line: rule: detail`, and the exit status is 1; a clean
tree prints one summary line and exits 0. Standard library only. The file is over 300
lines because the three checks share one parse of the tree and one report.
"""

from __future__ import annotations

import argparse
import ast
import fnmatch
import itertools
import sys
import tomllib
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

DEFAULT_CONFIG = Path(__file__).with_name("structure.toml")
SELF = "self"


@dataclass(frozen=True)
class Rules:
    """What `structure.toml` declares."""

    roots: tuple[str, ...]
    exclude_dirs: frozenset[str]
    max_lines: int
    explain_over: int
    explain_phrase: str
    layers: tuple[str, ...]
    arrows: tuple[tuple[str, tuple[str, ...]], ...]

    def layer_of(self, module: str) -> str | None:
        """The longest declared layer prefix `module` falls under, if any."""
        matches = [p for p in self.layers if module == p or module.startswith(p + ".")]
        return max(matches, key=len) if matches else None

    def is_layer_ancestor(self, module: str) -> bool:
        """Whether `module` is a package holding layers (e.g. `services`)."""
        return any(layer.startswith(module + ".") for layer in self.layers)

    def allowed(self, source: str) -> list[str]:
        """The layer patterns `source` may import; `self` is spelled out as the layer."""
        allowed: list[str] = []
        for pattern, targets in self.arrows:
            if fnmatch.fnmatchcase(source, pattern):
                allowed.extend(source if t == SELF else t for t in targets)
        return allowed

    def may_import(self, source: str, target: str) -> bool:
        return any(fnmatch.fnmatchcase(target, p) for p in self.allowed(source))


@dataclass(frozen=True, order=True)
class Violation:
    """One broken rule at one place."""

    path: str
    line: int
    rule: str
    detail: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.rule}: {self.detail}"


@dataclass(frozen=True)
class Import:
    """An import of a project module (already resolved to its dotted name)."""

    line: int
    target: str


@dataclass
class Module:
    """One parsed source file."""

    name: str
    path: str
    lines: int
    docstring: str
    imports: list[Import] = field(default_factory=list)


def load_rules(path: Path = DEFAULT_CONFIG) -> Rules:
    """Read the declared layout."""
    data = tomllib.loads(path.read_text(encoding="utf-8"))
    files, layers, arrows = data["files"], data["layers"], data["arrows"]
    return Rules(
        roots=tuple(files["roots"]),
        exclude_dirs=frozenset(files.get("exclude_dirs", ())),
        max_lines=int(files["max_lines"]),
        explain_over=int(files["explain_over"]),
        explain_phrase=str(files["explain_phrase"]),
        layers=tuple(layers["modules"]),
        arrows=tuple((str(k), tuple(v)) for k, v in arrows.items()),
    )


def source_files(root: Path, rules: Rules) -> Iterator[Path]:
    """Every production `.py` file under the declared roots, in path order."""
    for top in rules.roots:
        for path in sorted((root / top).rglob("*.py")):  # a missing root yields nothing
            relative = path.relative_to(root)
            if not rules.exclude_dirs.intersection(relative.parts[:-1]):
                yield path


def module_name(relative: Path) -> str:
    """`services/capture/http.py` → `services.capture.http`; a package's `__init__` → its name."""
    parts = list(relative.with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def load_modules(root: Path, rules: Rules) -> tuple[dict[str, Module], list[Violation]]:
    """Parse every production file and resolve its imports of project modules."""
    parsed: dict[str, tuple[Module, ast.Module, bool]] = {}
    broken: list[Violation] = []
    for path in source_files(root, rules):
        relative = path.relative_to(root)
        text = path.read_text(encoding="utf-8")
        try:
            tree = ast.parse(text, filename=str(relative))
        except SyntaxError as exc:
            broken.append(Violation(relative.as_posix(), exc.lineno or 1, "syntax", str(exc.msg)))
            continue
        module = Module(
            name=module_name(relative),
            path=relative.as_posix(),
            lines=len(text.splitlines()),
            docstring=ast.get_docstring(tree) or "",
        )
        parsed[module.name] = (module, tree, path.name == "__init__.py")
    known = set(parsed) | packages_of(parsed)
    for module, tree, is_package in parsed.values():
        package = module.name if is_package else module.name.rpartition(".")[0]
        module.imports = [
            found
            for found in imports_of(tree, package, known)
            if found.target.split(".")[0] in rules.roots
        ]
    return {name: entry[0] for name, entry in parsed.items()}, broken


def packages_of(modules: Iterable[str]) -> set[str]:
    """Every package that holds one of `modules` (namespace packages have no file)."""
    packages: set[str] = set()
    for name in modules:
        parts = name.split(".")
        packages.update(".".join(parts[:i]) for i in range(1, len(parts)))
    return packages


def imports_of(tree: ast.Module, package: str, known: set[str]) -> Iterator[Import]:
    """Every import in `tree`, wherever it sits, resolved to the module it loads.

    `from package import name` loads the submodule `package.name` when there is one;
    relative imports are resolved against `package` (the importing module's package).
    """
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield Import(node.lineno, alias.name)
        elif isinstance(node, ast.ImportFrom):
            base = resolve_relative(package, node.level, node.module)
            if base is None:
                continue
            for alias in node.names:
                submodule = f"{base}.{alias.name}"
                yield Import(node.lineno, submodule if submodule in known else base)
        elif isinstance(node, ast.Call) and _is_dynamic_import(node.func) and node.args:
            name = node.args[0]
            # A literal absolute name; a relative one needs `package=` and is left out.
            if isinstance(name, ast.Constant) and str(name.value)[:1] not in {"", "."}:
                yield Import(node.lineno, str(name.value))


def _is_dynamic_import(func: ast.expr) -> bool:
    if isinstance(func, ast.Attribute):
        return func.attr == "import_module"
    return isinstance(func, ast.Name) and func.id in {"import_module", "__import__"}


def resolve_relative(package: str, level: int, module: str | None) -> str | None:
    """The absolute name of `from <level dots><module> import ...` inside `package`."""
    if level == 0:
        return module
    parts = package.split(".") if package else []
    if level - 1 > len(parts):
        return None
    base = parts[: len(parts) - (level - 1)]
    if module:
        base.append(module)
    return ".".join(base) or None


def check_lengths(modules: Iterable[Module], rules: Rules) -> list[Violation]:
    """Files over the limit, and files over the explain threshold that do not say why."""
    found: list[Violation] = []
    phrase = rules.explain_phrase.lower()
    for module in modules:
        if module.lines > rules.max_lines:
            detail = f"{module.lines} lines, over the {rules.max_lines}-line limit"
            found.append(Violation(module.path, 1, "file-length", detail))
        elif module.lines > rules.explain_over:
            said = " ".join(module.docstring.split()).lower()
            if phrase not in said:
                detail = (
                    f"{module.lines} lines: the module docstring must say why,"
                    f' with the words "{rules.explain_phrase}"'
                )
                found.append(Violation(module.path, 1, "file-length", detail))
    return found


def check_arrows(modules: Iterable[Module], rules: Rules) -> list[Violation]:
    """Modules outside every layer, and imports that no declared arrow allows."""
    found: list[Violation] = []
    for module in modules:
        source = rules.layer_of(module.name)
        if source is None:
            found.extend(_unlayered(module, rules))
            continue
        for imported in module.imports:
            target = rules.layer_of(imported.target)
            if target is None and rules.is_layer_ancestor(imported.target):
                continue  # e.g. `import services`: that package imports nothing (see below)
            if target is None:
                detail = (
                    f"{module.name} imports {imported.target}, which belongs to no declared layer"
                )
            elif not rules.may_import(source, target):
                allowed = ", ".join(rules.allowed(source)) or "nothing"
                detail = (
                    f"{source} → {target} is not allowed ({module.name} imports"
                    f" {imported.target}; {source} may import: {allowed})"
                )
            else:
                continue
            found.append(Violation(module.path, imported.line, "import-arrow", detail))
    return found


def _unlayered(module: Module, rules: Rules) -> list[Violation]:
    if not rules.is_layer_ancestor(module.name):
        detail = f"{module.name} belongs to no declared layer (scripts/structure.toml)"
        return [Violation(module.path, 1, "layer", detail)]
    # A package that holds layers (`services/__init__.py`) may exist, but imports nothing.
    why = f"package {module.name} holds layers and belongs to none; it must not import"
    return [Violation(module.path, i.line, "layer", f"{why} {i.target}") for i in module.imports]


def import_graph(modules: dict[str, Module]) -> dict[str, dict[str, int]]:
    """Module → {imported module: first line importing it}, between parsed modules only."""
    graph: dict[str, dict[str, int]] = {}
    for name, module in modules.items():
        edges: dict[str, int] = {}
        for line, target in sorted((i.line, i.target) for i in module.imports):
            if target in modules and target != name:
                edges.setdefault(target, line)
        graph[name] = edges
    return graph


def reachable(graph: dict[str, dict[str, int]], start: str) -> set[str]:
    """Every module `start` loads, directly or through others."""
    seen: set[str] = set()
    queue = deque(graph[start])
    while queue:
        node = queue.popleft()
        if node not in seen:
            seen.add(node)
            queue.extend(graph[node])
    return seen


def strongly_connected(graph: dict[str, dict[str, int]]) -> list[list[str]]:
    """The groups of modules that all reach each other (a few hundred modules: BFS each)."""
    reach = {name: reachable(graph, name) for name in graph}
    components: set[tuple[str, ...]] = set()
    for name in graph:
        members = {name} | {other for other in reach[name] if name in reach[other]}
        components.add(tuple(sorted(members)))
    return [list(c) for c in sorted(components)]


def shortest_cycle(graph: dict[str, dict[str, int]], members: Sequence[str]) -> list[str]:
    """The shortest cycle through `members[0]` staying inside the component."""
    start, inside = members[0], set(members)
    came_from: dict[str, str] = {}
    queue = deque([start])
    while queue:
        node = queue.popleft()
        for succ in sorted(graph[node]):
            if succ == start:
                path = [node]
                while path[-1] != start:
                    path.append(came_from[path[-1]])
                return [*reversed(path), start]
            if succ in inside and succ not in came_from:
                came_from[succ] = node
                queue.append(succ)
    return [start]


def check_cycles(modules: dict[str, Module]) -> list[Violation]:
    """One violation per import cycle (strongly connected component of 2+ modules)."""
    graph = import_graph(modules)
    found: list[Violation] = []
    for members in strongly_connected(graph):
        if len(members) < 2:
            continue
        cycle = shortest_cycle(graph, members)
        steps = " → ".join(
            f"{name} (line {graph[name][nxt]})" for name, nxt in itertools.pairwise(cycle)
        )
        detail = (
            f"{len(members)} modules import each other: {', '.join(members)};"
            f" e.g. {steps} → {cycle[0]}"
        )
        first = modules[cycle[0]]
        found.append(Violation(first.path, graph[cycle[0]][cycle[1]], "import-cycle", detail))
    return found


@dataclass(frozen=True)
class Report:
    """The outcome of one check of a tree."""

    violations: list[Violation]
    files: int
    imports: int


def check(root: Path, rules: Rules) -> Report:
    """Every rule over the tree at `root`."""
    modules, violations = load_modules(root, rules)
    violations += check_lengths(modules.values(), rules)
    violations += check_arrows(modules.values(), rules)
    violations += check_cycles(modules)
    unparsed = sum(v.rule == "syntax" for v in violations)
    imports = sum(len(m.imports) for m in modules.values())
    return Report(sorted(violations), len(modules) + unparsed, imports)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--root", type=Path, default=Path.cwd(), help="repository root")
    parser.add_argument("--config", type=Path, default=DEFAULT_CONFIG, help="declared rules")
    args = parser.parse_args(argv)
    rules = load_rules(args.config)
    report = check(args.root, rules)
    roots = ", ".join(f"{r}/" for r in rules.roots)
    if report.files == 0:
        print(f"structure: no .py file under {roots} in {args.root}", file=sys.stderr)
        return 2
    for violation in report.violations:
        print(violation)
    if report.violations:
        print(
            f"structure: {len(report.violations)} violations in {report.files} files under {roots}",
            file=sys.stderr,
        )
        return 1
    print(
        f"structure: {report.files} files under {roots} clean: none over"
        f" {rules.max_lines} lines, {report.imports} project imports follow the declared"
        " arrows, no import cycles"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
