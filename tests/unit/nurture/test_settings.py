"""The `nurture` config section: durations, times, sequences, and mistakes that name their line."""

from __future__ import annotations

from datetime import time, timedelta
from pathlib import Path

import pytest
from pydantic import ValidationError

from services.nurture.settings import (
    NurtureConfig,
    load,
    parse_duration,
)
from shared.config import ConfigError, load_config

EXAMPLE = Path(__file__).resolve().parents[3] / "leadflow.example.yaml"


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "leadflow.yaml"
    path.write_text(text)
    return path


def problems(tmp_path: Path, text: str) -> set[tuple[int | None, str]]:
    with pytest.raises(ConfigError) as info:
        load(load_config(write(tmp_path, text), environ={}))
    return {(p.line, f"{p.path}: {p.message}") for p in info.value.problems}


STEP = '{template: guide, subject: "Hi", links: {guide: "https://x.example/g", article: "https://x.example/a"}}'


def test_the_example_has_sequences_smtp_from_the_environment_and_the_public_url():
    raw = load_config(
        EXAMPLE,
        environ={
            "LEADFLOW_SMTP_HOST": "smtp.example.com",
            "LEADFLOW_SMTP_PORT": "2525",
            "LEADFLOW_PUBLIC_URL": "https://go.example.com",
        },
    )
    config = load(raw)
    assert (config.smtp.host, config.smtp.port) == ("smtp.example.com", 2525)
    assert config.public_url == "https://go.example.com"
    assert list(config.sequences) == ["newsletter-welcome", "warm-nudge", "cold-welcome"]
    cold = config.sequences["cold-welcome"]
    assert cold.steps[0].delay == timedelta(0)  # a newcomer sees the first email at once
    assert [cold.step_id(n) for n in (1, 2, 3)] == ["guide", "video", "podcast"]
    assert config.quiet_hours is not None and config.quiet_hours.start == time(22, 0)
    defaults = load(load_config(EXAMPLE, environ={}))
    assert (defaults.smtp.host, defaults.smtp.port) == ("127.0.0.1", 1025)
    assert defaults.public_url == "http://127.0.0.1:8003"


@pytest.mark.parametrize(
    ("value", "seconds"),
    [(0, 0), (90, 90), ("90s", 90), ("15m", 900), ("1.5h", 5400), ("3d", 259200), ("1w", 604800)],
)
def test_durations(value, seconds):
    assert parse_duration(value) == timedelta(seconds=seconds)


@pytest.mark.parametrize("value", ["soon", "-1d", "3 days", True, None])
def test_bad_durations(value):
    with pytest.raises(ValueError):
        parse_duration(value)


def test_an_unquoted_clock_time_is_read_as_a_time():
    # YAML 1.1 reads 22:00 as the base-60 integer 1320.
    config = NurtureConfig.model_validate({"quiet_hours": {"start": 1320, "end": "07:30"}})
    assert config.quiet_hours is not None
    assert (config.quiet_hours.start, config.quiet_hours.end) == (time(22, 0), time(7, 30))


def test_mistakes_name_their_line(tmp_path):
    found = problems(
        tmp_path,
        f"""nurture:
  from: not-an-address
  quiet_hours: {{start: "22:00", end: "07:00", default_timezone: Mars/Olympus}}
  sequences:
    hot-leads:
      entry: {{grades: [hot]}}
      steps: [{STEP}]
    bad-delay:
      steps:
        - {{template: guide, subject: "Hi", delay: soon}}
    no-steps:
      steps: []
""",
    )
    lines = {line for line, _ in found}
    messages = " | ".join(message for _, message in found)
    assert {2, 3, 6, 10, 12} <= lines, found
    assert "is not an email address" in messages
    assert "unknown time zone 'Mars/Olympus'" in messages
    assert "nurture.sequences.hot-leads.entry.grades.0" in messages
    assert "'soon' is not a duration" in messages


def test_templates_are_checked_when_the_config_is_loaded(tmp_path):
    found = problems(
        tmp_path,
        """nurture:
  sequences:
    welcome:
      steps:
        - {template: no-such-template, subject: "Hi"}
        - template: guide
          subject: "Hi"
          links: {guide: "https://x.example/g"}
        - {template: guide, subject: "{{ lead.first_name ",
           links: {guide: "https://x.example/g", article: "https://x.example/a"}}
""",
    )
    messages = {message for _, message in found}
    assert any(
        m.startswith("nurture.sequences.welcome.steps.0.template: template no-such-template")
        for m in messages
    ), found
    assert (
        "nurture.sequences.welcome.steps.1.links: guide.html.j2 uses links.article, "
        "which this step does not define"
    ) in messages
    assert any(m.startswith("nurture.sequences.welcome.steps.2.subject") for m in messages)
    assert {line for line, _ in found} >= {5, 8, 9}


def test_your_templates_override_the_packaged_ones_and_must_keep_the_unsubscribe_link(
    tmp_path,
):
    mine = tmp_path / "mail"
    mine.mkdir()
    (mine / "hello.html.j2").write_text("<p>Hello {{ lead.first_name }}</p>")
    (mine / "hello.txt.j2").write_text("Hello {{ lead.first_name }}")
    (mine / "_layout.txt.j2").write_text("{{ body }}\n(no footer)")
    found = problems(
        tmp_path,
        """nurture:
  templates_dir: mail
  sequences:
    welcome:
      steps: [{template: hello, subject: "Hi"}]
""",
    )
    assert (
        5,
        "nurture.sequences.welcome.steps.0.template: _layout.txt.j2 must show unsubscribe_url",
    ) in found
    (mine / "_layout.txt.j2").unlink()
    config = load(
        load_config(
            write(
                tmp_path,
                "nurture:\n  templates_dir: mail\n  sequences:\n    welcome:\n"
                '      steps: [{template: hello, subject: "Hi"}]\n',
            ),
            environ={},
        )
    )
    assert config.templates_path == mine.resolve()


def test_unknown_fields_duplicate_step_ids_and_equal_quiet_hours_are_refused():
    with pytest.raises(ValidationError, match="Extra inputs"):
        NurtureConfig.model_validate({"sequences": {}, "smtp": {"hots": "x"}})
    with pytest.raises(ValidationError, match="duplicate step id 'a'"):
        NurtureConfig.model_validate(
            {
                "sequences": {
                    "s": {
                        "steps": [
                            {"id": "a", "template": "guide", "subject": "x"},
                            {"id": "a", "template": "guide", "subject": "y"},
                        ]
                    }
                }
            }
        )
    with pytest.raises(ValidationError, match="start and end are equal"):
        NurtureConfig.model_validate({"quiet_hours": {"start": "08:00", "end": "08:00"}})


def test_unsubscribed_bounced_and_erased_always_end_a_sequence():
    config = NurtureConfig.model_validate(
        {
            "sequences": {
                "s": {
                    "steps": [{"template": "guide", "subject": "x"}],
                    "exit_on": ["converted"],
                }
            }
        }
    )
    sequence = config.sequences["s"]
    assert all(sequence.exits_on(r) for r in ("unsubscribed", "bounced", "erased", "converted"))
    assert not sequence.exits_on("sales_ready")
