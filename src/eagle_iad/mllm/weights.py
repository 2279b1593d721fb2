"""What model a checkpoint folder holds, told apart cheaply: architecture, tokenizer, weights.

Why: a hybrid backend (``--mllm ENGINE --caas-mllm CAAS``, :mod:`eagle_iad.mllm.hybrid`) answers band inspections
with one model and all others with the other, so both must be the same model: with two different checkpoints the
band's answers (with CAAS) and the rest would come from different models, and nothing in the records would show it.
A folder's path says nothing (a copy, a hub snapshot, a vLLM server's ``root``), so the identity is read from the
files, independent of where they lie and when they were copied:

* ``model_type`` and ``config``: the checkpoint's ``config.json`` (its path-dependent keys left out);
* ``tokenizer``: per tokenizer or chat-template file present, its SHA-256 (another vocabulary or template is
  another prompt); two sides compare the files both have, since a partial download holds only some of them;
* ``weights``: per weight format (:data:`WEIGHT_FORMATS`), per model weight file its name and size and, up to
  :data:`FULL_HASH_BYTES` in all, the SHA-256 of its bytes; beyond that a safetensors file's header (every
  tensor's name, dtype, shape and offset) and :data:`SAMPLES` evenly spaced windows of its bytes, so two copies
  agree and a re-trained or fine-tuned checkpoint of the same shape differs, while a 15 GB model is read in a few
  MiB, not in minutes. Two sides compare the format both have (safetensors first): a folder holding
  ``pytorch_model.bin`` beside ``model.safetensors`` is the same model as a copy holding the safetensors only.
  Only the files a loader takes are weights (:func:`model_weights`): a trainer's files (``training_args.bin``,
  ``optimizer.pt``, ``rng_state.pth``, Accelerate's ``optimizer.bin``, ``scheduler.bin``) are not;
* ``version``: :data:`IDENTITY_VERSION`, so an ``eagle serve-mllm`` of another eagle version, whose identity is
  made otherwise, is said to be uncheckable instead of compared part by part.

Torch-free and read only; ``eagle serve-mllm`` lists the same identity in ``/v1/models`` (``eagle_model``) so a
hybrid whose engine is such a server is checked too.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from eagle_iad.file_hash import file_sha256

#: How :func:`model_identity` is made; raised whenever that changes, so identities made otherwise (an ``eagle
#: serve-mllm`` of another eagle version) are never compared part by part (:func:`uncheckable`).
IDENTITY_VERSION = 3
#: A checkpoint's weight formats, in the order two sides compare them (the first both hold): by file suffix.
#: ``.pt``/``.pth`` are not among them: transformers loads no model from them, a trainer leaves them
#: (``optimizer.pt``, ``scheduler.pt``, ``rng_state.pth``).
WEIGHT_FORMATS = (".safetensors", ".bin", ".gguf")
#: The file name a loader takes of each weight format (transformers' ``model.safetensors``, its shards
#: ``model-00001-of-00002.safetensors`` and variants ``model.fp16.safetensors``; ``pytorch_model.bin`` alike), or
#: None where any file of it is the model's (a GGUF). Why by name: a trainer writes files of the same suffixes
#: beside the model (``training_args.bin``, Accelerate's ``optimizer.bin``, ``scheduler.bin``, a second model's
#: ``model_1.safetensors``), which change while the weights loaded do not, or are no model at all.
LOADED_NAMES: dict[str, re.Pattern[str] | None] = {
    ".safetensors": re.compile(r"model(\.\w+)?(-\d+-of-\d+)?\.safetensors"),
    ".bin": re.compile(r"pytorch_model(\.\w+)?(-\d+-of-\d+)?\.bin"),
    ".gguf": None,
}
#: Tokenizer and chat-template files (what turns the same prompt into the same token ids).
TOKENIZER_FILES = (
    "tokenizer.json", "tokenizer_config.json", "vocab.json", "merges.txt", "tokenizer.model", "vocab.txt",
    "special_tokens_map.json", "added_tokens.json", "chat_template.jinja", "chat_template.json",
)  # fmt: skip
#: ``config.json`` keys that name where or with what a folder was written, not what model it holds.
VOLATILE_CONFIG_KEYS = frozenset({"_name_or_path", "transformers_version", "name_or_path", "_commit_hash"})
#: Up to this many weight bytes in all, every byte is hashed (a tiny or small model: well under a second).
FULL_HASH_BYTES = 64 * 2**20
#: Beyond it, this many evenly spaced windows of :data:`WINDOW_BYTES` per weight file are hashed.
SAMPLES = 16
WINDOW_BYTES = 64 * 2**10
#: The key of ``eagle serve-mllm``'s ``/v1/models`` entry that holds its model's :func:`model_identity`.
SERVED_IDENTITY_KEY = "eagle_model"
#: The parts of an identity, in the order a difference is told (the first ones explain the later ones).
PARTS = ("model_type", "config", "tokenizer", "weights")


def _digest(parts: list[str]) -> str:
    return "sha256:" + hashlib.sha256("\n".join(parts).encode()).hexdigest()[:16]


def _config(folder: Path) -> dict[str, Any]:
    try:
        data = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return {}
    return _stable(data) if isinstance(data, dict) else {}


def _stable(value: Any) -> Any:
    """``value`` without the volatile keys, at any depth (sub-configs carry them too)."""
    if isinstance(value, dict):
        return {k: _stable(v) for k, v in value.items() if k not in VOLATILE_CONFIG_KEYS}
    if isinstance(value, list):
        return [_stable(v) for v in value]
    return value


def _sampled(path: Path, size: int) -> str:
    """A safetensors header (if it is one) and :data:`SAMPLES` windows of ``path``'s bytes, hashed."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        if path.suffix == ".safetensors" and size >= 8:
            length = int.from_bytes(handle.read(8), "little")
            if 0 < length <= min(size - 8, 100 * 2**20):
                digest.update(handle.read(length))
        for index in range(SAMPLES):
            handle.seek(max(0, (size - WINDOW_BYTES) * index // max(1, SAMPLES - 1)))
            digest.update(handle.read(WINDOW_BYTES))
    return digest.hexdigest()[:16]


#: The index a loader reads for a sharded checkpoint, by its standard name: the shards it lists are loaded whatever
#: they are called.
LOADED_INDEX = re.compile(r"(model|pytorch_model)(\.\w+)?\.(safetensors|bin)\.index\.json")


def _indexed(files: list[Path], suffix: str) -> set[str]:
    """The shard names that a loaded index among ``files`` lists for ``suffix`` (its ``weight_map``'s values)."""
    named: set[str] = set()
    for path in files:
        if LOADED_INDEX.fullmatch(path.name) and path.name.endswith(f"{suffix}.index.json"):
            try:
                weight_map = json.loads(path.read_text(encoding="utf-8")).get("weight_map") or {}
                named.update(str(name) for name in weight_map.values())
            except (OSError, UnicodeDecodeError, ValueError, AttributeError, RecursionError):
                continue  # not an index a loader could read either
    return named


def model_weights(files: Iterable[Path], suffix: str) -> list[Path]:
    """The model's weight files of the format ``suffix`` (one of :data:`WEIGHT_FORMATS`) among ``files``: those a
    loader takes (:data:`LOADED_NAMES`, and the shards its index lists by other names), not a trainer's files of
    that suffix."""
    files = list(files)
    names, indexed = LOADED_NAMES[suffix], _indexed(files, suffix) if LOADED_NAMES[suffix] is not None else set()
    return [p for p in files
            if p.suffix == suffix and (names is None or names.fullmatch(p.name) or p.name in indexed)]  # fmt: skip


def loaded_format(files: Iterable[Path]) -> str | None:
    """The weight format a loader takes from a folder holding ``files``: the first of :data:`WEIGHT_FORMATS` it
    holds model weights of (transformers takes ``model.safetensors`` over ``pytorch_model.bin`` beside it), or
    None where it holds none."""
    names = list(files)
    return next((suffix for suffix in WEIGHT_FORMATS if model_weights(names, suffix)), None)


def model_identity(folder: str | Path) -> dict[str, Any] | None:
    """The identity of the checkpoint in ``folder`` (module text); None where it holds no ``config.json``."""
    folder = Path(folder)
    config = _config(folder)
    if not config:
        return None
    files = sorted(p for p in folder.iterdir() if p.is_file())
    tokenizer = {p.name: _digest([file_sha256(p)]) for p in files if p.name in TOKENIZER_FILES}
    weights: dict[str, str] = {}
    for suffix in WEIGHT_FORMATS:
        chosen = model_weights(files, suffix)
        sizes = {p: p.stat().st_size for p in chosen}
        full = sum(sizes.values()) <= FULL_HASH_BYTES
        parts = [f"{p.name}\0{sizes[p]}\0{file_sha256(p) if full else _sampled(p, sizes[p])}" for p in chosen]
        if parts:
            weights[suffix] = _digest(parts)
    return {
        "version": IDENTITY_VERSION,
        "model_type": str(config.get("model_type", "")),
        "config": _digest([json.dumps(config, sort_keys=True)]),
        "config_values": _flat(config),
        "tokenizer": tokenizer,
        "weights": weights or None,
    }


def _common_tokenizer(a: dict[str, Any], b: dict[str, Any]) -> list[str]:
    """The tokenizer files both identities name (a partial download holds only some)."""
    left, right = a.get("tokenizer"), b.get("tokenizer")
    return sorted(set(left) & set(right)) if isinstance(left, dict) and isinstance(right, dict) else []


def _common_format(a: dict[str, Any], b: dict[str, Any]) -> str | None:
    """The first of :data:`WEIGHT_FORMATS` both identities hold, or None."""
    left, right = a.get("weights"), b.get("weights")
    if not isinstance(left, dict) or not isinstance(right, dict):
        return None
    return next((suffix for suffix in WEIGHT_FORMATS if suffix in left and suffix in right), None)


def uncheckable(a: dict[str, Any], b: dict[str, Any]) -> str | None:
    """Why two identities cannot show the same model (in words), or None where every part can be compared.

    Why apart from :func:`identity_difference`: a side of another eagle version, or two sides with no weight format
    or tokenizer file in common, is no proof of another model, so it is warned about, never refused; a difference in
    the parts that can be compared is still refused first (:func:`eagle_iad.mllm.hybrid.check_same_model`).
    """
    if a.get("version") != b.get("version"):
        return (
            f"their identities are made by different eagle versions (identity version {a.get('version')!r} vs "
            f"{b.get('version')!r})"
        )
    if a.get("weights") and b.get("weights") and _common_format(a, b) is None:
        formats = [" ".join(sorted(side["weights"])) for side in (a, b)]
        return f"no weight format in common ({formats[0]} vs {formats[1]})"
    if a.get("tokenizer") and b.get("tokenizer") and not _common_tokenizer(a, b):
        names = [" ".join(sorted(side["tokenizer"])) for side in (a, b)]
        return f"no tokenizer file in common ({names[0]} vs {names[1]})"
    return None


def _flat(config: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """``config.json``'s scalar settings by dotted key (``text_config.hidden_size``): what a refusal names."""
    out: dict[str, Any] = {}
    for key, value in config.items():
        if isinstance(value, dict):
            out.update(_flat(value, f"{prefix}{key}."))
        elif not isinstance(value, list):
            out[f"{prefix}{key}"] = value
    return out


def identity_difference(a: dict[str, Any], b: dict[str, Any]) -> str | None:
    """What differs between two identities, in words (the first differing part, with the settings that differ
    for an architecture); None where they are the same model. A part unknown on either side (a server that lists
    only some parts) is not compared; the tokenizer is compared on the files both name, the weights in the first
    format both hold (what cannot be compared so: :func:`uncheckable`)."""
    for part in PARTS:
        left, right = a.get(part), b.get(part)
        if part == "tokenizer" and isinstance(left, dict) and isinstance(right, dict):
            common = _common_tokenizer(a, b)
            left, right = [left[n] for n in common] or None, [right[n] for n in common] or None
        elif part == "weights" and isinstance(left, dict) and isinstance(right, dict):
            suffix = _common_format(a, b)
            left, right = (None, None) if suffix is None else (left[suffix], right[suffix])
        if left is None or right is None or left == right:
            continue
        if part == "model_type":
            return f"model types differ ({left!r} vs {right!r})"
        if part == "config":
            va, vb = a.get("config_values") or {}, b.get("config_values") or {}
            keys = sorted(k for k in set(va) | set(vb) if va.get(k) != vb.get(k))
            shown = ", ".join(f"{k} {va.get(k)!r} vs {vb.get(k)!r}" for k in keys[:4])
            more = f" and {len(keys) - 4} more" if len(keys) > 4 else ""
            return f"architectures differ (config.json{': ' + shown + more if keys else ''})"
        if part == "tokenizer":
            return "tokenizers or chat templates differ (the same prompt would be other token ids)"
        return "weights differ (same architecture and tokenizer: another checkpoint, a fine-tune or another seed)"
    return None


def local_folder(target: str) -> Path | None:
    """The checkpoint folder behind an ``hf:`` target: the folder itself, or the hub cache's snapshot of a hub id
    (no network); None where neither is on this machine."""
    folder = Path(target).expanduser()
    if folder.is_dir():
        return folder
    try:
        from huggingface_hub import try_to_load_from_cache

        found = try_to_load_from_cache(target, "config.json")
    except Exception:  # an id the hub library refuses is simply not a cached model
        return None
    return Path(found).parent if isinstance(found, str) else None
