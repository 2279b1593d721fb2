"""The webhook sink: each verdict POSTed as JSON, signed, with the record id as its idempotency key.

The receiver can trust and de-duplicate what it gets: ``X-Eagle-Signature-256: sha256=<hex>`` is the
HMAC-SHA256 of the exact body under a shared secret (read from the environment variable named by
``secret_env``, so it never sits in the stations file), and ``Idempotency-Key`` is the record id,
the same on every retry of the same verdict. Any answer but 2xx, a timeout or a refused connection is
retried with backoff (the outbox's): a receiver that cannot be reached, a malformed answer, a 5xx, 401, 403, 404,
408 or 429 until it delivers (by default: see :data:`RETRIED_4XX`), any other 4xx, refusing the verdict, until it is
a dead letter (see :meth:`Retry.gives_up`). TLS certificates are verified unless
``verify_tls = false``; ``ca_file`` names a private CA (both with an ``https://`` url only: with ``http://``
there is nothing to verify, so either is refused rather than ignored).

An image the station refused is POSTed the same way, its body a refusal (``"event": "refused"``, ``refused`` in
place of ``record``: see :func:`~eagle_iad.station.parts.refusal`) and its ``Idempotency-Key`` the refusal's key
(``refused-...``), so a receiver tells it from a verdict by the body alone.

At start-up :meth:`WebhookSink.station_probe` only connects (and, for ``https``, makes the TLS handshake): a POST
would be a delivery. A receiver that does not answer is a warning (its verdicts wait in the outbox); a
certificate that fails verification is a configuration error naming ``url`` or ``ca_file``.
"""

from __future__ import annotations

import hashlib
import hmac
import http.client
import json
import socket
import ssl
import urllib.error
import urllib.request
from collections.abc import Mapping
from typing import Any, ClassVar
from urllib.parse import urlsplit

from eagle_iad import __version__
from eagle_iad.ranges import Range, short_repr
from eagle_iad.station.parts import REQUIRED, SINKS, DeliveryError, Options, RefusedError, Retry, StationConfigError

SIGNATURE_HEADER = "X-Eagle-Signature-256"
TIMEOUT_S = Range(0.0, 600.0, low_open=True)
#: Why ``verify_tls = false`` or ``ca_file`` is refused with an ``http://`` url, and what fixes it (removing the
#: option changes nothing: over plain HTTP there was no certificate to verify).
PLAIN_HTTP = "(this url is plain http://: no TLS to verify)"
PLAIN_HTTP_FIX = "remove {key} from this sink (over http:// it did nothing), or give it an https:// url"
#: OpenSSL's codes for a certificate that is valid, but not for the host (62) or address (64) asked for.
_HOST_MISMATCH = (62, 64)
#: The 4xx answers that say "not now" (request timeout, too many requests), and those that describe the receiver as
#: a whole rather than this verdict (401, 403: credentials it no longer accepts, an expired token; 404: a route not
#: deployed, a wrong path): retried as a receiver that is down is (without limit by default; the status names the
#: failing sink), so fixing the receiver delivers every verdict in order instead of leaving a dead letter each.
#: Any other 4xx (400, 409, 410, 413, 415, 422, ...) refuses the verdict (:class:`RefusedError`).
RETRIED_4XX = (401, 403, 404, 408, 429)


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, req: Any, fp: Any, code: int, msg: str, headers: Any, newurl: str) -> None:
        raise DeliveryError(f"HTTP {code} from {req.full_url}: redirected to {newurl}; deliveries do not follow "
                            "redirects (set url to where they lead)")  # fmt: skip


def signature(secret: bytes, body: bytes) -> str:
    """The signature header's value for ``body`` (what a receiver recomputes and compares)."""
    return "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()


class WebhookSink:
    """A :class:`~eagle_iad.station.parts.Sink` POSTing to an HTTP(S) endpoint."""

    kind: ClassVar[str] = "webhook"
    takes_refusals: ClassVar[bool] = True

    def __init__(self, options: Options, name: str) -> None:
        self.name = name
        self.where = options.where
        self.url: str = options.text("url", REQUIRED)
        try:
            parts = urlsplit(self.url)
            port = parts.port  # raises for a port out of range
        except ValueError as exc:
            raise options.error("url", f"{short_repr(self.url)} is not a URL: {exc}") from None
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise options.error("url", f"{self.url!r} is not an http:// or https:// URL with a host")
        if any(c.isspace() or ord(c) < 32 or ord(c) == 127 for c in self.url):
            raise options.error("url", f"{short_repr(self.url)} contains spaces or control characters")
        self._host: str = parts.hostname
        self._port = port or (443 if parts.scheme == "https" else 80)
        secret = options.secret("secret_env")
        self.secret: bytes | None = None if secret is None else secret.encode("utf-8")
        self.timeout_s = options.number("timeout_s", 10.0, TIMEOUT_S)
        verify = options.flag("verify_tls", True)
        ca_file = options.path("ca_file")
        # Refused rather than ignored: the user may believe the url is TLS. Earlier versions accepted both, so a
        # station kept from then stops here at its start: the message says what fixes it (removing the option).
        if ca_file is not None and parts.scheme != "https":
            raise options.error("ca_file", f"needs an https:// url {PLAIN_HTTP}; "
                                           f"{PLAIN_HTTP_FIX.format(key='ca_file')}")  # fmt: skip
        if not verify and parts.scheme != "https":
            raise options.error("verify_tls", f"= false needs an https:// url {PLAIN_HTTP}; "
                                              f"{PLAIN_HTTP_FIX.format(key='verify_tls')}")  # fmt: skip
        if ca_file is not None and not ca_file.is_file():
            raise options.error("ca_file", f"{ca_file} is not a file")
        self.max_attempts = Retry.read(options).max_attempts
        self._context: ssl.SSLContext | None = None
        if parts.scheme == "https":
            self._context = options.tls_context("ca_file", ca_file)
            if not verify:
                self._context.check_hostname = False
                self._context.verify_mode = ssl.CERT_NONE

    @property
    def _opener(self) -> urllib.request.OpenerDirector:
        """An opener that follows no redirect: urllib would turn a redirected POST into a GET without its body,
        and a 2xx to that GET would count as delivered."""
        return urllib.request.build_opener(_NoRedirect(), urllib.request.HTTPSHandler(context=self._context))

    @property
    def delivery_bound_s(self) -> float:
        """About the most one delivery waits by its options (the connection and the answer, each up to
        ``timeout_s``): past it, the station's watch says the delivery has not returned (overdue.py)."""
        return 2 * self.timeout_s

    def describe(self) -> str:
        return f"webhook {self.url} ({'signed' if self.secret else 'unsigned'}, timeout {self.timeout_s:g} s)"

    def deliver(self, payload: Mapping[str, Any], key: str) -> None:
        body = json.dumps(payload).encode("utf-8")
        headers = {
            "Content-Type": "application/json",
            "Idempotency-Key": key,
            "User-Agent": f"eagle-iad/{__version__}",
        }
        if self.secret is not None:
            headers[SIGNATURE_HEADER] = signature(self.secret, body)
        request = urllib.request.Request(self.url, data=body, headers=headers, method="POST")
        try:
            with self._opener.open(request, timeout=self.timeout_s) as answer:
                answer.read(1 << 16)
        except urllib.error.HTTPError as exc:
            if 400 <= exc.code < 500 and exc.code not in RETRIED_4XX:  # this request refused: a dead letter, in time
                raise RefusedError(f"HTTP {exc.code} from {self.url}") from None
            raise DeliveryError(f"HTTP {exc.code} from {self.url}") from None
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise DeliveryError(f"{self.url}: {reason}") from None
        except http.client.HTTPException as exc:  # no valid HTTP answer (BadStatusLine, IncompleteRead, LineTooLong):
            # the receiver or something between, not this verdict: retried as an unreachable receiver is
            raise DeliveryError(f"{self.url}: malformed HTTP answer ({type(exc).__name__}: {exc})") from None

    def station_probe(self) -> str | None:
        """Connect (and shake hands over TLS) without sending a request: why the receiver is unreachable, or None.

        A certificate that fails verification raises :class:`StationConfigError` naming ``url`` (a certificate
        for another host) or ``ca_file`` (signed by a CA this sink does not trust). With a proxy in the
        environment (``https_proxy``, ...) the receiver is reached through it, so nothing is checked here.
        """
        scheme = urlsplit(self.url).scheme
        if scheme in urllib.request.getproxies() and not urllib.request.proxy_bypass(self._host):
            return None
        try:
            with socket.create_connection((self._host, self._port), timeout=self.timeout_s) as raw:
                if self._context is not None:
                    with self._context.wrap_socket(raw, server_hostname=self._host):
                        pass  # the handshake (and the certificate's check) happens on wrapping
        except ssl.SSLCertVerificationError as exc:
            reason = str(exc.verify_message or exc.reason or exc).rstrip(".")
            if exc.verify_code in _HOST_MISMATCH:
                raise StationConfigError(f"{self.where}: url {self.url}: the TLS certificate is not for "
                                         f"{self._host} ({reason})") from None  # fmt: skip
            raise StationConfigError(f"{self.where}: ca_file: the TLS certificate of {self._host}:{self._port} "
                                     f"failed verification ({reason}); name the CA that signed it in ca_file"
                                     ) from None  # fmt: skip
        except TimeoutError:
            return f"{self.url}: no answer within {self.timeout_s:g} s"
        except OSError as exc:
            return f"{self.url}: {exc.strerror or exc}"
        return None

    def close(self) -> None:
        pass


SINKS.add(WebhookSink.kind, WebhookSink)
