"""What the OPC UA sink and the camera's OPC UA trigger share: the endpoint, node id and user options read and
checked alike, the client made alike, and a failure said alike.

Why one module: a PLC's endpoint typed into a sink and into a camera's trigger must be refused for the same
reasons with the same words, and a node id that one accepts the other must too; a second copy of these
checks would drift. asyncua is imported inside each function (an optional dependency, ``eagle-iad[opcua]``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from eagle_iad.ranges import short_repr
from eagle_iad.station.parts import REQUIRED, Options

if TYPE_CHECKING:
    from asyncua import ua
    from asyncua.client.client import Client

#: A session refused with one of these status codes is the user's (``username``, ``password_env``) fault.
IDENTITY_REFUSED = ("BadIdentityTokenInvalid", "BadIdentityTokenRejected", "BadUserAccessDenied")
#: What a node id looks like, for the error that says one is not.
NODE_ID_EXAMPLES = "'ns=2;s=Verdict', 'ns=3;i=1001' or 'nsu=urn:plc;s=Verdict'"


def need_asyncua(options: Options, key: str, what: str) -> None:
    """A missing asyncua package is a start-up error on option ``key``, saying ``what`` needs it."""
    try:
        import asyncua  # noqa: F401
    except ImportError:
        raise options.error(key, f"{what} needs the asyncua package: pip install 'eagle-iad[opcua]'") from None


def read_endpoint(options: Options, key: str) -> str:
    """The option ``key``, an ``opc.tcp://host:port/...`` endpoint (required), checked: no user in it (the password
    would sit in the file: ``username`` and ``password_env`` say who), no spaces, a numeric port."""
    endpoint: str = options.text(key, REQUIRED).strip()
    try:
        parts = urlsplit(endpoint)
    except ValueError as exc:
        raise options.error(key, f"{short_repr(endpoint)} is not a URL: {exc}") from None
    if parts.scheme != "opc.tcp" or not parts.hostname:
        raise options.error(key, f"{short_repr(endpoint)} is not an opc.tcp://host:port/... endpoint")
    try:
        parts.port  # noqa: B018  (raises on a port that is not a number)
    except ValueError:
        raise options.error(key, f"{endpoint!r} has a port that is not a number from 0 to 65535") from None
    if any(c.isspace() or ord(c) < 32 or ord(c) == 127 for c in endpoint):
        raise options.error(key, f"{short_repr(endpoint)} contains spaces or control characters")
    if "@" in parts.netloc:
        raise options.error(key, "has a user in it; use username and password_env (the password stays out of the "
                                 "file)")  # fmt: skip
    return endpoint


def read_node_id(options: Options, key: str, text: Any) -> Any:
    """``text`` (the value of option ``key``) parsed as a node id (an ``asyncua.ua.NodeId``, or an
    ``ExpandedNodeId`` for ``nsu=``): well formed, an identifier, and on the endpoint's own server (no ``svr=``).
    Parsed when the stations file is read, so a typo is a start-up error and not a failure at the PLC."""
    from asyncua import ua
    from asyncua.ua.uaerrors import UaError

    if not isinstance(text, str) or not text.strip():
        raise options.error(key, f"must be a node id such as 'ns=2;s=Verdict', not {text!r}")
    try:
        node = ua.NodeId.from_string(text.strip())
    except (UaError, ValueError):
        raise options.error(key, f"{text!r} is not an OPC UA node id; write e.g. {NODE_ID_EXAMPLES}") from None
    if node.Identifier in ("", None):
        raise options.error(key, f"{text!r} has an empty identifier")
    if getattr(node, "ServerIndex", None):
        raise options.error(key, f"{text!r} names another server (svr=); name a node of the endpoint's server")
    return node


def read_user(options: Options) -> tuple[str | None, str | None]:
    """``username`` and the password ``password_env`` names (``None``, ``None``: an anonymous session)."""
    username: str | None = options.text("username")
    if username is None and options.table.get("password_env") is not None:
        raise options.error("password_env", "needs username (OPC UA sends a password only with a user name)")
    return username, options.secret("password_env")


#: The session lifetime asked of the PLC, in ms (asyncua asks for an hour). A session a client could not close (a
#: start-up look cut off at its bound, a station killed) stays open on the PLC that long, and a PLC allows only a few
#: sessions: repeated POSTs could use them up and lock the station's own connection out (BadTooManySessions). A live
#: client keeps its session up by its own reads well within it.
SESSION_TIMEOUT_MS = 30_000


def new_client(endpoint: str, timeout_s: float, username: str | None, password: str | None) -> Client:
    """A client for ``endpoint`` with a request timeout, a bounded session (:data:`SESSION_TIMEOUT_MS`) and
    credentials (not connected yet)."""
    from asyncua.client.client import Client

    client = Client(endpoint, timeout=timeout_s)
    client.session_timeout = SESSION_TIMEOUT_MS
    if username is not None:
        client.set_user(username)
    if password is not None:
        client.set_password(password)
    return client


async def close_quietly(client: Client, timeout_s: float) -> None:
    """Disconnect ``client`` and close its socket, whatever state it is in (it may be dead already)."""
    with contextlib.suppress(Exception):
        await asyncio.wait_for(client.disconnect(), timeout_s)
    with contextlib.suppress(Exception):
        client.disconnect_socket()


async def on_server(client: Client, node: Any) -> ua.NodeId | None:
    """``node`` as the server numbers it (an ``nsu=`` namespace URI looked up in its namespace array), or ``None``
    when the server has no such namespace."""
    from asyncua import ua

    uri = getattr(node, "NamespaceUri", None)
    if not uri:
        return ua.NodeId(node.Identifier, node.NamespaceIndex, node.NodeIdType)
    namespaces = await client.get_namespace_array()
    if uri not in namespaces:
        return None
    return ua.NodeId(node.Identifier, ua.Int16(namespaces.index(uri)), node.NodeIdType)


def why(exc: BaseException, timeout_s: float) -> str:
    """A failure in words: the status code's name, the socket's reason, or a timeout."""
    from asyncua import ua
    from asyncua.ua.uaerrors import UaStatusCodeError

    if isinstance(exc, TimeoutError | asyncio.TimeoutError):
        return f"no answer within {timeout_s:g} s"
    if isinstance(exc, UaStatusCodeError):
        name = ua.StatusCode(exc.code).name
        secure = " (the server may demand a secure channel; eagle-iad speaks security None)"
        return f"{name}{secure if 'Security' in name else ''}"
    if isinstance(exc, OSError) and exc.errno:
        return os.strerror(exc.errno)
    return str(exc) or type(exc).__name__


def quiet_asyncua() -> None:
    """asyncua reports every hiccup on its own logger (a traceback for a session it could not close); eagle-iad
    reports what matters in its own lines, so asyncua is quiet unless configured."""
    quiet = logging.getLogger("asyncua")
    if quiet.level == logging.NOTSET:
        quiet.setLevel(logging.CRITICAL)
