"""The `scoring` section: the shipped example, the model version, mistakes named with their line."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from services.scoring.settings import ScoringConfig, load
from shared.config import ConfigError, load_config
from tests.unit.scoring.support import EXAMPLE, example_config


def problems(tmp_path: Path, text: str, forms: str = "") -> dict[tuple[int | None, str], str]:
    """(line, path) → message of every mistake in a file with this scoring section."""
    path = tmp_path / "leadflow.yaml"
    path.write_text(forms + "scoring:\n" + text)
    with pytest.raises(ConfigError) as info:
        load(load_config(path, environ={}))
    return {(p.line, p.path): p.message for p in info.value.problems}


def test_the_example_model_loads_with_its_rules():
    config = example_config()
    assert (config.grades.hot, config.grades.warm) == (70, 35)
    assert config.decay.half_life_days == 60
    assert [r.id for r in config.fit][:2] == ["competitor", "free_mail"]
    assert config.fit[0].disqualify and config.fit[3].in_ is not None
    assert len(config.model_version) == 12


def test_the_version_changes_with_the_model_not_with_the_sweep_schedule():
    config = example_config()
    same = config.model_copy(
        update={"decay": config.decay.model_copy(update={"sweep_minutes": 1, "sweep_batch": 5})}
    )
    other = config.model_copy(update={"grades": config.grades.model_copy(update={"warm": 40})})
    assert same.model_version == config.model_version
    assert other.model_version != config.model_version
    data = yaml.safe_load(EXAMPLE.read_text())["scoring"]
    reordered = ScoringConfig.model_validate({**data, "grades": {"warm": 35, "hot": 70}})
    assert reordered.model_version == config.model_version


def test_unknown_fields_and_bad_operators_name_their_line(tmp_path):
    found = problems(
        tmp_path,
        """  grades: {hot: 70, warm: 35, tepid: 10}
  fit:
    - id: title
      field: job_title
      greater_than: 5
      points: 15
  engagement:
    - id: clicks
      event: clik
      points: 5
""",
    )
    assert found[(2, "scoring.grades.tepid")] == "unknown field 'tepid'"
    assert "unknown setting 'greater_than'" in found[(6, "scoring.fit.0.greater_than")]
    assert "equals, in, contains, regex, range, exists" in found[(6, "scoring.fit.0.greater_than")]
    assert "'submission'" in found[(10, "scoring.engagement.0.event")]


def test_shapes_that_cannot_work_are_refused(tmp_path):
    found = problems(
        tmp_path,
        """  sales_ready:
    - {}
  fit:
    - {id: size, field: fields.company_size, range: {min: 500, max: 50}, points: 10}
    - id: title
      field: job_title
      regex: '(director'
      points: 15
  engagement:
    - {id: clicks, event: click, points: 5, max_points: -25}
""",
    )
    assert found == {
        (3, "scoring.sales_ready.0"): (
            "give at least one of min_score, min_fit, min_engagement, grade, form_type"
        ),
        (5, "scoring.fit.0.range"): "min (500) is above max (50)",
        (8, "scoring.fit.1.regex"): (
            "bad regular expression: missing ), unterminated subpattern at position 0"
        ),
        (11, "scoring.engagement.0.max_points"): "Input should be greater than 0",
    }


def test_impossible_thresholds_and_caps_are_refused(tmp_path):
    found = problems(
        tmp_path,
        """  grades:
    hot: 30
    warm: 35
  sales_ready:
    - {min_fit: 500}
    - {min_score: 60, min_engagement: 90}
  fit:
    - {id: size, field: fields.company_size, range: {min: 50}, points: 10}
  engagement:
    - {id: opens, event: open, points: 5, max_points: 2}
    - {id: clicks, event: click, points: 5, max_points: 25}
""",
    )
    assert found == {
        (3, "scoring.grades.hot"): "hot (30) must be above warm (35)",
        (6, "scoring.sales_ready.0.min_fit"): "min_fit (500) is out of reach: the most is 10",
        (7, "scoring.sales_ready.1.min_score"): "min_score (60) is out of reach: the most is 37",
        (7, "scoring.sales_ready.1.min_engagement"): (
            "min_engagement (90) is out of reach: the most is 27"
        ),
        (11, "scoring.engagement.0.max_points"): "max_points (2) is below one event's 5 points",
    }


def test_rule_mistakes_found_after_parsing_name_their_line(tmp_path):
    found = problems(
        tmp_path,
        """  grades: {hot: 70, warm: 35}
  fit:
    - id: title
      field: job_titel
      contains: director
      points: 15
    - id: two
      field: country
      equals: GB
      in: [GB]
      points: 5
    - id: norway
      field: country
      in: [SE, NO]
      points: 5
    - id: zero
      field: company
      exists: true
  engagement:
    - id: demo
      event: submission
      field: link_id
      equals: x
      points: 30
    - {id: demo2, event: submission, field: form_type, equals: demo_requst, points: 30}
""",
        forms="forms:\n  demo-request: {type: demo_request}\n",
    )
    assert found == {
        (7, "scoring.fit.0.field"): (
            "unknown field 'job_titel' (one of email, email_domain, phone, first_name, "
            "last_name, company, job_title, country, channel, source, utm_source, utm_medium, "
            "utm_campaign, promo_code, or fields.<name> for a form field)"
        ),
        (11, "scoring.fit.1.field"): (
            "give exactly one operator of equals, in, contains, regex, range, exists "
            "(got equals, in)"
        ),
        (17, "scoring.fit.2.in.1"): "YAML read this value as true/false: put it in quotes ('NO')",
        (19, "scoring.fit.3.id"): "give points (not 0) or disqualify: true",
        (25, "scoring.engagement.0.field"): (
            "unknown field 'link_id' (one of form_id, form_type, channel, source, utm_source, "
            "utm_medium, utm_campaign, promo_code)"
        ),
        (28, "scoring.engagement.1.equals"): (
            "no form has form_type 'demo_requst' (known: demo_request)"
        ),
    }


def test_duplicate_rule_ids_are_refused(tmp_path):
    found = problems(
        tmp_path,
        """  fit:
    - {id: a, field: company, exists: true, points: 5}
  engagement:
    - {id: a, event: click, points: 5, max_points: 5}
""",
    )
    assert found[(5, "scoring.engagement.0.id")] == "duplicate rule id 'a'"


def test_an_empty_section_is_a_model_that_grades_everyone_cold():
    config = ScoringConfig.model_validate({})
    assert config.fit == [] and config.sales_ready == []


def test_config_check_names_the_scoring_line(tmp_path):
    from leadflow.cli import app

    path = tmp_path / "bad.yaml"
    path.write_text("scoring:\n  grades:\n    hot: 10\n    warm: 20\n")
    result = CliRunner().invoke(app, ["config", "check", str(path)], env={"COLUMNS": "200"})
    assert result.exit_code == 1
    assert f"{path}:3: scoring.grades.hot: hot (10) must be above warm (20)" in result.output
