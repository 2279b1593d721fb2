"""What an ``eagle eval`` run's records were made with, beyond its configuration: the experts and the MLLM weights.

Why: ``run.json``'s configuration names the ``--models`` folder and the ``--mllm`` spec, not what is in
them. A refit, an ``eagle threshold`` or other weights under the same path would otherwise be resumed
silently, and one run would hold records of two models (and a report showing a tau some records were not
made with). So the run also records an identity, and a resumed run with records is refused when it changed:

* an expert: the SHA-256 of its ``model.json`` (the key the run's expert cache uses: a refit or a
  threshold change is another model);
* the MLLM (:func:`mllm_fingerprint`): for an ``hf:`` folder (a local one, or the hub cache's snapshot of
  a hub id) a hash of what the model loads (:func:`folder_fingerprint`): its configuration
  (:data:`CONFIG_FILES`), tokenizer and chat-template files, and the weight files of the format a loader takes
  with their index (their bytes when they are small, the hub cache's content hash when they are cached blobs,
  else their size and modification time), never a trainer's files beside them (``optimizer.pt``,
  ``training_args.bin``, ``rng_state.pth``, Accelerate's ``optimizer.bin``, ``scheduler.bin``,
  ``random_states_0.pkl``: a checkpoint folder a training run goes on writing); versioned
  (:data:`FINGERPRINT_VERSION`), so a run recorded by an older eagle is resumed with a warning, not refused as
  other weights (:func:`older_fingerprint`); for an
  ``openai:`` server the entry its ``/v1/models`` lists for the model (id and, where the server says,
  the weights' path); ``None`` where nothing can be known (a plugin backend, a hub id not yet downloaded, a
  model the server answers for but does not list under that id: an Ollama tag, a LiteLLM alias).
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from eagle_iad.file_hash import file_sha256

#: How :func:`folder_fingerprint` is made, written into it (``v2:sha256:…``); raised whenever what it hashes
#: changes, so that a fingerprint made otherwise is never taken for other weights (:func:`older_fingerprint`).
#: 1 (no ``v…:``): every ``.safetensors``/``.bin``/``.pt``/``.pth``/``.gguf`` file, a trainer's included, and
#: ``config.json`` and the weight indexes; 2: what the model loads, but every ``.bin`` beside ``.bin`` weights
#: (Accelerate's ``optimizer.bin``, ``scheduler.bin``) counted as weights; 3: the weight files (and indexes) of
#: the names a loader takes (:data:`~eagle_iad.mllm.weights.LOADED_NAMES`).
FINGERPRINT_VERSION = 3
#: The configuration files a model's load reads beside ``config.json`` (generation defaults, the image
#: processor's settings): another value is another model's answers.
CONFIG_FILES = ("config.json", "generation_config.json", "preprocessor_config.json", "processor_config.json")
#: Up to this many bytes of weights in all, their bytes are hashed (a tiny or small model: a second or less).
CHEAP_BYTES = 256 * 2**20
#: A folder's fingerprint, of any version (version 1 has no ``v…:``).
_FOLDER_FINGERPRINT = re.compile(r"(?:v(\d+):)?sha256:[0-9a-f]{16}")
#: How long the ``openai:`` server is given to list its models.
MODELS_TIMEOUT_S = 15.0


def model_identities(models_dir: Path, categories: Iterable[str]) -> dict[str, str]:
    """``{category: SHA-256 of models_dir/<category>/model.json}`` (the expert cache's model key)."""
    from eagle_iad.expert.store import MANIFEST

    return {category: file_sha256(Path(models_dir) / category / MANIFEST) for category in sorted(categories)}


def _blob_name(path: Path) -> str | None:
    """The hub cache's content hash of a snapshot file (a symlink to ``blobs/<hash>``); None for a plain file."""
    if not path.is_symlink():
        return None
    target = path.resolve()
    return target.name if target.parent.name == "blobs" else None


def folder_fingerprint(folder: Path) -> str | None:
    """A hash of what the MLLM in ``folder`` loads (see the module text); None without any weights.

    Why not every weight-like file: a checkpoint folder of a training run holds the trainer's files beside the
    model (``optimizer.pt``, ``scheduler.pt``, ``rng_state.pth``, ``training_args.bin``, Accelerate's
    ``optimizer.bin``, ``scheduler.bin``), which change while the model's weights do not, and a resume was
    refused as "other weights". The weights (and their index) are those
    :mod:`eagle_iad.mllm.weights` takes for the model's (:func:`~eagle_iad.mllm.weights.loaded_format`), in the
    format the loader takes; the tokenizer and chat template are hashed too (another prompt's token ids)."""
    from eagle_iad.mllm.weights import TOKENIZER_FILES, loaded_format, model_weights

    files = sorted(p for p in Path(folder).iterdir() if p.is_file())
    suffix = loaded_format(files)
    if suffix is None:
        return None
    weights = model_weights(files, suffix)
    cheap = sum(p.stat().st_size for p in weights) <= CHEAP_BYTES
    digest = hashlib.sha256()
    for path in files:
        if path.name in CONFIG_FILES or path.name in TOKENIZER_FILES or _weights_index(path, suffix):
            part = file_sha256(path)
        elif path in weights:
            stat = path.stat()
            part = (file_sha256(path) if cheap else _blob_name(path)) or f"{stat.st_size}:{stat.st_mtime_ns}"
        else:
            continue
        digest.update(f"{path.name}\0{part}\n".encode())
    return f"v{FINGERPRINT_VERSION}:sha256:{digest.hexdigest()[:16]}"


def _weights_index(path: Path, suffix: str) -> bool:
    """Whether ``path`` is the index of weights a loader takes (``model.safetensors.index.json``), not of a
    trainer's or another model's files."""
    from eagle_iad.mllm.weights import model_weights

    return path.name.endswith(f"{suffix}.index.json") and bool(
        model_weights([path.with_name(path.name.removesuffix(".index.json"))], suffix)
    )


def _folder_versions(fingerprint: str) -> list[int]:
    """The :data:`FINGERPRINT_VERSION` of each folder fingerprint in ``fingerprint`` (a hybrid's has one per side
    that is a folder); an ``openai:`` entry has none."""
    try:
        sides = json.loads(fingerprint)
    except ValueError:
        sides = None
    if isinstance(sides, dict) and set(sides) == {"engine", "caas"}:
        return [v for side in ("engine", "caas") for v in _folder_versions(str(sides[side]))]
    found = _FOLDER_FINGERPRINT.fullmatch(fingerprint)
    return [] if found is None else [int(found.group(1) or 1)]


def older_fingerprint(recorded: str, current: str) -> str | None:
    """Why the MLLM fingerprint a run recorded cannot be compared with the one taken now: made another way (an
    older eagle's :data:`FINGERPRINT_VERSION`), so a difference says nothing of the weights; None where both are
    made alike (a difference is then other weights)."""
    then, now = _folder_versions(recorded), _folder_versions(current)
    if then == now:
        return None
    made = ", ".join(str(v) for v in then) or "none"
    return (f"its MLLM weights fingerprint {recorded} was made the way of fingerprint version {made} (an older "
            f"eagle-iad's, which hashed other files: a trainer's optimizer.pt, optimizer.bin ... too), this one "
            f"{current} the way of version {FINGERPRINT_VERSION}, so they cannot be compared")  # fmt: skip


def _hub_snapshot(repo_id: str) -> Path | None:
    """The hub cache's snapshot folder of ``repo_id`` (no network), or None when it is not cached."""
    try:
        from huggingface_hub import try_to_load_from_cache

        found = try_to_load_from_cache(repo_id, "config.json")
    except Exception:  # an id the hub library refuses is simply not a cached model
        return None
    return Path(found).parent if isinstance(found, str) else None


def _served_model(base_url: str, model: str) -> str | None:
    """The ``/v1/models`` entry of ``model`` (id and weights' path where listed); None where there is no such entry."""
    entry = _served_entry(base_url, model)
    return None if entry is None else json.dumps({k: entry[k] for k in ("id", "root") if k in entry}, sort_keys=True)


def _served_entry(base_url: str, model: str) -> dict[str, Any] | None:
    """The server's ``/v1/models`` entry of ``model`` as listed; None where it lists none (or no such entry: not
    listed under that id is no proof the server does not answer for it, Ollama lists ``llama3.2:latest`` and
    answers ``llama3.2``, a LiteLLM proxy answers aliases: nothing to compare, then). Raises :class:`BackendError`
    when the server cannot be reached."""
    from eagle_iad.mllm.openai_compat import OpenAIBackend

    return OpenAIBackend(base_url, model).model_entry(MODELS_TIMEOUT_S)


def mllm_fingerprint(spec: str) -> str | None:
    """The identity of the weights behind an ``--mllm`` spec (module text); None where it cannot be known.

    Raises for a malformed spec or an ``openai:`` server that cannot be reached, so such a run stops before
    its folder is written.
    """
    from eagle_iad.mllm.base import HYBRID_SCHEME, parse_spec

    parsed = parse_spec(spec)
    if parsed.scheme == HYBRID_SCHEME:
        parts = {"engine": mllm_fingerprint(parsed.target), "caas": mllm_fingerprint(str(parsed.model))}
        return None if None in parts.values() else json.dumps(parts, sort_keys=True)
    if parsed.scheme == "openai":
        return _served_model(parsed.target, str(parsed.model))
    if parsed.scheme != "hf":
        return None
    folder = Path(parsed.target).expanduser()
    if not folder.is_dir():
        snapshot = _hub_snapshot(parsed.target)
        if snapshot is None:
            return None
        folder = snapshot
    return folder_fingerprint(folder)


def random_test_model(spec: str) -> str | None:
    """The folder of a tiny random test model behind an ``--mllm`` spec (one holding the note
    ``python -m eagle_iad.testing.tiny`` leaves), or None: its answers are noise, never a measurement.
    An ``openai:`` spec is named itself when its server's ``/v1/models`` entry says ``random_test_model``
    (``eagle serve-mllm`` serving such a folder does), so a run over HTTP is marked as one in process is.

    Why here: the run marks its ``run.json``, records and report with it before any record is made, so the
    numbers of such a run are never read as a model's (the ``hf`` backend marks each reply too).
    """
    from eagle_iad.mllm.base import HYBRID_SCHEME, RANDOM_MODEL_MARK, RANDOM_MODEL_NOTE, parse_spec

    parsed = parse_spec(spec)
    if parsed.scheme == HYBRID_SCHEME:
        return random_test_model(parsed.target) or random_test_model(str(parsed.model))
    if parsed.scheme == "openai":  # `eagle serve-mllm` marks a tiny random model's entry in /v1/models
        entry = _served_entry(parsed.target, str(parsed.model))
        return spec if entry is not None and entry.get(RANDOM_MODEL_MARK) is True else None
    if parsed.scheme != "hf":
        return None
    folder = Path(parsed.target).expanduser()
    if not folder.is_dir():
        folder = _hub_snapshot(parsed.target) or folder
    return str(folder) if (folder / RANDOM_MODEL_NOTE).is_file() else None
