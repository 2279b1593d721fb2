"""An ``hf:`` folder that cannot answer right is refused at load, in one line naming what is wrong.

Each case is a real tiny checkpoint (``eagle_iad.testing.tiny``) with one part taken away or broken, as a
user's copy might be: transformers would otherwise load a truncated checkpoint with random weights and
answer noise, or fail with a traceback at the first prompt.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from conftest import MLLM_FAMILIES

from eagle_iad.errors import ConfigError

pytest.importorskip("transformers")


@pytest.fixture(scope="module")
def tiny_qwen(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from eagle_iad.testing.tiny import build_tiny_qwen2_5_vl

    return build_tiny_qwen2_5_vl(tmp_path_factory.mktemp("refusals") / "qwen")


def _copy(tiny: Path, to: Path) -> Path:
    shutil.copytree(tiny, to)
    return to


def _refusal(path: Path | str) -> str:
    """The one line loading ``hf:path`` is refused with."""
    from eagle_iad.mllm import load_backend

    with pytest.raises(ConfigError) as caught:
        load_backend(f"hf:{path}")
    message = str(caught.value)
    assert "\n" not in message
    return message


@pytest.mark.parametrize("family", MLLM_FAMILIES)
def test_every_tiny_family_loads_with_every_weight_from_its_file(hf_backends: object, family: str) -> None:
    """Tied embeddings and keys transformers ignores by design are not refused as missing."""
    backend = hf_backends(family)  # type: ignore[operator]
    assert backend.family is not None and backend.num_layers == 4


def test_a_truncated_checkpoint_is_refused_naming_the_missing_weights(tiny_qwen: Path, tmp_path: Path) -> None:
    from safetensors.torch import load_file, save_file

    trunc = _copy(tiny_qwen, tmp_path / "trunc")
    weights = load_file(trunc / "model.safetensors")
    kept = {key: value for key, value in weights.items() if not ("layers.1." in key and "visual" not in key)}
    assert len(weights) - len(kept) == 12
    save_file(kept, trunc / "model.safetensors", metadata={"format": "pt"})
    assert _refusal(trunc) == (
        f"hf:{trunc}: the checkpoint lacks 12 of the model's 81 weights (model.language_model.layers.1."
        "input_layernorm.weight, model.language_model.layers.1.mlp.down_proj.weight, model.language_model.layers.1."
        "mlp.gate_proj.weight, ...); they would be random: a truncated or mismatched checkpoint"
    )


def test_a_checkpoint_with_weights_of_other_shapes_is_refused(tiny_qwen: Path, tmp_path: Path) -> None:
    import torch
    from safetensors.torch import load_file, save_file

    other = _copy(tiny_qwen, tmp_path / "other")
    weights = load_file(other / "model.safetensors")
    weights["model.layers.1.mlp.down_proj.weight"] = torch.zeros(3, 3)
    save_file(weights, other / "model.safetensors", metadata={"format": "pt"})
    assert _refusal(other) == (
        f"hf:{other}: 1 of the checkpoint's weights have other shapes than the model's "
        "(model.language_model.layers.1.mlp.down_proj.weight): a mismatched checkpoint"
    )


def test_extra_weights_alone_load_with_a_warning_not_a_refusal(tiny_qwen: Path, tmp_path: Path) -> None:
    """A checkpoint that holds every weight the model needs and some it does not use (another head, an older
    buffer: real checkpoints carry such extras) loads and answers from its own weights; the extras are said once
    as a load warning, since they may mean a near relative's checkpoint."""
    import torch
    from safetensors.torch import load_file, save_file

    from eagle_iad.mllm import load_backend

    extra = _copy(tiny_qwen, tmp_path / "extra")
    weights = load_file(extra / "model.safetensors")
    weights["extra_head.weight"] = torch.zeros(2, 2)
    save_file(weights, extra / "model.safetensors", metadata={"format": "pt"})
    backend = load_backend(f"hf:{extra}")
    warnings = getattr(backend, "warnings", [])
    assert (
        f"hf:{extra}: the checkpoint holds 1 weight the model does not use (extra_head.weight); every weight it "
        "needs came from the file, so it runs: check this is the checkpoint you meant"
    ) in warnings, warnings


@pytest.mark.parametrize("family", ["qwen2_5_vl", "llava"])
def test_a_folder_without_tokenizer_files_is_refused_naming_them(
    tiny_mllm_dirs: dict[str, Path], tmp_path: Path, family: str
) -> None:
    """Qwen's processor builds an empty tokenizer (the first prompt would fail with "Mismatch in image token
    count"); LLaVA's cannot build one at all: both are named by the files the folder lacks."""
    bare = _copy(tiny_mllm_dirs[family], tmp_path / "bare")
    (bare / "tokenizer.json").unlink()
    (bare / "tokenizer_config.json").unlink()
    message = _refusal(bare)
    assert message.startswith(f"cannot load MLLM {str(bare)!r}: ")
    assert "the folder lacks tokenizer.json and tokenizer_config.json" in message
    if family == "qwen2_5_vl":
        assert message == (
            f"cannot load MLLM {str(bare)!r}: its tokenizer does not know the image token '<|image_pad|>' (id 5): "
            "the folder lacks tokenizer.json and tokenizer_config.json; no prompt could place an image"
        )


def test_a_folder_without_a_chat_template_is_refused_naming_the_file(tiny_qwen: Path, tmp_path: Path) -> None:
    bare = _copy(tiny_qwen, tmp_path / "bare")
    (bare / "chat_template.jinja").unlink()
    assert _refusal(bare) == (
        f"cannot load MLLM {str(bare)!r}: it has no chat template (chat_template.jinja or chat_template.json); the "
        "prompt could not be laid out as the checkpoint was trained"
    )


def test_a_path_that_is_no_model_folder_is_refused_saying_what_it_is(tiny_qwen: Path, tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    assert _refusal(empty) == f"cannot load MLLM {str(empty)!r}: not a model folder (no config.json)"
    blank = _copy(tiny_qwen, tmp_path / "blank")
    (blank / "config.json").write_text("")
    assert _refusal(blank) == (
        f"cannot load MLLM {str(blank)!r}: not a model folder (its config.json is empty or not JSON)"
    )
    weights = tiny_qwen / "model.safetensors"
    assert _refusal(weights) == (
        f"cannot load MLLM {str(weights)!r}: it is a file; give the model folder that holds it (--mllm hf:{tiny_qwen})"
    )
    no_processor = _copy(tiny_qwen, tmp_path / "no-processor")
    (no_processor / "processor_config.json").unlink()
    assert _refusal(no_processor) == (
        f"cannot load MLLM {str(no_processor)!r}: the folder lacks its image processor's settings "
        "(preprocessor_config.json or processor_config.json)"
    )


def test_an_unknown_model_type_names_the_families_and_plugins(tiny_qwen: Path, tmp_path: Path) -> None:
    unknown = _copy(tiny_qwen, tmp_path / "unknown")
    config = json.loads((unknown / "config.json").read_text())
    (unknown / "config.json").write_text(json.dumps({**config, "model_type": "frobnicator"}))
    message = _refusal(unknown)
    assert message.startswith(
        f"cannot load MLLM {str(unknown)!r}: model type 'frobnicator' is not supported by the hf backend "
        "(supported: qwen2_5_vl, "
    )
    assert message.endswith("; a plugin's family? load it with EAGLE_PLUGINS=module)")
    assert "pip install" not in message
