"""The config check of templates: every step rendered with a sample lead, every mistake named.

`settings.load` runs it, so `leadflow config check` reports a missing template, a
Jinja error or a link a template uses but its step does not define, with the line
of the config that names the step.
"""

from __future__ import annotations

from jinja2 import TemplateError, TemplateNotFound, TemplateSyntaxError, nodes
from jinja2.sandbox import SandboxedEnvironment

from services.nurture.config import NurtureConfig
from services.nurture.rendering import HTML_LAYOUT, SAMPLE_LEAD, TEXT_LAYOUT, Templates, Tracking
from services.nurture.sequence_config import Step


def _link_references(env: SandboxedEnvironment, name: str) -> set[str]:
    assert env.loader is not None
    source, _, _ = env.loader.get_source(env, name)
    tree = env.parse(source)
    used: set[str] = set()
    for node in tree.find_all(nodes.Getattr):
        if isinstance(node.node, nodes.Name) and node.node.name == "links":
            used.add(node.attr)
    for item in tree.find_all(nodes.Getitem):
        if (
            isinstance(item.node, nodes.Name)
            and item.node.name == "links"
            and isinstance(item.arg, nodes.Const)
        ):
            used.add(str(item.arg.value))
    return used


def _template_error(exc: Exception) -> str:
    if isinstance(exc, TemplateNotFound):
        return f"template {exc.name} not found"
    if isinstance(exc, TemplateSyntaxError):
        return f"{exc.name or 'template'} line {exc.lineno}: {exc.message}"
    return f"{type(exc).__name__}: {exc}"


def template_problems(config: NurtureConfig) -> list[tuple[tuple[str | int, ...], str]]:
    """Render every step with a sample lead; (config path, message) per mistake."""
    templates = Templates(config)
    tracking = Tracking("https://nurture.invalid", "check")
    problems: list[tuple[tuple[str | int, ...], str]] = []
    for sequence_id, sequence in config.sequences.items():
        for index, step in enumerate(sequence.steps):
            path: tuple[str | int, ...] = ("sequences", sequence_id, "steps", index)
            problems.extend(_step_problems(templates, sequence_id, index + 1, step, path, tracking))
    doi = config.double_opt_in
    try:
        rendered = templates.render_confirmation(
            SAMPLE_LEAD, confirm_url="https://nurture.invalid/v1/confirm/x", valid_days=7
        )
        if "https://nurture.invalid/v1/confirm/x" not in rendered.text:
            problems.append(
                (("double_opt_in", "template"), f"{doi.template}.txt.j2 must show confirm_url")
            )
    except (TemplateError, ValueError, TypeError) as exc:
        problems.append((("double_opt_in", "template"), _template_error(exc)))
    return problems


def _step_problems(
    templates: Templates,
    sequence_id: str,
    number: int,
    step: Step,
    path: tuple[str | int, ...],
    tracking: Tracking,
) -> list[tuple[tuple[str | int, ...], str]]:
    problems: list[tuple[tuple[str | int, ...], str]] = []
    for env, suffix in ((templates.html_env, "html"), (templates.text_env, "txt")):
        name = f"{step.template}.{suffix}.j2"
        try:
            unknown = _link_references(env, name) - set(step.links)
        except (TemplateError, OSError) as exc:
            problems.append(((*path, "template"), _template_error(exc)))
            continue
        for link_id in sorted(unknown):
            problems.append(
                ((*path, "links"), f"{name} uses links.{link_id}, which this step does not define")
            )
    if problems:
        return problems
    try:
        rendered = templates.render_step(
            sequence_id, number, SAMPLE_LEAD, send_id="0" * 32, tracking=tracking
        )
    except TemplateSyntaxError as exc:
        where = "subject" if exc.name is None else "template"
        return [((*path, where), _template_error(exc))]
    except (TemplateError, ValueError, TypeError, ZeroDivisionError) as exc:
        return [((*path, "template"), _template_error(exc))]
    unsubscribe_url = rendered.unsubscribe_url or ""
    if unsubscribe_url not in rendered.html:
        problems.append(((*path, "template"), f"{HTML_LAYOUT} must show unsubscribe_url"))
    if unsubscribe_url not in rendered.text:
        problems.append(((*path, "template"), f"{TEXT_LAYOUT} must show unsubscribe_url"))
    return problems
