"""`leadflow nurture preview` renders a step for a sample lead into an .eml file."""

from __future__ import annotations

from email import message_from_bytes, policy
from pathlib import Path

from typer.testing import CliRunner

from services.nurture.cli import app

EXAMPLE = Path(__file__).resolve().parents[3] / "leadflow.example.yaml"


def test_preview_writes_a_complete_message(tmp_path):
    out = tmp_path / "step.eml"
    result = CliRunner().invoke(
        app,
        ["preview", "cold-welcome", "--step", "2", "--out", str(out)],
        env={"LEADFLOW_CONFIG": str(EXAMPLE), "LEADFLOW_PUBLIC_URL": "https://go.example.com"},
    )
    assert result.exit_code == 0, result.output
    assert "Subject: 8 minutes on scoring leads by fit and behaviour" in result.output
    message = message_from_bytes(out.read_bytes(), policy=policy.default)
    assert str(message["List-Unsubscribe"]).startswith("<https://go.example.com/v1/unsubscribe/")
    assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert "https://go.example.com/v1/track/click/" in result.output


def test_preview_names_what_is_wrong():
    env = {"LEADFLOW_CONFIG": str(EXAMPLE)}
    unknown = CliRunner().invoke(app, ["preview", "no-such"], env=env)
    assert unknown.exit_code == 2 and "cold-welcome" in unknown.output
    too_far = CliRunner().invoke(app, ["preview", "cold-welcome", "--step", "9"], env=env)
    assert too_far.exit_code == 2 and "steps 1 to 3" in too_far.output
