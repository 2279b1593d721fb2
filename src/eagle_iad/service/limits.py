"""The settings of ``eagle serve`` a user can change, declared once: name, type, default, flag,
environment variable, unit, allowed range and help text.

Why a table: each limit used to be written four times (the :class:`ServiceSettings` default, the
flag's default and help in the CLI, a hand mapping MiB → bytes with its range check in the serve
command, a row of docs/SERVICE.md) and nothing kept them equal. Now
:class:`~eagle_iad.service.settings.ServiceSettings`' defaults, the ``eagle serve`` flags and their
checks, and the Limits table of docs/SERVICE.md (:mod:`eagle_iad.service.limits_doc`) all derive
from :data:`SETTINGS`. Torch-free and FastAPI-free: ``eagle serve --help`` reads it.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from eagle_iad.choices import DEFAULT_MAX_PIXELS
from eagle_iad.errors import ConfigError
from eagle_iad.ranges import Range

MIB = 1024 * 1024
#: Environment variable holding the key every ``/v1`` route requires when set. An environment
#: variable, not a flag, so the key does not show up in ``ps`` output or shell history.
API_KEY_ENV = "EAGLE_API_KEY"
#: The shortest ``EAGLE_API_KEY`` taken. Why a minimum: the key is an admin's, and reachable by anyone who can
#: reach the port; what a person types as a key ("test", "s3cret") is guessed by trying, while 16 random
#: characters (96 bits, URL-safe) are not. Named keys (``eagle keys add``) are 49 characters.
MIN_API_KEY_CHARS = 16


def check_api_key(raw: str, env: str = API_KEY_ENV, whose: str = "an admin's") -> str:
    """``EAGLE_API_KEY``'s value (or that of ``env``, the variable it was read from: ``eagle serve-mllm``'s
    ``EAGLE_SERVE_API_KEY``, ``whose`` key it is saying what it opens) if it can be a key, else
    :class:`ConfigError` with one line saying why.

    Each refusal is a value that used to start a service other than the one meant: an empty value (an env file's
    ``EAGLE_API_KEY=``) served the API open to everyone; a blank or newline at an end (an env file's trailing
    space) is refused rather than stripped, since no request can send it (a header's value loses it), so every
    call was answered 401, and a key silently changed from the one written down is one the admin's clients
    may not hold; a short key is guessed (:data:`MIN_API_KEY_CHARS`).
    """
    if raw == "":
        raise ConfigError(f"{env} is set but empty: unset it for an open service, or set a key of at least "
                          f"{MIN_API_KEY_CHARS} characters")  # fmt: skip
    if raw != raw.strip():
        where = "begins" if raw[0].isspace() else "ends"
        raise ConfigError(f"{env} {where} with whitespace (a blank or a newline, as an env file can leave): "
                          "no request can send it, so every call would be refused; remove it")  # fmt: skip
    if len(raw) < MIN_API_KEY_CHARS:
        raise ConfigError(f"{env} is {len(raw)} character{'s' * (len(raw) != 1)} long; a key needs at least "
                          f"{MIN_API_KEY_CHARS}: it is {whose}, and a short one can be guessed (make one with: "
                          "python3 -c 'import secrets; print(secrets.token_urlsafe(32))')")  # fmt: skip
    return raw


def _megapixels(value: int) -> str:
    return f"{value / 1_000_000:g} megapixels"


@dataclass(frozen=True)
class Setting:
    """One setting: the :class:`ServiceSettings` field ``name``, set by ``flag`` or ``env`` (or neither)."""

    name: str
    #: In the flag's unit (MiB for a ``-mb`` flag); the field holds ``default * scale``.
    default: Any
    #: The flag's help (``%(default)s`` is argparse's: the default is written here once).
    help: str
    kind: type = int
    flag: str | None = None
    env: str | None = None
    #: Flag unit → field unit (:data:`MIB` for MiB → bytes).
    scale: int = 1
    #: The values the flag accepts (checked by :meth:`check`, exit 2 with one line).
    range: Range | None = None
    #: The default as docs/SERVICE.md writes it.
    show: Callable[[Any], str] = str
    #: Reads :attr:`env`'s value, set (empty included), checking it; ``None``: :attr:`kind`, and empty is unset.
    parse: Callable[[str], Any] | None = None

    @property
    def dest(self) -> str:
        """The argparse destination of :attr:`flag`."""
        assert self.flag is not None, f"{self.name} has no flag"
        return self.flag.removeprefix("--").replace("-", "_")

    @property
    def value(self) -> Any:
        """The field's default, in the field's unit."""
        return None if self.default is None else self.default * self.scale

    @property
    def shown_default(self) -> str:
        return self.show(self.default)

    def check(self, given: Any) -> None:
        """:class:`ConfigError` (``--flag must be at least N, got V``) when ``given`` is outside :attr:`range`."""
        if self.range is None or self.range.contains(given):
            return
        if self.range.low is not None and self.range.high is None and not self.range.low_open:
            raise ConfigError(f"{self.flag} must be at least {self.range.low:g}, got {given}")
        self.range.check(str(self.flag), given)


#: Every setting of the table, in the order ``eagle serve --help`` lists the flags.
SETTINGS: tuple[Setting, ...] = (
    Setting("api_key", None, f"the key every /v1 route and /metrics require (unset: none; at least "
            f"{MIN_API_KEY_CHARS} characters)", kind=str, env=API_KEY_ENV, parse=check_api_key),
    Setting("max_upload_bytes", 32, "largest request body in MiB (default %(default)s)", flag="--max-upload-mb",
            scale=MIB, range=Range(1), show="{} MiB".format),
    Setting("max_pixels", DEFAULT_MAX_PIXELS, "largest uploaded image in pixels", flag="--max-pixels",
            range=Range(1), show=_megapixels),
    Setting("mllm_queue", 4, "MLLM requests that may wait (default %(default)s)", flag="--mllm-queue",
            range=Range(1)),
    Setting("max_inspections", 16, "inspections in progress at once; more get 429 + Retry-After (default "
            "%(default)s)", flag="--max-inspections", range=Range(1)),
    Setting("max_fit_jobs", 8, "fit jobs queued or running at once; more get 429 + Retry-After (default "
            "%(default)s)", flag="--max-fit-jobs", range=Range(1)),
    Setting("max_zip_files", 2000, "most files in a fit zip (default %(default)s)", flag="--max-zip-files",
            range=Range(1)),
    Setting("max_zip_bytes", 256, "most uncompressed MiB in a fit zip (default %(default)s)", flag="--max-zip-mb",
            scale=MIB, range=Range(1), show="{} MiB".format),
    Setting("max_zip_ratio", 100, "largest inflation ratio of a zip member over 1 MiB (default %(default)s)",
            flag="--max-zip-ratio", range=Range(1), show="{}:1".format),
    Setting("min_free_bytes", 64, "free MiB kept on the state folder's disk; requests crossing it get 507 "
            "(default %(default)s)", flag="--min-free-mb", scale=MIB, range=Range(0), show="{} MiB".format),
)  # fmt: skip
SETTINGS_BY_NAME: dict[str, Setting] = {setting.name: setting for setting in SETTINGS}


def default(name: str) -> Any:
    """The default of field ``name`` (for :class:`ServiceSettings`' declaration)."""
    return SETTINGS_BY_NAME[name].value


def flagged() -> list[tuple[str, Setting]]:
    """The settings ``eagle serve`` has a flag for, with their flag, in help order."""
    return [(setting.flag, setting) for setting in SETTINGS if setting.flag is not None]


def from_flags(values: Mapping[str, Any]) -> dict[str, Any]:
    """:class:`ServiceSettings` keyword arguments from the parsed flags (by :attr:`Setting.dest`), each
    checked against its range (the first one outside it raises) and converted to the field's unit;
    the settings read from the environment are included."""
    kwargs: dict[str, Any] = {}
    for setting in SETTINGS:
        if setting.flag is not None:
            given = values[setting.dest]
            setting.check(given)
            kwargs[setting.name] = given * setting.scale
        elif setting.env is not None:
            kwargs[setting.name] = from_env(setting.name)
    return kwargs


def from_env(name: str) -> Any:
    """Setting ``name`` from its environment variable (unset: its default; empty: its default too, unless the
    setting's :attr:`~Setting.parse` says otherwise), checked by its :attr:`~Setting.parse`."""
    setting = SETTINGS_BY_NAME[name]
    assert setting.env is not None, f"{name} is read from no environment variable"
    raw = os.environ.get(setting.env)
    if raw is not None and setting.parse is not None:
        return setting.parse(raw)
    return setting.kind(raw) if raw else setting.value
