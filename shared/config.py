"""The YAML config file: `${ENV}` interpolation and errors that name file and line.

Each service validates its own section with its own pydantic model; this
module only loads the file, keeps the line of every value and turns pydantic
errors into `file:line: path: problem` messages. The `channels` section is
read by capture (attribution) and insights (spend), so its model lives here.
It is over 300 lines because what every section shares lives with the loader:
the line-keeping reader, cross-checked sections (`load_checked`) and time zones.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any, TypeVar
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    model_validator,
)

M = TypeVar("M", bound=BaseModel)
KeyPath = tuple[str | int, ...]
Found = list[tuple[KeyPath, str]]

_ENV_PATTERN = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")
SECTIONS = ("forms", "channels", "scoring", "nurture", "routing")


@dataclass(frozen=True)
class ConfigProblem:
    """One mistake in the config file."""

    file: str
    line: int | None
    path: str
    message: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        return f"{where}: {self.path or '(root)'}: {self.message}"


class ConfigError(ValueError):
    """The config file has mistakes; `problems` names each with its line."""

    def __init__(self, problems: list[ConfigProblem]):
        self.problems = problems
        super().__init__("\n".join(str(p) for p in problems))


@dataclass
class RawConfig:
    """The parsed file: plain data plus the line of every key path."""

    file: str
    data: dict[str, Any]
    lines: dict[tuple[str | int, ...], int] = field(default_factory=dict)

    def section(self, name: str) -> Any:
        """The raw data of one top-level section (empty when absent)."""
        return self.data.get(name) or {}

    def line_of(self, path: tuple[str | int, ...]) -> int | None:
        """The line of `path`, or of its nearest parent that has one."""
        while path:
            if path in self.lines:
                return self.lines[path]
            path = path[:-1]
        return None

    def validate(self, name: str, model: type[M]) -> M:
        """Validate section `name` with `model`, raising ConfigError with lines."""
        try:
            return model.model_validate(self.section(name))
        except ValidationError as exc:
            raise ConfigError(self.problems_from(exc, prefix=(name,))) from None

    def problems_at(
        self, section: str, found: Iterable[tuple[KeyPath, str]]
    ) -> list[ConfigProblem]:
        """Mistakes found in `section` (path under it, message), each at its line."""
        return [
            ConfigProblem(
                self.file,
                self.line_of((section, *path)),
                ".".join(str(p) for p in (section, *path)),
                message,
            )
            for path, message in found
        ]

    def problems_from(
        self, exc: ValidationError, prefix: tuple[str | int, ...] = ()
    ) -> list[ConfigProblem]:
        """Turn a pydantic error into problems that name their line."""
        problems = []
        for err in exc.errors():
            loc = tuple(p for p in err["loc"] if not _is_union_tag(p))
            path = (*prefix, *loc)
            message = err["msg"]
            if err["type"] == "extra_forbidden":
                message = f"unknown field {loc[-1]!r}" if loc else "unknown field"
            problems.append(
                ConfigProblem(
                    self.file, self.line_of(path), ".".join(str(p) for p in path), message
                )
            )
        return problems


def _is_union_tag(part: Any) -> bool:
    # pydantic adds the union member's type name to loc ("function-after[...]"): not a path.
    return isinstance(part, str) and ("[" in part or part in {"str", "int", "float", "bool"})


class _LineLoader(yaml.SafeLoader):
    """A SafeLoader used to compose the node tree whose marks give every line."""


# Resolves plain scalars (ints, bools, dates...) the way SafeLoader would.
_SCALARS = yaml.SafeLoader("")


def load_config(path: str | Path, environ: dict[str, str] | None = None) -> RawConfig:
    """Read the YAML config, interpolating `${VAR}` / `${VAR:-default}` from the environment."""
    environ = dict(os.environ) if environ is None else environ
    file = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError([ConfigProblem(file, None, "", "file not found")]) from None
    try:
        root = yaml.compose(text, Loader=_LineLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark else None
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError([ConfigProblem(file, line, "", f"invalid YAML: {problem}")]) from None
    if root is None:
        return RawConfig(file, {})
    lines: dict[tuple[str | int, ...], int] = {}
    problems: list[ConfigProblem] = []
    data = _to_python(root, (), lines, problems, environ, file)
    if not isinstance(data, dict):
        problems.append(ConfigProblem(file, 1, "", "the file must be a mapping of sections"))
        raise ConfigError(problems)
    for key in data:
        if key not in SECTIONS:
            problems.append(
                ConfigProblem(
                    file,
                    lines.get((key,)),
                    str(key),
                    f"unknown section (expected one of {', '.join(SECTIONS)})",
                )
            )
    if problems:
        raise ConfigError(problems)
    return RawConfig(file, data, lines)


def _to_python(
    node: yaml.Node,
    path: tuple[str | int, ...],
    lines: dict[tuple[str | int, ...], int],
    problems: list[ConfigProblem],
    environ: dict[str, str],
    file: str,
) -> Any:
    lines[path] = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        out: dict[str, Any] = {}
        for key_node, value_node in node.value:
            key = key_node.value
            if key in out:
                problems.append(
                    ConfigProblem(
                        file,
                        key_node.start_mark.line + 1,
                        ".".join(map(str, (*path, key))),
                        "duplicate key",
                    )
                )
            child = (*path, key)
            out[key] = _to_python(value_node, child, lines, problems, environ, file)
            lines[child] = key_node.start_mark.line + 1
        return out
    if isinstance(node, yaml.SequenceNode):
        return [
            _to_python(item, (*path, i), lines, problems, environ, file)
            for i, item in enumerate(node.value)
        ]
    value = _SCALARS.construct_object(node) if node.tag != "tag:yaml.org,2002:str" else node.value
    if isinstance(value, str) and "${" in value:
        value = _interpolate(value, path, node.start_mark.line + 1, problems, environ, file)
    return value


def _interpolate(
    value: str,
    path: tuple[str | int, ...],
    line: int,
    problems: list[ConfigProblem],
    environ: dict[str, str],
    file: str,
) -> str:
    def replace(match: re.Match[str]) -> str:
        name, default = match.group(1), match.group(2)
        if name in environ:
            return environ[name]
        if default is not None:
            return default
        problems.append(
            ConfigProblem(
                file, line, ".".join(map(str, path)), f"environment variable {name} is not set"
            )
        )
        return ""

    return _ENV_PATTERN.sub(replace, value)


class StrictModel(BaseModel):
    """Base of config models: unknown fields are mistakes."""

    model_config = ConfigDict(extra="forbid", frozen=True)


def check_timezone(value: str) -> str:
    """`value`, once it names a known IANA time zone."""
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown time zone {value!r}") from None
    return value


TimeZoneName = Annotated[str, AfterValidator(check_timezone)]


class CrossCheckedModel(StrictModel):
    """A section whose fields refer to each other: `problems()` lists what pydantic can't see.

    Validated on its own the model refuses those mistakes in one message;
    `load_checked` validates it with the check put off, then reports each
    mistake at its own line.
    """

    def problems(self) -> Found:
        """Mistakes across fields, as (path in the section, message)."""
        return []

    @model_validator(mode="after")
    def _cross_checked(self, info: ValidationInfo) -> Any:
        if info.context and info.context.get("checked_later"):
            return self
        problems = self.problems()
        if problems:
            raise ValueError("; ".join(f"{'.'.join(map(str, p))}: {m}" for p, m in problems))
        return self


def load_checked(
    raw: RawConfig,
    section: str,
    model: type[M],
    *,
    reword: Callable[[ConfigProblem], ConfigProblem] | None = None,
    more: Callable[[M], Found] | None = None,
) -> M:
    """Validate `section` with `model`; every mistake, field or cross-field, names its line.

    `reword` may rewrite pydantic's problems; `more` adds mistakes that need more
    than the model (another section, the file system).
    """
    try:
        config = model.model_validate(raw.section(section), context={"checked_later": True})
    except ValidationError as exc:
        problems = raw.problems_from(exc, prefix=(section,))
        raise ConfigError([reword(p) for p in problems] if reword else problems) from None
    found = config.problems() if isinstance(config, CrossCheckedModel) else []
    found += more(config) if more else []
    if found:
        raise ConfigError(raw.problems_at(section, found))
    return config


class AttributionRule(StrictModel):
    """A touch whose attribution matches every given condition belongs to `channel`."""

    channel: str
    source: str | None = Field(default=None, description="Intake door (form, api, meta...).")
    utm_source: str | list[str] | None = None
    utm_medium: str | list[str] | None = None
    utm_campaign: str | list[str] | None = None
    promo_code: str | list[str] | None = None
    referrer_contains: str | None = None
    click_id: str | None = Field(
        default=None, description="gclid, fbclid, msclkid, ttclid or li_fat_id present."
    )
    form_id: str | list[str] | None = None


class DailySpend(StrictModel):
    """Spend (and reach) of a channel on one day."""

    date: date
    amount: Decimal = Field(ge=0)
    impressions: int | None = Field(default=None, ge=0)
    clicks: int | None = Field(default=None, ge=0)


class Channel(StrictModel):
    """A marketing channel: its display name and what it costs."""

    label: str | None = None
    monthly_spend: Decimal | None = Field(
        default=None, ge=0, description="Spread evenly over the days of the month."
    )
    spend: list[DailySpend] = Field(default_factory=list)


class ChannelsConfig(StrictModel):
    """The `channels` section: attribution rules (first match wins) and channel spend."""

    currency: str = "USD"
    default: str = Field(default="direct", description="Channel when no rule matches.")
    rules: list[AttributionRule] = Field(default_factory=list)
    channels: dict[str, Channel] = Field(default_factory=dict)


def validate_sections(raw: RawConfig, models: dict[str, type[BaseModel]]) -> dict[str, Any]:
    """Validate several sections, reporting the problems of all of them at once."""
    problems: list[ConfigProblem] = []
    parsed: dict[str, Any] = {}
    for name, model in models.items():
        try:
            parsed[name] = raw.validate(name, model)
        except ConfigError as exc:
            problems.extend(exc.problems)
    if problems:
        raise ConfigError(problems)
    return parsed
