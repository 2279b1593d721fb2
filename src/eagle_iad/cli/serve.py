"""``eagle serve-mllm``, ``eagle serve`` and ``eagle openapi``: the two HTTP services and the API's document.

Both services start the same way (:func:`_run`): a warning when an address other than this machine's
is served without a key, one line saying where, then uvicorn until a signal.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import sys
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from types import FrameType
from typing import Any

from eagle_iad.atomic import atomic_write_text
from eagle_iad.cli.flags import (
    Subcommands,
    add_caas_mllm,
    add_log_level,
    add_log_timestamps,
    add_mllm,
    add_runtime,
    add_scratch,
    mllm_spec,
)
from eagle_iad.cli.logs import UVICORN_LOGGERS, Timestamped, stamp, stamp_handlers
from eagle_iad.cli.printing import print_warnings
from eagle_iad.errors import ConfigError, OutputError
from eagle_iad.history.backend import redact
from eagle_iad.outputs import write_errors
from eagle_iad.service.limits import API_KEY_ENV, check_api_key, flagged, from_flags
from eagle_iad.stops import Stopped

#: Environment variable holding the bearer key ``eagle serve-mllm`` requires (unset: no key). An
#: environment variable, not a flag, so the key does not show up in ``ps`` output or shell history.
SERVE_API_KEY_ENV = "EAGLE_SERVE_API_KEY"
#: uvicorn's exit status for a server that could not start (``uvicorn.run`` exits with it too).
_STARTUP_FAILURE = 3


def _add_address(parser: argparse.ArgumentParser, port: int) -> None:
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    parser.add_argument("--port", type=int, default=port, help=f"port (default {port})")


def _check_port(port: int) -> None:
    if not 0 <= port <= 65535:
        raise ConfigError(f"--port must be 0..65535, got {port}")


def bind_address(host: str, port: int) -> socket.socket:
    """A socket bound to ``host``:``port`` (not yet listening), or :class:`ConfigError` saying why it cannot be.

    Why here, before anything starts: uvicorn binds only after the app's start-up has run, so a port in use was
    found after the banner was printed and the stations had started (taking their hot folders' locks), and
    ended as uvicorn's raw ``[Errno 98]`` with exit 3. Bound first, it is one ``eagle: error:`` line, exit 2,
    and nothing else has started; uvicorn then serves on this socket. ``SO_REUSEADDR`` as uvicorn sets it: a
    port left in TIME_WAIT by the previous run is free, one another program listens on is not.
    """
    import errno

    # as uvicorn binds --host itself: IPv6 for an address with a colon, else IPv4 (a name such as localhost resolved
    # by the bind, to its IPv4 address)
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
    except (socket.gaierror, UnicodeError) as exc:
        sock.close()
        raise ConfigError(f"--host {host}: not an address of this machine ({exc})") from None
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise ConfigError(
                f"port {port} on {host} is in use (another eagle serve, or another program: "
                f"ss -ltnp 'sport = :{port}' shows which); stop it, or give another --port"
            ) from None
        if exc.errno == errno.EACCES:
            raise ConfigError(f"port {port} on {host}: permission denied (ports below 1024 need privileges); "
                              "give another --port") from None  # fmt: skip
        raise ConfigError(f"cannot listen on {host} port {port}: {exc.strerror or exc}") from None
    return sock


#: The engine's loggers (stations, the audit journal, fits, the history): what ``--log-level`` shows of them.
APP_LOGGER = "eagle_iad"


def log_app_to_stderr(level: str, timestamps: bool = False) -> None:
    """Print the engine's own log lines on stderr at ``level``, in uvicorn's format (``timestamps``: each led by
    its time, :mod:`eagle_iad.cli.logs`).

    Why: uvicorn's ``log_level`` configures uvicorn's loggers only. The engine logs through
    ``logging.getLogger("eagle_iad...")``, which reached Python's last-resort handler, warnings and up, so a
    served station's lines (a sink failing, a verdict kept as a dead letter, an image not inspected, the
    intake paused) were never printed, at any ``--log-level``. Calling it again replaces its handler.
    """
    import logging

    logger = logging.getLogger(APP_LOGGER)
    for handler in list(logger.handlers):
        if getattr(handler, "eagle_serve", False):
            logger.removeHandler(handler)
    handler = logging.StreamHandler(sys.stderr)
    plain = logging.Formatter("%(levelname)s:     %(message)s")
    handler.setFormatter(Timestamped(plain) if timestamps else plain)
    handler.eagle_serve = True  # type: ignore[attr-defined]
    logger.addHandler(handler)
    logger.setLevel(level.upper())
    logger.propagate = False  # printed once, here, not again by a root handler someone else set up


def _is_loopback(host: str) -> bool:
    import ipaddress

    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def _run(
    app: Any,
    args: argparse.Namespace,
    *,
    open_warning: str | None,
    banner: str,
    grace_s: int | None = None,
    on_signal: Callable[[], None] | None = None,
    sock: socket.socket | None = None,
    warnings: Sequence[str] = (),
) -> None:
    """Serve ``app`` on ``--host``/``--port`` until a signal, as ``uvicorn.run`` would.

    ``open_warning`` (None: a key is set) is printed when the address is reachable from other machines;
    ``warnings`` (its MLLM's load warnings) before the banner, each as ``eagle inspect`` prints them.
    ``on_signal`` runs in a thread at the signal itself, before uvicorn waits for the open requests.
    uvicorn catches SIGINT/SIGTERM itself and raises the signal again once it has stopped, which
    ``main``'s handler turns into :class:`~eagle_iad.stops.Stopped`. ``sock``: the address already bound
    (:func:`bind_address`; bound here when not given), so that a port in use is refused before the banner.
    """
    import uvicorn

    if sock is None:
        sock = bind_address(args.host, args.port)
    timestamps = bool(getattr(args, "log_timestamps", False))
    lead = f"{stamp()} " if timestamps else ""
    if open_warning is not None and not _is_loopback(args.host):
        print(f"{lead}eagle: warning: serving on {args.host} without authentication{open_warning}", file=sys.stderr)
    print_warnings(warnings, lead)
    print(lead + banner, file=sys.stderr)
    log_app_to_stderr(args.log_level, timestamps)

    class Server(uvicorn.Server):
        def handle_exit(self, sig: int, frame: FrameType | None) -> None:
            if on_signal is not None:
                threading.Thread(target=on_signal, name="eagle-stop", daemon=True).start()
            super().handle_exit(sig, frame)

    config = uvicorn.Config(app, host=args.host, port=args.port, log_level=args.log_level,
                            timeout_graceful_shutdown=grace_s)  # fmt: skip
    if timestamps:  # uvicorn's handlers exist once its config has set up logging
        stamp_handlers(UVICORN_LOGGERS)
    server = Server(config)
    server.run(sockets=[sock])
    if not server.started:  # as uvicorn.run: a start-up that failed without raising is still a failure
        sys.exit(_STARTUP_FAILURE)


def add_serve_mllm(sub: Subcommands) -> None:
    serve = sub.add_parser(
        "serve-mllm",
        help="serve an MLLM over an OpenAI-compatible /v1/chat/completions (with an 'eagle' extension for CAAS)",
        description="Serve an MLLM backend to OpenAI clients: POST /v1/chat/completions (images as data URLs; "
        "greedy decoding only; optional request object eagle={caas: {alpha, layers, image_index, enabled}, "
        "capture_attention}), GET /v1/models, GET /healthz. One generation runs at a time; up to --queue "
        "requests wait, further ones get 429 with Retry-After. Set EAGLE_SERVE_API_KEY to require "
        "'Authorization: Bearer <key>' on /v1 (clients using the openai: backend set EAGLE_OPENAI_API_KEY).",
    )
    add_mllm(
        serve,
        "backend spec, e.g. hf:Qwen/Qwen2.5-VL-7B-Instruct (an openai: spec is proxied, without CAAS or "
        "attention capture: replies then report caas_applied false)",
        required=True,
    )
    _add_address(serve, 8001)
    serve.add_argument("--queue", type=int, default=8, help="requests that may wait for the model (default 8)")
    serve.add_argument("--served-model-name", help="model name clients send (default: hub id or folder name)")
    serve.add_argument("--device", help="device for an hf backend (default: cuda if available, else cpu)")
    serve.add_argument("--max-tokens-limit", type=int, default=4096, help="largest max_tokens accepted")
    add_log_level(serve)
    add_log_timestamps(serve)
    serve.set_defaults(func=_cmd_serve_mllm)


def _cmd_serve_mllm(args: argparse.Namespace) -> int:
    from eagle_iad.mllm import load_backend, parse_spec, served_model_name
    from eagle_iad.mllm.base import backend_warnings
    from eagle_iad.mllm.server import create_mllm_app

    if args.queue < 1:
        raise ConfigError(f"--queue must be at least 1, got {args.queue}")
    _check_port(args.port)
    # checked as eagle serve checks EAGLE_API_KEY, before the port or the model (minutes): an env file's
    # EAGLE_SERVE_API_KEY= served the model open to everyone, a trailing newline answered every call 401
    raw_key = os.environ.get(SERVE_API_KEY_ENV)
    api_key = None if raw_key is None else check_api_key(raw_key, SERVE_API_KEY_ENV, "the model's only lock")
    options: dict[str, Any] = {}
    if args.device:
        if parse_spec(args.mllm).scheme != "hf":
            raise ConfigError("--device applies to hf: backends only")
        options["device"] = args.device
    sock = bind_address(args.host, args.port)  # before the model loads (minutes): a port in use is said at once
    try:
        backend = load_backend(args.mllm, **options)
    except BaseException:
        sock.close()
        raise
    print_warnings(backend_warnings(backend))  # a tiny random test model: clients are told too (/v1/models)
    name = args.served_model_name or served_model_name(args.mllm)
    app = create_mllm_app(
        backend, model_name=name, queue_size=args.queue, max_tokens_limit=args.max_tokens_limit, api_key=api_key
    )
    warning = (f"; anyone who can reach this address can use the model "
               f"(set {SERVE_API_KEY_ENV} to require a bearer key)")  # fmt: skip
    _run(app, args, open_warning=None if api_key else warning, sock=sock,
         banner=f"serving {backend.name} as model {name!r} on http://{args.host}:{args.port}/v1")  # fmt: skip
    return 0


def add_serve(sub: Subcommands) -> None:
    srv = sub.add_parser(
        "serve",
        help="the inspection service: categories, fit jobs, inspect, history, metrics (OpenAPI at /openapi.json)",
        description="Serve the EAGLE-IAD HTTP API. Add named keys with roles ('eagle keys add NAME --role R') "
        "or set EAGLE_API_KEY (one admin key) to require 'Authorization: Bearer <key>' on every /v1 route and "
        "/metrics; without either, the service is open to one local user.",
    )
    srv.add_argument("--models", required=True, help="directory of fitted categories (<models>/<category>)")
    add_mllm(srv, "MLLM backend spec: full EAGLE verdicts and /v1/chat/completions")
    add_runtime(srv, "torch (fitted models, default) or onnx/openvino (each <models>/<category> an export folder)")
    add_caas_mllm(srv)
    _add_address(srv, 8000)
    srv.add_argument("--data-root", help="server folders a fit may read must be inside this directory")
    srv.add_argument("--runs", help="directory of evaluation runs listed at /v1/evaluations")
    srv.add_argument("--state-dir", help="history, pictures and uploads (default: <models>/../eagle-service)")
    srv.add_argument("--history", help="the history: an SQLite file (default: <state-dir>/eagle.sqlite3) or a "
                     "database URL, postgresql://user@host/db, shared by replicas (docs/PLANT.md)")  # fmt: skip
    srv.add_argument("--db", help=argparse.SUPPRESS)  # the earlier name of --history for an SQLite file
    srv.add_argument("--files", help="pictures of the inspections (default: <state-dir>/files); replicas sharing "
                     "a history share this folder too")  # fmt: skip
    srv.add_argument("--web", help="a built web console to serve at / (default: the packaged one, built by make web)")
    for flag, setting in flagged():  # the limits: one table declares their defaults, units and ranges
        srv.add_argument(flag, type=setting.kind, default=setting.default, help=setting.help)
    add_log_level(srv)
    add_log_timestamps(srv)
    add_scratch(srv)
    srv.set_defaults(func=_cmd_serve)


def _history(args: argparse.Namespace) -> str | None:
    """``--history`` (or its older name ``--db``), as a URL; None: the default file in the state folder."""
    from eagle_iad.history import history_url

    if args.history and args.db:
        raise ConfigError("give the history once: --history (or its older name --db), not both")
    given = args.history or args.db
    return None if not given else history_url(given)


def check_models_folder(models: Path) -> None:
    """Refuse a ``--models`` that is not a folder of fitted categories: a missing one (a typo would start an
    empty service, creating the folder) and a model's own folder (it would serve no category at all)."""
    from eagle_iad.expert.export import SIDECAR
    from eagle_iad.expert.manifest import MANIFEST

    if not models.exists():
        raise ConfigError(f"--models {models}: no such folder; give the folder of fitted categories "
                          f"(<models>/<category>/{MANIFEST}), or create it first for a new, empty service")  # fmt: skip
    if not models.is_dir():
        raise ConfigError(f"--models {models} is not a directory")
    if (models / MANIFEST).is_file() or (models / SIDECAR).is_file():
        where = models.resolve()
        raise ConfigError(f"--models {models} is a model itself, not a folder of models (<models>/<category>): "
                          f"give a folder holding it as <category>, e.g. its parent --models {where.parent} (which "
                          f"serves it as {where.name!r}), or copy it into one (a linked model cannot be taught or "
                          f"rolled back by the service): mkdir -p models && cp -r {where} "
                          "models/<category>")  # fmt: skip


def check_models_runtime(models: Path, runtime: str) -> None:
    """Refuse a ``--models`` folder that holds only the kind of model ``--runtime`` does not run: fitted models
    under ``--runtime onnx|openvino``, or export folders under ``--runtime torch`` (the default).

    Why: such a service started cleanly with no category at all (``/v1/categories`` empty), and each
    inspection then answered as if the model were broken or missing; ``eagle inspect`` says what the folder
    is and the flag to use, and so must the service, once, at start. A folder holding both kinds (or none yet:
    a new service) starts; the categories of the other kind are named per request (``ExpertCache``).
    """
    from eagle_iad.expert.manifest import EXPORT_NAMES, export_format
    from eagle_iad.expert.store import is_model_folder

    fitted: list[str] = []
    exports: dict[str, str] = {}
    for folder in sorted(models.iterdir()):
        if folder.name.startswith(".") or not folder.is_dir():
            continue
        if is_model_folder(folder):
            fitted.append(folder.name)
        else:
            fmt = export_format(folder)
            if fmt is not None:
                exports[folder.name] = fmt
    runs, other = (fitted, list(exports)) if runtime == "torch" else (list(exports), fitted)
    if runs or not other:
        return
    shown = ", ".join(other[:5]) + (f" and {len(other) - 5} more" if len(other) > 5 else "")
    if runtime == "torch":
        formats = {fmt for fmt in exports.values() if fmt in EXPORT_NAMES}
        names = " and ".join(EXPORT_NAMES[fmt] for fmt in sorted(formats)) or "unknown-format"
        flag = "openvino" if formats == {"openvino"} else "onnx|openvino"
        raise ConfigError(f"--models {models} holds {names} exports (written by eagle export: {shown}), no fitted "
                          f"models, and eagle serve runs fitted models unless told otherwise: serve the exports with "
                          f"eagle serve --runtime {flag} --models {models}, or give the folder of fitted "
                          "models")  # fmt: skip
    raise ConfigError(f"--models {models} holds fitted models ({shown}), no exports, and --runtime {runtime} runs "
                      f"export folders (written by eagle export): serve the fitted models with --runtime torch (the "
                      f"default), or export each (eagle export --model {models / other[0]} --format "
                      f"{'openvino' if runtime == 'openvino' else 'onnx'} --out DIR/{other[0]}) and serve that "
                      "folder")  # fmt: skip


def _cmd_serve(args: argparse.Namespace) -> int:
    """``eagle serve``: check the options, bind the address, then build the service app and run it with uvicorn."""
    _check_port(args.port)
    limits = from_flags(vars(args))  # each checked against its range; MiB flags become bytes
    models = Path(args.models)
    check_models_folder(models)
    check_models_runtime(models, args.runtime)
    if args.data_root is not None and not Path(args.data_root).is_dir():
        raise ConfigError(f"--data-root {args.data_root} is not a directory")
    if args.web is not None and not (Path(args.web) / "index.html").is_file():
        raise ConfigError(f"--web {args.web} holds no index.html (build the console with 'make web')")
    sock = bind_address(args.host, args.port)  # before the app: its history, state lock and stations
    try:
        return _serve_on(args, models, limits, sock)
    finally:
        sock.close()  # uvicorn has closed it when it served; when the app could not be built, it is let go here


def _serve_on(args: argparse.Namespace, models: Path, limits: dict[str, Any], sock: socket.socket) -> int:
    """``eagle serve`` once its flags are checked and its address bound: build the app and serve it."""
    from eagle_iad.mllm.base import backend_warnings
    from eagle_iad.service import ServiceSettings, create_app

    settings = ServiceSettings(
        models_dir=models,
        state_dir=Path(args.state_dir) if args.state_dir else models.parent / "eagle-service",
        data_root=args.data_root,
        runs_dir=args.runs,
        history=_history(args),
        files=args.files,
        web_dir=args.web,
        mllm=mllm_spec(args),
        runtime=args.runtime,
        **limits,
    )
    from eagle_iad.station.routes import install as stations

    # before the app: opening the history may migrate it, which is said
    log_app_to_stderr(args.log_level, bool(getattr(args, "log_timestamps", False)))
    app = create_app(settings, extensions=[stations])
    state = app.state.service
    # At the signal, not after the open requests: running fits start stopping now (their event streams
    # end with them); then uvicorn answers (or after the grace cuts) the open requests and runs the app's
    # shutdown (fit jobs stopped, history closed).
    try:
        keyed = settings.api_key is not None or state.keys.any_ever()
        _run(app, args, open_warning=None if keyed else f" (add keys with 'eagle keys add', or set {API_KEY_ENV})",
             banner=f"eagle service on http://{args.host}:{args.port} (history: {redact(settings.history_url)})",
             grace_s=settings.shutdown_grace_s, on_signal=state.begin_stop, sock=sock,
             # what eagle inspect, eval and serve-mllm say of the MLLM as it loads: a tiny random test model, a
             # hybrid whose two sides cannot be checked to hold the same model
             warnings=backend_warnings(state.backend))  # fmt: skip
    except Stopped as stop:
        jobs = state.jobs.interrupted
        stop.what = f"eagle serve --models {args.models} ({jobs} fit job{'s' * (jobs != 1)} interrupted)"
        if state.jobs_left_running:  # past the grace period: their records say interrupted; do not wait
            print(f"eagle: stopped by {stop.signal_name}: {stop.what}; fit jobs still running after the "
                  f"{settings.shutdown_grace_s} s grace period: {state.jobs_left_running}, abandoned (their scratch "
                  "is removed at the next start)", file=sys.stderr, flush=True)  # fmt: skip
            sys.stdout.flush()
            os._exit(stop.exit_status)
        raise
    return 0


def add_openapi(sub: Subcommands) -> None:
    oa = sub.add_parser("openapi", help="the service's OpenAPI document (the TypeScript client's source)")
    oa.add_argument("--out", help="file to write atomically (default: standard output)")
    oa.set_defaults(func=_cmd_openapi)


def _cmd_openapi(args: argparse.Namespace) -> int:
    """``eagle openapi``: the service's OpenAPI document, from which the TypeScript client is generated."""
    import tempfile

    from eagle_iad.service import ServiceSettings, create_app

    target = None if args.out in (None, "-") else Path(args.out)
    if target is not None:  # checked before the app is built: a bad path fails at once
        if target.is_dir():
            raise OutputError(f"{args.out}: is a directory; give a file name such as openapi.json")
        below = next((p for p in target.parents if os.path.lexists(p)), None)
        if below is not None and not below.is_dir():
            raise OutputError(f"{args.out}: cannot be created because {below} is not a directory")
    with tempfile.TemporaryDirectory() as tmp:
        from eagle_iad.station.routes import install as stations

        app = create_app(ServiceSettings(models_dir=Path(tmp), state_dir=Path(tmp) / "state"), extensions=[stations])
        document = json.dumps(app.openapi(), indent=2, sort_keys=True) + "\n"
        app.state.service.close()
    if target is None:
        sys.stdout.write(document)
        return 0
    with write_errors(target, "the previous file is unchanged"):
        atomic_write_text(target, document)
    return 0


#: The subcommands this module adds, by name (``eagle_iad.cli`` adds them in its fixed order).
COMMANDS: dict[str, Callable[[Subcommands], None]] = {
    "serve-mllm": add_serve_mllm,
    "serve": add_serve,
    "openapi": add_openapi,
}
