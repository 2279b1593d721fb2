"""One pattern for every interchangeable part: a named table that a decorator fills.

Threshold rules, samplers, searches, executors, backbones, layouts and MLLM backends are each a
:class:`Registry`, so adding one is the same act everywhere: write the part, register it under a
name. A plugin module named in ``EAGLE_PLUGINS`` (see :func:`load_plugins`) registers its parts
when the CLI or the service starts, so a part added outside this package works in every process.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Generic, TypeVar

from eagle_iad.errors import ConfigError, EagleError, one_of

T = TypeVar("T")

#: Comma-separated module paths imported at start-up (CLI, service, fit workers, Ray actors) to register parts.
PLUGINS_ENV = "EAGLE_PLUGINS"


def plugin_hint(kind: str) -> str:
    """What to add to "unknown <kind>" when a stored name may be a plugin's: the usual cause is a plugin
    that was loaded when the model was made and is not loaded now, and the fix is the variable."""
    return f"(a plugin's {kind}? load it with {PLUGINS_ENV}=module)"


class Registry(Generic[T]):
    """Parts of one kind by name, in registration order.

    ``kind`` names the part in errors ("unknown sampler 'x'; choose one of ..."); ``error`` is the
    :class:`EagleError` subclass a bad name raises, so each caller keeps its exit code and HTTP status.
    """

    def __init__(self, kind: str, error: type[EagleError] = ConfigError) -> None:
        self.kind = kind
        self.error = error
        self._parts: dict[str, T] = {}

    def add(self, name: str, part: T) -> T:
        """Register ``part`` as ``name`` (a later registration of the same name replaces it)."""
        self._parts[name] = part
        return part

    def register(self, name: str) -> Callable[[T], T]:
        """Decorator form of :meth:`add`."""

        def decorate(part: T) -> T:
            return self.add(name, part)

        return decorate

    def get(self, name: str) -> T:
        """The part called ``name``; an unknown name raises ``error`` listing the known ones."""
        try:
            return self._parts[name]
        except KeyError:
            raise self.error(f"unknown {self.kind} {name!r}; choose one of {one_of(self._parts)}") from None

    def remove(self, name: str) -> None:
        """Forget ``name`` if registered (a test's temporary part, a plugin being unloaded)."""
        self._parts.pop(name, None)

    def names(self) -> tuple[str, ...]:
        return tuple(self._parts)

    def __contains__(self, name: object) -> bool:
        return name in self._parts

    def __iter__(self) -> Iterator[str]:
        return iter(self._parts)

    def __len__(self) -> int:
        return len(self._parts)

    def mapping(self) -> Mapping[str, T]:
        """A read-only live view of the parts by name."""
        return MappingProxyType(self._parts)


#: The plugin modules loaded so far, in load order (a later registration of a name replaces an earlier one).
_loaded: dict[str, None] = {}


def _import_advice(module: str, exc: ImportError) -> str:
    """The import error, and where to look: a module not found at all is almost always a folder missing from
    Python's module search path (``PYTHONPATH``); one found that fails inside is the plugin's own problem."""
    missing = exc.name if isinstance(exc, ModuleNotFoundError) else None
    if missing is not None and (module == missing or module.startswith(missing + ".")):
        return (
            f"{exc}; put the folder that holds it on PYTHONPATH (Python's module search path), "
            "in every process that runs eagle (a Ray worker's too)"
        )
    return f"{exc} (raised while importing the plugin itself)"


def load_plugins(spec: str | None = None) -> list[str]:
    """Import the modules named in ``spec`` (default: ``$EAGLE_PLUGINS``) once each; they register parts.

    Returns the modules imported by this call. A module that cannot be imported is a
    :class:`ConfigError` naming it, not a traceback.
    """
    value = os.environ.get(PLUGINS_ENV, "") if spec is None else spec
    imported: list[str] = []
    for module in (part.strip() for part in value.split(",")):
        if not module or module in _loaded:
            continue
        try:
            importlib.import_module(module)
        except ImportError as exc:
            advice = _import_advice(module, exc)
            raise ConfigError(f"{PLUGINS_ENV}: cannot import plugin module {module!r}: {advice}") from exc
        _loaded[module] = None
        imported.append(module)
    return imported


def plugin_spec() -> str:
    """The plugin modules this process loaded, as an ``EAGLE_PLUGINS`` value: what a worker process must load."""
    return ",".join(_loaded)


def plugin_search_paths(spec: str) -> list[str]:
    """The module-search-path folders that hold the plugin modules of ``spec`` in this process.

    A Ray worker is another process, perhaps started with another working directory or ``PYTHONPATH``: it
    puts these on its own ``sys.path`` before loading the plugins, so a plugin found here is found there (on
    one machine, or where the folder is shared). A module not found here is left to the worker's own path.
    """
    paths: list[str] = []
    for module in (part.strip() for part in spec.split(",")):
        top = module.split(".")[0]
        if not top:
            continue
        try:
            found = importlib.util.find_spec(top)
        except (ImportError, ValueError):
            continue
        if found is None or found.origin in (None, "built-in", "frozen"):
            continue
        origin = Path(os.path.abspath(found.origin))  # a relative PYTHONPATH entry means this process's cwd
        folder = origin.parent.parent if found.submodule_search_locations else origin.parent
        if str(folder) not in paths:
            paths.append(str(folder))
    return paths
