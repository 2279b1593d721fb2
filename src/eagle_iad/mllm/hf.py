"""In-process transformers backend (``hf:<hub id or local path>``).

One backend instance holds one model and its processor and serves concurrent requests: all
per-request state (CAAS span/layers/alpha, attention capture) lives in the context variable of
:mod:`eagle_iad.mllm.caas`, never on the model. The language model runs with the CAAS attention
function (``eagle_caas``: SDPA outside the selected layers, or ``eagle_caas_eager`` for bit-exact
eager everywhere); the vision tower keeps its own implementation (``vision_attention``).

Content items become one user turn of the family's chat template, applied by the processor, so the
prompt is exactly what the checkpoint was trained with. Image spans (each image's visual tokens, possibly
several ranges) are found from the token ids by the model family (:mod:`eagle_iad.mllm.families`).
Weights are read from a local directory, the local Hugging Face cache or the hub. Offline, a hub id fails
at once with one line saying what to do, never after huggingface_hub's half-minute of retries:
``EAGLE_OFFLINE`` (like ``HF_HUB_OFFLINE``) means the cache only, and otherwise a hub that cannot be
reached (one TCP connection, :func:`hub_unreachable`) means the cache only too (see :func:`quiet_hub_retries`).

A checkpoint that cannot answer right is refused at load in one line, never left to answer noise or to fail
with a traceback at the first prompt: a local path that is a file or a folder without ``config.json``, a
model type no family knows, a processor without a tokenizer that knows the image token or without a chat
template (:func:`check_model_folder`, :func:`check_processor`; ``eagle eval`` runs them before its run folder
is written), and weights that do not fill the model (:func:`weights_problem`: transformers would initialise
the missing ones at random and only print a report).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import numpy as np
import torch
from PIL import Image

from eagle_iad.errors import ConfigError
from eagle_iad.mllm.attention import image_beyond_window, sliding_window_record
from eagle_iad.mllm.base import (
    HYBRID_SCHEME,
    RANDOM_MODEL_NOTE,
    AttentionCapture,
    BackendSpec,
    GenerateOptions,
    Reply,
    parse_spec,
    register_backend,
)
from eagle_iad.mllm.caas import (
    CAAS_ATTENTION,
    CAAS_ATTENTION_EAGER,
    AttentionRequest,
    CaasSettings,
    attention_request,
    default_caas_layers,
    register_caas_attention,
)
from eagle_iad.mllm.families import Family, family_for
from eagle_iad.mllm.families.base import ImageSpans, image_spans, positions, read_template_kwargs
from eagle_iad.naming import plural
from eagle_iad.tgps.prompt import ContentItem, ImageItem, TextItem


@dataclass
class Prepared:
    """A tokenised prompt with its image spans; ``query_index`` is the query image's position."""

    inputs: Any
    input_ids: list[int]
    images: ImageSpans
    query_index: int | None
    text: str
    sizes: list[tuple[int, int]]


#: ``layer_types`` entries of layers that compute softmax attention (what CAAS scales and capture reads);
#: hybrid language models mark their other layers differently ("linear_attention", "mamba", ...).
ATTENTION_LAYER_TYPES = frozenset({"full_attention", "sliding_attention", "chunked_attention"})


def attention_layers(text_config: Any) -> tuple[int, ...]:
    """The decoder layers with softmax attention: all of them, unless ``layer_types`` says otherwise."""
    layers = int(text_config.num_hidden_layers)
    types = getattr(text_config, "layer_types", None)
    if not types:
        return tuple(range(layers))
    return tuple(index for index, kind in enumerate(types[:layers]) if kind in ATTENTION_LAYER_TYPES)


def sliding_window_layers(text_config: Any) -> dict[int, int]:
    """``{layer: window}`` of the decoder layers whose attention is a sliding window (Gemma 3's five in six).

    Why the backend says so: such a layer's token sees only the last ``window`` keys, so when the prompt
    puts the image further back than that, its image attention is nothing by construction. Said with each
    capture where the image lies beyond the window (``metadata["sliding_window"]``,
    :func:`eagle_iad.mllm.attention.image_beyond_window`), a flat overlay or a share of 0 there is read as the window,
    never as a model that ignored the image (docs/MLLM.md, "Attention analysis").
    """
    types = getattr(text_config, "layer_types", None) or []
    window = getattr(text_config, "sliding_window", None)
    if not window:
        return {}
    layers = int(text_config.num_hidden_layers)
    return {index: int(window) for index, kind in enumerate(types[:layers]) if kind == "sliding_attention"}


#: The variable that keeps eagle off the network (also for the expert's backbone weights, expert/backbones.py).
EAGLE_OFFLINE_ENV = "EAGLE_OFFLINE"
#: Seconds the one connection to the hub may take before the hub counts as unreachable.
HUB_PROBE_TIMEOUT_S = 3.0
_PROXY_VARIABLES = ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy")


def _set(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() not in ("", "0", "false", "no", "off")


def offline_reason() -> str | None:
    """Why no download may be tried (``EAGLE_OFFLINE``, ``HF_HUB_OFFLINE`` or ``TRANSFORMERS_OFFLINE`` set),
    or ``None``. Read on every load, not at import as huggingface_hub reads its own: passed on as
    ``local_files_only``, so a hub id not in the cache fails at once."""
    if os.environ.get(EAGLE_OFFLINE_ENV):  # any value, as for the backbone weights (expert/backbones.py)
        return f"{EAGLE_OFFLINE_ENV} is set, so no download was tried"
    for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
        if _set(name):
            return f"{name} is set, so no download was tried"
    return None


def hub_endpoint() -> str:
    """The hub transformers downloads from (``HF_ENDPOINT``, else huggingface.co)."""
    from huggingface_hub import constants

    return str(constants.ENDPOINT)


def hub_unreachable(endpoint: str | None = None, timeout_s: float = HUB_PROBE_TIMEOUT_S) -> str | None:
    """Why the hub cannot be reached (no name resolution, no route, refused, no answer in ``timeout_s``),
    or ``None`` when a TCP connection to it opens, or when a proxy is configured (only a request through
    it could tell). One connection, a few seconds at most where the retries would take half a minute."""
    if any(os.environ.get(name) for name in _PROXY_VARIABLES):
        return None
    url = endpoint or hub_endpoint()
    parts = urlsplit(url)
    host = parts.hostname
    if not host:
        return None
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            return None
    except OSError as exc:  # socket.gaierror (no DNS), refused, unreachable, timeout
        return f"the hub {url} cannot be reached ({one_line(str(exc) or type(exc).__name__)})"


class _OneRetryLine(logging.Filter):
    """Keeps the first of huggingface_hub's retry warnings and drops the rest (each retry prints two lines)."""

    def __init__(self) -> None:
        super().__init__()
        self.seen = False

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if message.startswith(("Retrying in", "Rate limited.")):
            return False
        if "thrown while requesting" in message:
            if self.seen:
                return False
            self.seen = True
        return True


@contextlib.contextmanager
def quiet_hub_retries() -> Iterator[None]:
    """While loading: one line for huggingface_hub's retries instead of two per try (ten lines, 30 s)."""
    logger = logging.getLogger("huggingface_hub.utils._http")
    one = _OneRetryLine()
    logger.addFilter(one)
    try:
        yield
    finally:
        logger.removeFilter(one)


class _NoLoadReport(logging.Filter):
    """Drops transformers' multi-line LOAD REPORT table (missing/unexpected/mismatched weights): the load
    refuses such weights itself, in one line (:func:`weights_problem`)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "LOAD REPORT" not in record.getMessage()


@contextlib.contextmanager
def quiet_load_report() -> Iterator[None]:
    """While loading weights: no LOAD REPORT table on stderr (the refusal says what it would)."""
    logger = logging.getLogger("transformers.modeling_utils")
    quiet = _NoLoadReport()
    logger.addFilter(quiet)
    try:
        yield
    finally:
        logger.removeFilter(quiet)


def one_line(text: str) -> str:
    """A library's multi-line message as one line (the CLI would print its newlines as a literal ``\\n``)."""
    return " ".join(part.strip() for part in text.splitlines() if part.strip())


def load_error(ref: str, is_local: bool, local_files_only: bool, offline: str | None, exc: BaseException) -> str:
    """The one line a failed load gives: what could not be loaded, why, and the way out."""
    if is_local:
        return f"cannot load MLLM {ref!r} as a directory: {one_line(str(exc))}"
    if local_files_only and offline is not None:
        from huggingface_hub import constants

        fast = "" if offline.endswith("no download was tried") else (
            f"; set {EAGLE_OFFLINE_ENV}=1 (or HF_HUB_OFFLINE=1) to use the cache without trying the network"
        )  # fmt: skip
        return (
            f"cannot load MLLM {ref!r}: it is not in the local Hugging Face cache ({constants.HF_HUB_CACHE}) "
            f"and {offline}; give a local model folder (--mllm hf:/path/to/model) or download it on a connected "
            f"machine (hf download {ref}){fast}"
        )
    return (
        f"cannot load MLLM {ref!r} as a Hugging Face hub id: {one_line(str(exc))} (a local model folder is "
        f"--mllm hf:/path/to/model; {EAGLE_OFFLINE_ENV}=1 or HF_HUB_OFFLINE=1 use the cache without the network)"
    )


#: A model folder's files by what they hold, named when a load finds that part missing (either file of a pair
#: may hold it: transformers 5 writes ``processor_config.json``, older checkpoints ``preprocessor_config.json``).
PROCESSOR_FILES = ("preprocessor_config.json", "processor_config.json")
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json")
CHAT_TEMPLATE_FILES = ("chat_template.jinja", "chat_template.json")
#: How many weight names a refusal quotes (a truncated checkpoint may lack thousands).
QUOTED_WEIGHTS = 3


def _absent(folder: Path | None, names: Sequence[str]) -> list[str]:
    return [] if folder is None else [name for name in names if not (folder / name).is_file()]


def check_model_folder(ref: str) -> None:
    """Refuse a local ``hf:`` path that is no model folder, before anything is loaded (one line each): a file
    (the weights file given for its folder), a folder without a readable ``config.json`` naming a
    ``model_type``, a type no family handles (the families and ``EAGLE_PLUGINS`` named), no image processor
    settings. A hub id (no such path) is left to the loader."""
    path = Path(ref).expanduser()
    if path.is_file():
        raise ConfigError(
            f"cannot load MLLM {ref!r}: it is a file; give the model folder that holds it (--mllm hf:{path.parent})"
        )
    if not path.is_dir():
        return
    try:
        text = (path / "config.json").read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"cannot load MLLM {ref!r}: not a model folder (no config.json)") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot load MLLM {ref!r}: cannot read its config.json ({one_line(str(exc))})") from exc
    try:
        config = json.loads(text)
    except json.JSONDecodeError:
        raise ConfigError(
            f"cannot load MLLM {ref!r}: not a model folder (its config.json is empty or not JSON)"
        ) from None
    model_type = config.get("model_type") if isinstance(config, dict) else None
    if not isinstance(model_type, str) or not model_type:
        raise ConfigError(f"cannot load MLLM {ref!r}: not a model folder (its config.json names no model_type)")
    try:
        family_for(model_type)
    except ConfigError as exc:
        raise ConfigError(f"cannot load MLLM {ref!r}: {exc}") from None
    if len(_absent(path, PROCESSOR_FILES)) == len(PROCESSOR_FILES):
        raise ConfigError(
            f"cannot load MLLM {ref!r}: the folder lacks its image processor's settings "
            f"({' or '.join(PROCESSOR_FILES)})"
        )


def check_processor(ref: str, family: Family, config: Any, processor: Any, folder: Path | None) -> None:
    """Refuse a processor that could not lay out a prompt the checkpoint's way: no tokenizer knowing the
    family's image token (without tokenizer files transformers builds an empty one, and the first prompt
    fails with "Mismatch in image token count"), or no chat template (``apply_chat_template`` fails)."""
    tokenizer: Any = getattr(processor, "tokenizer", None)
    image_id = family.image_token_id(config)
    token = getattr(processor, "image_token", None)
    known = tokenizer is not None and 0 <= image_id < len(tokenizer)
    if known and tokenizer.convert_ids_to_tokens(image_id) in (None, tokenizer.unk_token):
        known = False
    if known and isinstance(token, str) and tokenizer.convert_tokens_to_ids(token) in (None, tokenizer.unk_token_id):
        known = False
    if not known:
        absent = _absent(folder, TOKENIZER_FILES)
        where = f": the folder lacks {' and '.join(absent)}" if absent else ""
        shown = f"{token!r} (id {image_id})" if isinstance(token, str) else f"id {image_id}"
        raise ConfigError(
            f"cannot load MLLM {ref!r}: its tokenizer does not know the image token {shown}{where}; "
            "no prompt could place an image"
        )
    if not getattr(processor, "chat_template", None):
        names = " or ".join(CHAT_TEMPLATE_FILES)
        raise ConfigError(
            f"cannot load MLLM {ref!r}: it has no chat template ({names}); the prompt could not be laid out "
            "as the checkpoint was trained"
        )


def _names(keys: Sequence[str]) -> str:
    shown = ", ".join(keys[:QUOTED_WEIGHTS])
    return shown + (", ..." if len(keys) > QUOTED_WEIGHTS else "")


def weights_problem(ref: str, info: Mapping[str, Any], total: int) -> str | None:
    """Why the loaded weights cannot be trusted, from transformers' loading info, or ``None``.

    transformers already leaves out of ``missing_keys`` the weights it ties (``lm_head`` to the embeddings)
    or ignores by design (``_keys_to_ignore_on_load_missing``), and out of ``unexpected_keys`` the ones a
    class ignores (``_keys_to_ignore_on_load_unexpected``); what is left would be random (missing), or is a
    checkpoint laid out for another class (unexpected, with as many missing: a checkpoint type registered
    without its parent's key mapping), or of other shapes (mismatched). Unexpected weights alone are no
    refusal (:func:`weights_warning`)."""
    missing = sorted(str(key) for key in info.get("missing_keys") or ())
    unexpected = sorted(str(key) for key in info.get("unexpected_keys") or ())
    mismatched = sorted(str(key[0] if isinstance(key, tuple) else key) for key in info.get("mismatched_keys") or ())
    if missing and unexpected:
        return (
            f"{ref}: the checkpoint's weights are laid out for another model class: {len(missing)} of the model's "
            f"{total} weights are not in it ({_names(missing)}) and {len(unexpected)} of its weights have no place "
            f"in the model ({_names(unexpected)}); a checkpoint type registered without its parent's key mapping "
            '(README, "Adding an MLLM family") or a mismatched checkpoint'
        )
    if missing:
        return (
            f"{ref}: the checkpoint lacks {len(missing)} of the model's {total} weights ({_names(missing)}); "
            "they would be random: a truncated or mismatched checkpoint"
        )
    if mismatched:
        return (
            f"{ref}: {len(mismatched)} of the checkpoint's weights have other shapes than the model's "
            f"({_names(mismatched)}): a mismatched checkpoint"
        )
    return None


def weights_warning(ref: str, info: Mapping[str, Any]) -> str | None:
    """What to say of weights the checkpoint holds and the model does not use, when nothing is missing: not a
    refusal, since every weight the model needs came from the file (real checkpoints can carry extras a class does
    not declare ignorable: another head, an older buffer), but said, as they may mean a checkpoint of a near
    relative. ``None`` when there are none, or when :func:`weights_problem` refuses anyway."""
    unexpected = sorted(str(key) for key in info.get("unexpected_keys") or ())
    if not unexpected or info.get("missing_keys"):
        return None
    return (
        f"{ref}: the checkpoint holds {plural(len(unexpected), 'weight')} the model does not use "
        f"({_names(unexpected)}); every weight it needs came from the file, so it runs: check this is the "
        "checkpoint you meant"
    )


def check_spec(spec: str) -> None:
    """The cheap load checks of every local ``hf:`` folder in an ``--mllm`` spec (a hybrid's too): folder,
    family, processor, tokenizer, chat template; no weights read. ``eagle eval`` runs it before its run
    folder is written, so such a folder leaves nothing behind."""
    parsed = parse_spec(spec)
    if parsed.scheme == HYBRID_SCHEME:
        check_spec(parsed.target)
        check_spec(str(parsed.model))
        return
    path = Path(parsed.target).expanduser()
    if parsed.scheme != "hf" or not (path.is_dir() or path.is_file()):
        return
    check_model_folder(parsed.target)
    from transformers import AutoConfig

    try:
        config = AutoConfig.from_pretrained(str(path), local_files_only=True)
        family = family_for(config.model_type)
        processor = family.load_processor(str(path), local_files_only=True)
    except (OSError, ValueError) as exc:
        raise ConfigError(processor_error(parsed.target, path, exc)) from exc
    check_processor(parsed.target, family, config, processor, path)


def processor_error(ref: str, folder: Path | None, exc: BaseException) -> str:
    """A local folder's failed config or processor load, naming the files it lacks (transformers' own message
    sends a newcomer to huggingface.co)."""
    absent = _absent(folder, TOKENIZER_FILES)
    if folder is not None and absent:
        return f"cannot load MLLM {ref!r}: the folder lacks {' and '.join(absent)} ({one_line(str(exc))})"
    return f"cannot load MLLM {ref!r} as a directory: {one_line(str(exc))}"


def _default_device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


def _messages(items: Sequence[ContentItem]) -> list[dict[str, Any]]:
    content: list[dict[str, str]] = []
    for item in items:
        if isinstance(item, TextItem):
            content.append({"type": "text", "text": item.text})
        else:
            content.append({"type": "image"})
    return [{"role": "user", "content": content}]


def _to_pil(ref: str, images: Mapping[str, np.ndarray]) -> Image.Image:
    if ref not in images:
        raise ConfigError(f"no image supplied for prompt reference {ref!r}")
    arr = np.asarray(images[ref])
    if arr.ndim != 3 or arr.shape[2] != 3 or arr.dtype != np.uint8:
        raise ConfigError(f"image {ref!r} must be an RGB uint8 array of shape (H, W, 3), got {arr.shape} {arr.dtype}")
    return Image.fromarray(arr)


class HFBackend:
    """A transformers image-text-to-text model with CAAS and attention capture."""

    def __init__(
        self,
        model: str | os.PathLike[str],
        *,
        device: str | None = None,
        dtype: torch.dtype | None = None,
        exact_eager: bool = False,
        vision_attention: str = "sdpa",
        local_files_only: bool | None = None,
    ) -> None:
        from transformers import AutoConfig, AutoModelForImageTextToText

        register_caas_attention()
        self.model_ref = str(model)
        self.device = device or _default_device()
        self.dtype = dtype or (torch.bfloat16 if self.device.startswith("cuda") else torch.float32)
        check_model_folder(self.model_ref)
        is_local = Path(self.model_ref).expanduser().is_dir()
        if not is_local and self.model_ref.startswith(("/", "./", "../", "~")):
            raise ConfigError(f"cannot load MLLM {self.model_ref!r}: no such model directory")
        if is_local:
            self.model_ref = str(Path(self.model_ref).expanduser())
        offline = None if is_local else offline_reason()
        if local_files_only is None:
            local_files_only = is_local or offline is not None
        if not local_files_only:
            offline = hub_unreachable()  # a hub id, the network allowed: is the hub there at all?
            local_files_only = offline is not None  # if not, the cache is all there is (at once, no retries)
        folder = Path(self.model_ref) if is_local else None
        try:
            with quiet_hub_retries(), quiet_load_report():
                config = AutoConfig.from_pretrained(self.model_ref, local_files_only=local_files_only)
                self.family: Family = family_for(config.model_type)
                try:
                    self.processor = self.family.load_processor(self.model_ref, local_files_only=local_files_only)
                except (OSError, ValueError) as exc:
                    if folder is None:
                        raise
                    raise ConfigError(processor_error(self.model_ref, folder, exc)) from exc
                check_processor(self.model_ref, self.family, config, self.processor, folder)
                self.text_attention = CAAS_ATTENTION_EAGER if exact_eager else CAAS_ATTENTION
                loaded, info = AutoModelForImageTextToText.from_pretrained(
                    self.model_ref,
                    dtype=self.dtype,
                    attn_implementation={"text_config": self.text_attention, "vision_config": vision_attention},
                    local_files_only=local_files_only,
                    output_loading_info=True,
                    ignore_mismatched_sizes=True,  # refused below, naming them, not with a RuntimeError
                )
        except (OSError, ValueError) as exc:
            raise ConfigError(load_error(self.model_ref, is_local, local_files_only, offline, exc)) from exc
        problem = weights_problem(self.name, info, len(loaded.state_dict()))
        if problem is not None:
            raise ConfigError(problem)
        self.model = loaded.to(self.device)
        self.model.eval()
        self.config = self.model.config
        #: Said once on load by the commands (``eagle: warning: ...``); a random test model also marks each reply.
        self.warnings: list[str] = []
        if (extra := weights_warning(self.name, info)) is not None:
            self.warnings.append(extra)
        self.random_test_model = is_local and (Path(self.model_ref) / RANDOM_MODEL_NOTE).is_file()
        if self.random_test_model:
            self.warnings.append(
                f"{self.model_ref} is a tiny random test model ({RANDOM_MODEL_NOTE}): its answers are random "
                "noise, never a verdict on an image; give a real checkpoint for real answers"
            )
        self.num_layers = int(self.config.get_text_config().num_hidden_layers)
        self.attention_layers = attention_layers(self.config.get_text_config())
        #: ``{layer: window}`` of its sliding-window layers (:func:`sliding_window_layers`); empty for most models.
        self.sliding_layers = sliding_window_layers(self.config.get_text_config())
        self._check_attention_dispatch()

    def _check_attention_dispatch(self) -> None:
        """Fail at load, not silently at inference, if CAAS could not reach every attention layer."""
        text_impl = self.config.get_text_config()._attn_implementation
        if text_impl != self.text_attention:
            raise ConfigError(
                f"{self.model_ref}: the language model uses attention {text_impl!r}, not {self.text_attention!r}; "
                "this model does not follow transformers' attention-function API, so CAAS cannot be applied"
            )
        indices = {
            getattr(module, "layer_idx", None)
            for module in self.model.modules()
            if getattr(module, "is_causal", False) and hasattr(module, "q_proj")
        }
        if not set(self.attention_layers) <= indices:
            missing = sorted(set(self.attention_layers) - indices)
            raise ConfigError(f"{self.model_ref}: decoder attention modules do not expose layer_idx {missing}")

    @property
    def name(self) -> str:
        return f"hf:{self.model_ref}"

    def resolve_layers(self, settings: CaasSettings) -> tuple[int, ...]:
        """Explicit layers (validated) or the model's default band."""
        layers = settings.layers
        if layers is None:
            hybrid = None if len(self.attention_layers) == self.num_layers else self.attention_layers
            layers = default_caas_layers(self.num_layers, self.config.model_type, hybrid)
        bad = [layer for layer in layers if layer >= self.num_layers]
        if bad:
            raise ConfigError(f"CAAS layers {bad} out of range for a {self.num_layers}-layer language model")
        linear = [layer for layer in layers if layer not in self.attention_layers]
        if linear:
            raise ConfigError(
                f"CAAS layers {linear} compute linear attention (no attention logits to scale); "
                f"this model's attention layers are {list(self.attention_layers)}"
            )
        return tuple(sorted(set(layers)))

    def prepare(self, items: Sequence[ContentItem], images: Mapping[str, np.ndarray]) -> Prepared:
        """Chat template + processor; locate every image's visual tokens (the query's by its item index)."""
        image_items = [item for item in items if isinstance(item, ImageItem)]
        pil = [_to_pil(item.ref, images) for item in image_items]
        text = self.processor.apply_chat_template(
            _messages(items),
            add_generation_prompt=True,
            tokenize=False,
            **read_template_kwargs(self.processor, self.family.chat_template_kwargs),
        )
        inputs = self.processor(text=[text], images=pil or None, return_tensors="pt")
        input_ids = [int(i) for i in inputs["input_ids"][0].tolist()]
        spans = image_spans(self.family, self.config, self.processor, inputs, input_ids, len(image_items))
        queries = [index for index, item in enumerate(image_items) if item.role == "query"]
        if len(queries) > 1:
            raise ConfigError("a prompt may contain at most one query image")
        sizes = [(image.height, image.width) for image in pil]
        return Prepared(inputs, input_ids, spans, queries[0] if queries else None, text, sizes)

    def _request(self, prepared: Prepared, options: GenerateOptions) -> AttentionRequest:
        span = None if prepared.query_index is None else prepared.images.spans[prepared.query_index]
        if (options.caas is not None or options.capture_attention) and span is None:
            raise ConfigError("CAAS and attention capture need a query image in the prompt")
        request = AttentionRequest(span=span, prompt_length=len(prepared.input_ids), capture=options.capture_attention)
        if options.caas is not None:
            request.layers = frozenset(self.resolve_layers(options.caas))
            request.alpha = float(options.caas.alpha)
            request.phase = options.caas.phase
        return request

    def generate(
        self, items: Sequence[ContentItem], images: Mapping[str, np.ndarray], options: GenerateOptions
    ) -> Reply:
        reply, _ = self.generate_with_logits(items, images, options)
        return reply

    def generate_with_logits(
        self, items: Sequence[ContentItem], images: Mapping[str, np.ndarray], options: GenerateOptions
    ) -> tuple[Reply, torch.Tensor]:
        """Greedy generation; also returns the per-step logits ``(steps, vocab)`` (for exactness checks)."""
        start = time.perf_counter()
        prepared = self.prepare(items, images)
        request = self._request(prepared, options)
        inputs = prepared.inputs.to(self.device)
        prepared_s = time.perf_counter() - start
        tokenizer = self.processor.tokenizer
        with torch.inference_mode(), attention_request(request):
            out = self.model.generate(
                **inputs,
                max_new_tokens=options.max_new_tokens,
                do_sample=False,
                num_beams=1,
                return_dict_in_generate=True,
                output_logits=True,
                pad_token_id=tokenizer.pad_token_id,
            )
        generated = [int(i) for i in out.sequences[0, len(prepared.input_ids) :].tolist()]
        decoded = len(generated) > 1  # the first token comes from the prefill; any further one from a decode step
        expect_scaling = options.caas is not None and request.span is not None and (request.phase == "all" or decoded)
        if expect_scaling and request.scaled_layers != request.layers:
            missing = sorted(request.layers - request.scaled_layers)
            raise RuntimeError(f"CAAS was not applied in layers {missing}; the attention dispatch is broken")
        logits = torch.stack([step[0] for step in out.logits]).float().cpu()
        total_s = time.perf_counter() - start
        reply = Reply(
            text=tokenizer.decode(generated, skip_special_tokens=True),
            token_ids=generated,
            timings={"prepare_s": prepared_s, "generate_s": total_s - prepared_s, "total_s": total_s},
            caas_applied=options.caas is not None and bool(request.scaled_layers),
            caas_settings=self._caas_record(request) if options.caas is not None else None,
            attention=self._capture(prepared, request) if options.capture_attention else None,
            metadata={
                "backend": self.name,
                "family": self.family.name,
                "prompt_tokens": len(prepared.input_ids),
                "image_spans": [[list(pair) for pair in span] for span in prepared.images.spans],
                "text_attention": self.text_attention,
                "finish_reason": self._finish_reason(generated, options.max_new_tokens),
            },
        )
        if self.random_test_model:
            reply.metadata["random_test_model"] = True  # its answer is noise (docs/MLLM.md)
        if options.caas is not None and not request.scaled_layers:
            reply.metadata["caas_not_applied"] = "not applied (phase decode: the answer ended before a decoding step)"
        if options.capture_attention and self.sliding_layers and request.span is not None:
            # the layers whose window ends after the image's first token: their image attention is local, said so
            distance = len(prepared.input_ids) - min(start for start, _ in request.span)
            beyond = image_beyond_window(self.sliding_layers, distance)
            if beyond:
                reply.metadata["sliding_window"] = sliding_window_record(beyond, distance)
        if options.capture_attention and reply.attention is None:
            reply.metadata["attention_note"] = "no decode step ran (one generated token), so nothing was captured"
        return reply, logits

    def _finish_reason(self, generated: list[int], max_new_tokens: int) -> str:
        """OpenAI's vocabulary: ``stop`` when an end-of-sequence token ended it, ``length`` at the cap."""
        eos = self.model.generation_config.eos_token_id
        eos_ids = set() if eos is None else {int(eos)} if isinstance(eos, int) else {int(i) for i in eos}
        if generated and generated[-1] in eos_ids:
            return "stop"
        return "length" if len(generated) >= max_new_tokens else "stop"

    def _caas_record(self, request: AttentionRequest) -> dict[str, Any]:
        return {
            "alpha": request.alpha,
            "phase": request.phase,
            "layers": sorted(request.layers),
            "scaled_layers": sorted(request.scaled_layers),
            "span": None if request.span is None else [list(pair) for pair in request.span],
        }

    def _capture(self, prepared: Prepared, request: AttentionRequest) -> AttentionCapture | None:
        if not request.captured or request.span is None or prepared.query_index is None:
            return None  # no decode step ran (a single generated token): nothing to capture
        image = prepared.images.images[prepared.query_index]
        on_grid = torch.tensor(positions(image.grid_ranges), dtype=torch.long)
        everywhere = torch.tensor(positions(image.ranges), dtype=torch.long)
        # Grid tokens in grid order for the map; the share counts every visual token of the image.
        per_layer = {layer: row[on_grid].numpy().astype(np.float32) for layer, row in request.captured.items()}
        share = {layer: float(row[everywhere].sum()) for layer, row in request.captured.items()}
        height, width = prepared.sizes[prepared.query_index]
        coverage = self.family.grid_coverage(height, width)
        return AttentionCapture(image.ranges, image.grid, per_layer, share, coverage)


@register_backend("hf")
def _hf_factory(spec: BackendSpec, **options: Any) -> HFBackend:
    return HFBackend(spec.target, **options)
