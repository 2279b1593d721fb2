"""An OpenAI-compatible chat-completions server for any EAGLE MLLM backend (``eagle serve-mllm``).

Why: a GPU host loads the model once and every team's tool talks to it with a stock OpenAI client;
our own ``openai:`` backend is one such client, so the same prompt gives the same greedy answer
in-process and over HTTP. EAGLE's extras ride in an optional ``eagle`` object of the request
(CAAS settings, attention capture) and are reported back in an ``eagle`` object of the response,
so a plain OpenAI client simply never sees them.

Honesty rules (the server never pretends to do something it did not do):

* decoding is always greedy: ``temperature`` must be omitted or 0 (and ``top_p`` omitted or 1),
  anything else is a 400 instead of silently returning the greedy answer;
* images must be inline ``data:image/...;base64,`` URLs; ``http(s)`` URLs are refused with a 400,
  because fetching arbitrary URLs from a model host is a server-side request forgery risk and
  makes results depend on a third party;
* unknown request fields are refused (400 naming them) rather than ignored;
* ``eagle.caas_applied`` is taken from the backend's reply, never from the request.

Concurrency: one batch-of-one generation at a time (CAAS spans are per prompt and a model on one
device gains nothing from interleaving), run on one worker thread fed by a bounded queue. A full
queue answers 429 with ``Retry-After`` so clients back off instead of piling up unbounded work.
Images are decoded (with :func:`eagle_iad.images.load_rgb` limits) before a request is queued, so a
bad upload fails fast and never holds a queue slot.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hmac
import queue
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, Any, Literal

import numpy as np
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.concurrency import run_in_threadpool

from eagle_iad.choices import DEFAULT_CAAS_PHASE, CaasPhase
from eagle_iad.errors import BackendError, EagleError, ImageError
from eagle_iad.images import load_rgb
from eagle_iad.mllm.base import RANDOM_MODEL_MARK, Backend, GenerateOptions, Reply
from eagle_iad.mllm.caas import DEFAULT_ALPHA, CaasSettings
from eagle_iad.mllm.serving import ApiError, GenerationWorker, Job
from eagle_iad.mllm.weights import SERVED_IDENTITY_KEY
from eagle_iad.tgps.prompt import ContentItem, ImageItem, TextItem

#: Default number of requests that may wait for the worker (the running one not counted).
DEFAULT_QUEUE_SIZE = 8
#: Largest request body accepted (base64 images included): 64 MiB.
DEFAULT_MAX_BODY_BYTES = 64 * 1024 * 1024
#: Largest ``max_tokens`` accepted; an inspection answer is a letter, so this is generous.
DEFAULT_MAX_TOKENS_LIMIT = 4096
#: Most images in one request: a TGPS prompt has at most three (template, query, boxed copy), and
#: each decoded image may take up to ``EAGLE_MAX_PIXELS`` x 3 bytes, so the count bounds memory.
DEFAULT_MAX_IMAGES = 8
#: ``max_tokens`` when the request does not set it (the same default as :class:`GenerateOptions`).
DEFAULT_MAX_TOKENS = GenerateOptions().max_new_tokens


# ---------------------------------------------------------------------------------------------------
# Request / response models (OpenAI chat-completions subset + the ``eagle`` extension)
# ---------------------------------------------------------------------------------------------------


class _Strict(BaseModel):
    """Unknown fields are an error: a field we do not understand must not be silently dropped."""

    model_config = ConfigDict(extra="forbid")


class TextPart(_Strict):
    type: Literal["text"]
    text: str


class ImageURL(_Strict):
    url: str
    #: OpenAI's resolution hint; accepted for compatibility, the model's processor decides resolution.
    detail: Literal["auto", "low", "high"] | None = None


class ImagePart(_Strict):
    type: Literal["image_url"]
    image_url: ImageURL


#: A content part, told apart by ``type`` (so an unsupported type gets one clear error, not one per variant).
ContentPart = Annotated[TextPart | ImagePart, Field(discriminator="type")]


class ChatMessage(_Strict):
    role: str
    content: str | list[ContentPart]
    name: str | None = None


class CaasRequest(_Strict):
    """CAAS settings: ``image_index`` is the 0-based position of the query image among the images."""

    enabled: bool = True
    alpha: float = Field(default=DEFAULT_ALPHA, ge=0.0, allow_inf_nan=False)
    layers: list[int] | None = None
    phase: CaasPhase = DEFAULT_CAAS_PHASE
    image_index: int = Field(default=0, ge=0)


class EagleRequest(_Strict):
    """The ``eagle`` extension object of a request."""

    caas: CaasRequest | None = None
    capture_attention: bool = False


class ChatCompletionRequest(_Strict):
    """The accepted subset of OpenAI's chat-completions request (see the module docstring)."""

    model: str
    messages: list[ChatMessage] = Field(min_length=1)
    max_tokens: int | None = Field(default=None, ge=1)
    max_completion_tokens: int | None = Field(default=None, ge=1)
    temperature: float | None = None
    top_p: float | None = None
    n: int | None = None
    stream: bool | None = None
    stop: str | list[str] | None = None
    seed: int | None = None  # greedy decoding is deterministic: any seed gives the same answer
    user: str | None = None
    eagle: EagleRequest | None = None


# ---------------------------------------------------------------------------------------------------
# Request -> backend call
# ---------------------------------------------------------------------------------------------------


def _decode_data_url(url: str, position: int) -> np.ndarray:
    """Decode one ``data:image/...;base64,`` URL to RGB; the server never fetches remote URLs."""
    where = f"image {position} (0-based)"
    if url.startswith(("http://", "https://")):
        raise ApiError(
            400,
            f"{where}: remote image URLs are not fetched by this server (it makes no network requests); "
            "send the image inline as a data URL: data:image/png;base64,...",
            code="image_url_not_supported",
        )
    header, sep, payload = url.partition(",")
    if not url.startswith("data:") or not sep:
        raise ApiError(400, f"{where}: image_url must be a data URL (data:image/png;base64,...)", code="invalid_image")
    media = header[len("data:") :]
    if not media.endswith(";base64"):
        raise ApiError(400, f"{where}: the data URL must be base64-encoded (';base64,')", code="invalid_image")
    if not media.startswith("image/"):
        raise ApiError(400, f"{where}: media type {media[: -len(';base64')]!r} is not an image", code="invalid_image")
    try:
        # Some encoders wrap base64 at 76 columns; whitespace is not data, anything else invalid is refused.
        data = base64.b64decode("".join(payload.split()), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ApiError(400, f"{where}: invalid base64 in the data URL ({exc})", code="invalid_image") from exc
    try:
        return load_rgb(data)
    except ImageError as exc:
        raise ApiError(400, f"{where}: {exc}", code="invalid_image") from exc


def _check_sampling(request: ChatCompletionRequest) -> None:
    """Refuse sampling options: the backends decode greedily, and saying so beats ignoring them."""
    if request.temperature not in (None, 0, 0.0):
        raise ApiError(
            400,
            f"temperature {request.temperature} is not supported: decoding is greedy (deterministic answers); "
            "omit temperature or send 0",
            code="unsupported_parameter",
        )
    if request.top_p not in (None, 1, 1.0):
        raise ApiError(
            400, "top_p is not supported: decoding is greedy; omit it or send 1", code="unsupported_parameter"
        )
    if request.n not in (None, 1):
        raise ApiError(400, "n > 1 is not supported: greedy decoding has one answer", code="unsupported_parameter")
    if request.stream:
        raise ApiError(400, "stream=true is not supported; send stream=false", code="unsupported_parameter")
    if request.stop:
        raise ApiError(400, "stop sequences are not supported", code="unsupported_parameter")


def build_job(
    request: ChatCompletionRequest,
    *,
    max_tokens_limit: int = DEFAULT_MAX_TOKENS_LIMIT,
    max_images: int = DEFAULT_MAX_IMAGES,
) -> Job:
    """Validate a request and turn it into backend items, decoded images and options.

    The backends render one user turn (the TGPS prompt model), so exactly one ``user`` message is
    accepted; a system or assistant message would otherwise be dropped or re-ordered silently.
    """
    _check_sampling(request)
    if len(request.messages) != 1 or request.messages[0].role != "user":
        roles = [message.role for message in request.messages]
        raise ApiError(
            400,
            f"exactly one message with role 'user' is supported (the model is prompted with one user turn); "
            f"got roles {roles}",
            code="unsupported_messages",
        )
    content = request.messages[0].content
    parts: list[TextPart | ImagePart] = [TextPart(type="text", text=content)] if isinstance(content, str) else content
    if not parts:
        raise ApiError(400, "the user message has no content", code="invalid_request")
    both = request.max_tokens is not None and request.max_completion_tokens is not None
    if both and request.max_tokens != request.max_completion_tokens:
        raise ApiError(400, "max_tokens and max_completion_tokens disagree; send one of them", code="invalid_request")
    max_tokens = request.max_completion_tokens or request.max_tokens or DEFAULT_MAX_TOKENS
    if max_tokens > max_tokens_limit:
        raise ApiError(
            400, f"max_tokens {max_tokens} exceeds this server's limit of {max_tokens_limit}", code="invalid_request"
        )

    eagle = request.eagle or EagleRequest()
    caas_request = eagle.caas
    n_images = sum(isinstance(part, ImagePart) for part in parts)
    if n_images > max_images:
        raise ApiError(
            400, f"{n_images} images in one request; this server accepts at most {max_images}", code="invalid_request"
        )
    query_index: int | None = None
    if n_images:
        query_index = caas_request.image_index if caas_request is not None else 0
        if query_index >= n_images:
            raise ApiError(
                400,
                f"eagle.caas.image_index {query_index} is out of range: the prompt has {n_images} images",
                code="invalid_request",
            )
    elif (caas_request is not None and caas_request.enabled) or eagle.capture_attention:
        raise ApiError(
            400, "CAAS and attention capture need an image in the prompt (the query image)", code="invalid_request"
        )

    items: list[ContentItem] = []
    images: dict[str, np.ndarray] = {}
    position = 0
    for part in parts:
        if isinstance(part, TextPart):
            items.append(TextItem(part.text))
            continue
        ref = f"image{position}"
        images[ref] = _decode_data_url(part.image_url.url, position)
        # Only the query role matters to a backend (its tokens are the CAAS span and the capture
        # target); every other image is a reference picture that is never scaled.
        items.append(ImageItem("query" if position == query_index else "template", ref))
        position += 1

    caas = None
    if caas_request is not None and caas_request.enabled:
        if caas_request.layers is not None and not caas_request.layers:
            raise ApiError(
                400, "eagle.caas.layers is empty; omit it for the model's default CAAS layers", code="invalid_request"
            )
        try:
            layers = None if caas_request.layers is None else tuple(caas_request.layers)
            caas = CaasSettings(alpha=caas_request.alpha, layers=layers, phase=caas_request.phase)
        except EagleError as exc:
            raise ApiError(400, f"eagle.caas: {exc}", code="invalid_option") from exc
    options = GenerateOptions(max_new_tokens=max_tokens, caas=caas, capture_attention=eagle.capture_attention)
    return Job(items, images, options, query_index)


def _finish_reason(reply: Reply, max_tokens: int) -> str:
    reason = reply.metadata.get("finish_reason")
    if isinstance(reason, str):
        return reason
    return "length" if reply.token_ids and len(reply.token_ids) >= max_tokens else "stop"


def completion_body(reply: Reply, job: Job, model: str, *, capture_requested: bool) -> dict[str, Any]:
    """A standard ``chat.completion`` object plus the ``eagle`` record of what was actually done."""
    prompt_tokens = reply.metadata.get("prompt_tokens")
    usage: dict[str, int] | None = None
    if isinstance(prompt_tokens, int) and reply.token_ids:
        completion_tokens = len(reply.token_ids)
        usage = {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        }
    elif isinstance(reply.metadata.get("usage"), dict):
        usage = reply.metadata["usage"]
    caas_record = reply.caas_settings or {}
    eagle: dict[str, Any] = {
        "caas_requested": job.options.caas is not None,
        "caas_applied": reply.caas_applied,
        "layers_scaled": list(caas_record.get("scaled_layers", [])) if reply.caas_applied else [],
        "caas": reply.caas_settings if reply.caas_applied else None,
        "query_image_index": job.query_index,
        "timings": reply.timings,
    }
    if job.options.caas is not None and not reply.caas_applied:
        eagle["caas_note"] = "the backend could not apply CAAS (no in-process attention); the answer is without it"
    if reply.metadata.get(RANDOM_MODEL_MARK):  # a client over HTTP learns its answer is noise, as in process
        eagle[RANDOM_MODEL_MARK] = True
    if capture_requested:
        eagle["attention"] = None if reply.attention is None else reply.attention.to_dict()
        if reply.attention is None:
            eagle["attention_note"] = reply.metadata.get("attention_note", "the backend captured no attention")
    return {
        "id": f"chatcmpl-{uuid.uuid4().hex}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": reply.text},
                "finish_reason": _finish_reason(reply, job.options.max_new_tokens),
                "logprobs": None,
            }
        ],
        "usage": usage,
        "eagle": eagle,
    }


# ---------------------------------------------------------------------------------------------------
# The app
# ---------------------------------------------------------------------------------------------------


async def _read_body(request: Request, limit: int) -> bytes:
    """Read the body, refusing (413) as soon as it exceeds ``limit`` (chunked uploads included)."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise ApiError(
            413, f"request body of {declared} bytes exceeds the limit of {limit} bytes", code="payload_too_large"
        )
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise ApiError(413, f"request body exceeds the limit of {limit} bytes", code="payload_too_large")
        chunks.append(chunk)
    return b"".join(chunks)


def _validation_message(exc: ValidationError) -> str:
    """Pydantic's errors as one line; the "content is not a string" branch is dropped when the content
    was a list (it is noise next to the real problem), and unknown fields say why they are refused."""
    errors = exc.errors()
    relevant = [e for e in errors if not (e["type"] == "string_type" and e["loc"] and e["loc"][-1] == "str")]
    problems = []
    for error in (relevant or errors)[:5]:
        parts = [str(part) for part in error["loc"] if part != "str" and not str(part).startswith("list[")]
        where = ".".join(parts) or "body"
        if error["type"] == "extra_forbidden":
            problems.append(f"{where}: unsupported field (refused rather than silently ignored)")
        else:
            problems.append(f"{where}: {error['msg']}")
    return "invalid request: " + "; ".join(problems)


def served_identity(backend: Any) -> dict[str, Any] | None:
    """The :func:`eagle_iad.mllm.weights.model_identity` of an in-process backend's checkpoint folder (None for
    others): ``/v1/models`` lists it, so ``--mllm openai:<this server> --caas-mllm hf:DIR`` is checked to be one
    model (:func:`eagle_iad.mllm.hybrid.check_same_model`)."""
    from eagle_iad.mllm.weights import local_folder, model_identity

    ref = getattr(backend, "model_ref", None)
    folder = local_folder(ref) if isinstance(ref, str) else None
    return None if folder is None else model_identity(folder)


def create_mllm_app(
    backend: Backend,
    *,
    model_name: str | None = None,
    queue_size: int = DEFAULT_QUEUE_SIZE,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    max_tokens_limit: int = DEFAULT_MAX_TOKENS_LIMIT,
    api_key: str | None = None,
) -> FastAPI:
    """The OpenAI-compatible app serving ``backend`` as ``model_name`` (default: the backend's name).

    With ``api_key`` every ``/v1`` route requires ``Authorization: Bearer <api_key>`` (what OpenAI
    clients send), so a server bound beyond loopback is not open to everyone; ``/healthz`` stays open
    for load balancers. The worker thread starts with the app's lifespan and stops with it, so the
    app can be served by uvicorn, by ``uvicorn.Server`` in a thread (tests), or mounted elsewhere.
    """
    served = model_name or backend.name
    random_model = bool(getattr(backend, RANDOM_MODEL_MARK, False))
    identity = served_identity(backend)
    worker = GenerationWorker(backend, queue_size)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        worker.start()
        try:
            yield
        finally:
            await run_in_threadpool(worker.stop)

    app = FastAPI(
        title="EAGLE MLLM server",
        description="OpenAI-compatible chat completions with EAGLE extensions (CAAS, attention capture).",
        lifespan=lifespan,
    )
    app.state.worker = worker
    app.state.model_name = served

    def check_key(request: Request) -> None:
        if api_key is None:
            return
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(token.strip().encode(), api_key.encode()):
            raise ApiError(401, "missing or wrong API key (send Authorization: Bearer <key>)", code="invalid_api_key")

    @app.exception_handler(ApiError)
    async def _api_error(_: Request, exc: ApiError) -> JSONResponse:
        return exc.response()

    @app.exception_handler(404)
    async def _not_found(request: Request, _: Exception) -> JSONResponse:
        return ApiError(404, f"no route {request.url.path}", code="not_found").response()

    @app.exception_handler(405)
    async def _not_allowed(request: Request, _: Exception) -> JSONResponse:
        return ApiError(
            405, f"method {request.method} not allowed on {request.url.path}", code="method_not_allowed"
        ).response()

    @app.get("/healthz")
    async def healthz() -> dict[str, Any]:
        return {"status": "ok", "model": served, "queue_waiting": worker.waiting, "queue_size": queue_size}

    @app.get("/v1/models")
    async def models(request: Request) -> dict[str, Any]:
        check_key(request)
        entry: dict[str, Any] = {"id": served, "object": "model", "created": 0, "owned_by": "eagle-iad"}
        if random_model:  # said before any answer: `eagle eval --mllm openai:...` marks its run from it
            entry[RANDOM_MODEL_MARK] = True
        if identity is not None:  # so a hybrid with this server as its engine can check its CAAS side is this model
            entry[SERVED_IDENTITY_KEY] = identity
        return {"object": "list", "data": [entry]}

    @app.post("/v1/chat/completions")
    async def chat_completions(request: Request) -> JSONResponse:
        check_key(request)
        raw = await _read_body(request, max_body_bytes)
        try:
            body = ChatCompletionRequest.model_validate_json(raw)
        except ValidationError as exc:
            raise ApiError(400, _validation_message(exc), code="invalid_request") from exc
        if body.model != served:
            raise ApiError(
                404, f"model {body.model!r} is not served here; this server serves {served!r}", code="model_not_found"
            )
        # Decoding a large image is CPU work: keep it off the event loop.
        job = await run_in_threadpool(build_job, body, max_tokens_limit=max_tokens_limit)
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Reply] = loop.create_future()

        def done(reply: Reply | None, error: BaseException | None) -> None:
            def settle() -> None:
                if future.cancelled():
                    return
                if error is not None:
                    future.set_exception(error)
                else:
                    assert reply is not None
                    future.set_result(reply)

            loop.call_soon_threadsafe(settle)

        try:
            worker.submit(job, done)
        except queue.Full:
            raise ApiError(
                429,
                f"the generation queue is full ({queue_size} waiting); retry later",
                type_="rate_limit_error",
                code="queue_full",
                headers={"Retry-After": str(worker.retry_after_s())},
            ) from None
        try:
            reply = await future
        except asyncio.CancelledError:
            job.cancelled.set()  # client gone: do not spend the worker on it
            raise
        except BackendError as exc:  # a proxied backend failed: not the client's fault
            raise ApiError(502, str(exc), type_="server_error", code="backend_error") from exc
        except EagleError as exc:  # e.g. CAAS layers out of range for this model
            raise ApiError(400, str(exc), code="invalid_option") from exc
        except Exception as exc:
            raise ApiError(500, f"generation failed: {type(exc).__name__}: {exc}", type_="server_error") from exc
        body_out = completion_body(reply, job, served, capture_requested=job.options.capture_attention)
        return JSONResponse(body_out)

    return app
