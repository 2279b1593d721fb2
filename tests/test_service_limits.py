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
    monkeypatch.setenv("EAGLE_API_KEY", "k3y-of-16-chars!")
    assert ServiceSettings.api_key_from_env() == "k3y-of-16-chars!"
    args = vars(build_parser().parse_args(["serve", "--models", str(tmp_path)]))
    assert from_flags(args)["api_key"] == "k3y-of-16-chars!"
    monkeypatch.delenv("EAGLE_API_KEY")
    assert ServiceSettings.api_key_from_env() is None and from_flags(args)["api_key"] is None


#: A key refused at start, and the one line saying why.
BAD_KEYS = {
    "": "EAGLE_API_KEY is set but empty: unset it for an open service, or set a key of at least 16 characters",
    "k3y-of-16-chars! \n": "EAGLE_API_KEY ends with whitespace (a blank or a newline, as an env file can leave): no "
    "request can send it, so every call would be refused; remove it",
    " k3y-of-16-chars!": "EAGLE_API_KEY begins with whitespace (a blank or a newline, as an env file can leave): no "
    "request can send it, so every call would be refused; remove it",
    "x": "EAGLE_API_KEY is 1 character long; a key needs at least 16: it is an admin's, and a short one can be "
    "guessed (make one with: python3 -c 'import secrets; print(secrets.token_urlsafe(32))')",
    "s3cret-key-15ch": "EAGLE_API_KEY is 15 characters long; a key needs at least 16: it is an admin's, and a short "
    "one can be guessed (make one with: python3 -c 'import secrets; print(secrets.token_urlsafe(32))')",
}


@pytest.mark.parametrize("value", list(BAD_KEYS))
def test_a_badly_set_api_key_is_refused_at_start(
    value: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """An empty ``EAGLE_API_KEY`` opened the service to everyone, one with a blank or newline at an end let no
    call in (401 for every key sent), and a one-character key was taken: each is one line, exit 2, before the
    address is bound or the history opened."""
    from eagle_iad.cli import main

    models = tmp_path / "models"
    models.mkdir()
    monkeypatch.setenv("EAGLE_API_KEY", value)
    with pytest.raises(ConfigError) as refused:
        ServiceSettings.api_key_from_env()
    assert str(refused.value) == BAD_KEYS[value]
    assert main(["serve", "--models", str(models), "--state-dir", str(tmp_path / "state"), "--port", "0"]) == 2
    assert capsys.readouterr() == ("", f"eagle: error: {BAD_KEYS[value]}\n")
    assert not (tmp_path / "state").exists()  # nothing started


@pytest.mark.parametrize("value", list(BAD_KEYS))
def test_a_badly_set_serve_mllm_key_is_refused_at_start(
    value: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``eagle serve-mllm`` takes ``EAGLE_SERVE_API_KEY`` as ``eagle serve`` takes ``EAGLE_API_KEY``: an empty one
    served the model open to everyone (it read as unset), one with a blank or newline at an end let no call in.
    Each is one line naming that variable, exit 2, before the port is bound or the model loaded (here a folder
    that does not exist: loading it would be another error)."""
    from eagle_iad.cli import main

    monkeypatch.setenv("EAGLE_SERVE_API_KEY", value)
    said = (
        BAD_KEYS[value].replace("EAGLE_API_KEY", "EAGLE_SERVE_API_KEY").replace("an admin's", "the model's only lock")
    )
    assert main(["serve-mllm", "--mllm", f"hf:{tmp_path / 'no-model'}", "--port", "0"]) == 2
    assert capsys.readouterr() == ("", f"eagle: error: {said}\n")
