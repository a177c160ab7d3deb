"""The config loader: ${ENV} interpolation and problems that name file and line."""

from __future__ import annotations

from pathlib import Path

import pytest

from shared.config import ChannelsConfig, ConfigError, load_config

EXAMPLE = Path(__file__).resolve().parents[2] / "leadflow.example.yaml"


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "leadflow.yaml"
    path.write_text(text)
    return path


def test_env_interpolation_with_defaults(tmp_path):
    path = write(tmp_path, "channels:\n  default: ${CHANNEL:-direct}\n  currency: ${CUR}\n")
    raw = load_config(path, environ={"CUR": "EUR"})
    assert raw.section("channels") == {"default": "direct", "currency": "EUR"}


def test_missing_env_var_names_its_line(tmp_path):
    path = write(tmp_path, "channels:\n  default: direct\n  currency: ${NOT_SET}\n")
    with pytest.raises(ConfigError) as info:
        load_config(path, environ={})
    assert f"{path}:3: channels.currency: environment variable NOT_SET is not set" in str(
        info.value
    )


def test_unknown_field_and_bad_value_name_their_lines(tmp_path):
    path = write(
        tmp_path,
        """channels:
  rules:
    - channel: facebook_ads
      utm_sauce: facebook
  channels:
    radio:
      spend:
        - {date: 2026-11-01, amount: lots}
""",
    )
    raw = load_config(path, environ={})
    with pytest.raises(ConfigError) as info:
        raw.validate("channels", ChannelsConfig)
    lines = {(p.line, p.path) for p in info.value.problems}
    assert (4, "channels.rules.0.utm_sauce") in lines
    assert (8, "channels.channels.radio.spend.0.amount") in lines


def test_unknown_section_duplicate_key_and_bad_yaml(tmp_path):
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, "forms: {}\nrouting: {}\nforms: {}\nsorting: {}\n"), environ={})
    messages = [str(p) for p in info.value.problems]
    assert any(":3: forms: duplicate key" in m for m in messages)
    assert any(":4: sorting: unknown section" in m for m in messages)
    with pytest.raises(ConfigError) as bad:
        load_config(write(tmp_path, "forms:\n  a: [1, 2\n"), environ={})
    assert "invalid YAML" in str(bad.value)


def test_the_shipped_example_is_valid():
    from leadflow import registry
    from shared.settings import SERVICES

    raw = load_config(EXAMPLE, environ={})
    for service in SERVICES:
        registry.config_loader(service)(raw)
