"""eagle serve's settings are declared once (eagle_iad/service/limits.py) and everything else derives.

ServiceSettings' defaults, the ``eagle serve`` flags (defaults, help) and their checks must say what
the table says; docs/SERVICE.md's rows are checked in tests/test_docs.py.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from eagle_iad.cli import build_parser
from eagle_iad.errors import ConfigError
from eagle_iad.service.limits import MIB, SETTINGS, flagged, from_flags
from eagle_iad.service.settings import ServiceSettings


def test_service_settings_defaults_are_the_tables() -> None:
    fields = {field.name: field.default for field in dataclasses.fields(ServiceSettings)}
    assert {setting.name: setting.value for setting in SETTINGS} == {s.name: fields[s.name] for s in SETTINGS}
    assert ServiceSettings(models_dir=Path("m"), state_dir=Path("s")).max_upload_bytes == 32 * MIB


def test_serve_flags_and_checks_come_from_the_table(tmp_path: Path) -> None:
    args = vars(build_parser().parse_args(["serve", "--models", str(tmp_path)]))
    assert {flag: args[setting.dest] for flag, setting in flagged()} == {f: s.default for f, s in flagged()}
    kwargs = from_flags({**args, "max_zip_mb": 3})
    assert kwargs["max_zip_bytes"] == 3 * MIB and kwargs["api_key"] is None
    with pytest.raises(ConfigError, match=r"^--min-free-mb must be at least 0, got -1$"):
        from_flags({**args, "min_free_mb": -1})
    with pytest.raises(ConfigError, match=r"^--max-pixels must be at least 1, got 0$"):
        from_flags({**args, "max_pixels": 0})


def test_api_key_comes_from_the_environment_only(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("EAGLE_API_KEY", "k3y")
    assert ServiceSettings.api_key_from_env() == "k3y"
    assert from_flags(vars(build_parser().parse_args(["serve", "--models", str(tmp_path)])))["api_key"] == "k3y"
    monkeypatch.setenv("EAGLE_API_KEY", "")
    assert ServiceSettings.api_key_from_env() is None
