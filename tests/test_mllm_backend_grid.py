"""Backend spec registry, default CAAS layers, image-token runs and attention grid mapping."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from eagle_iad.errors import ConfigError
from eagle_iad.mllm import AttentionCapture, BackendSpec, CaasSettings, GenerateOptions, load_backend, parse_spec
from eagle_iad.mllm.attention import attention_overlay, layer_metrics, token_cell, upsample_to_image
from eagle_iad.mllm.caas import default_caas_layers
from eagle_iad.mllm.families import family_for, image_token_runs
from eagle_iad.mllm.families.base import ImageTokens, leading_tokens, split_runs, trailing_tokens
from eagle_iad.mllm.families.idefics3 import global_view_images
from eagle_iad.mllm.families.internvl import thumbnail_images
from eagle_iad.mllm.families.llava_next import base_view_images
from eagle_iad.mllm.families.minicpmv import source_view_images
from eagle_iad.tgps.prompt import PromptRequest, build_prompt

pytestmark = pytest.mark.usefixtures("torch_single_thread")


def test_parse_spec() -> None:
    assert parse_spec("hf:Qwen/Qwen2.5-VL-7B-Instruct") == BackendSpec("hf", "Qwen/Qwen2.5-VL-7B-Instruct")
    assert parse_spec("hf:/models/llava-1.5") == BackendSpec("hf", "/models/llava-1.5")
    assert parse_spec("openai:http://localhost:8000/v1#qwen2.5-vl") == BackendSpec(
        "openai", "http://localhost:8000/v1", "qwen2.5-vl"
    )
    for bad in ("Qwen/Qwen2.5-VL", "hf:", "openai:http://host/v1", "openai:host#m"):
        with pytest.raises(ConfigError):
            parse_spec(bad)
    with pytest.raises(ConfigError, match="no MLLM backend"):
        load_backend("nope:thing")


def test_missing_model_is_a_clear_offline_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ConfigError, match="cannot load MLLM"):
        load_backend("hf:eagle-iad-test/does-not-exist")
    with pytest.raises(ConfigError, match="cannot load MLLM"):
        load_backend(f"hf:{tmp_path}")  # an empty directory


def test_default_layers_and_settings() -> None:
    assert default_caas_layers(28, "qwen2_5_vl") == (9, 10, 11, 12, 13, 14)
    assert default_caas_layers(28, "llava") == (9, 10, 11, 12, 13, 14)
    assert default_caas_layers(32) == tuple(range(10, 17))
    assert default_caas_layers(4) == (1, 2)
    assert default_caas_layers(1) == (0,)
    # Hybrid language models: the band keeps its attention layers, or takes the one nearest its middle.
    assert default_caas_layers(4, "minicpmv4_6", (1, 3)) == (1,)
    assert default_caas_layers(32, None, tuple(range(3, 32, 4))) == (11, 15)  # band 10..16
    assert default_caas_layers(8, None, (0, 7)) == (0,)  # band 3..4: both 3.5 away, the lower one
    assert default_caas_layers(8, None, (6, 7)) == (6,)
    with pytest.raises(ConfigError, match="no softmax-attention layer"):
        default_caas_layers(8, None, ())
    with pytest.raises(ConfigError):
        CaasSettings(alpha=-0.1)
    with pytest.raises(ConfigError):
        CaasSettings(layers=(-1,))
    with pytest.raises(ConfigError):
        GenerateOptions(greedy=False)
    with pytest.raises(ConfigError, match="not supported"):
        family_for("gpt2")


def test_every_declared_family_is_found_by_model_type() -> None:
    expected = {
        "qwen2_5_vl": "qwen2_5_vl",
        "qwen2_vl": "qwen2_vl",
        "llava": "llava",
        "llava_next": "llava_next",
        "llava_onevision": "llava_onevision",
        "internvl": "internvl",
        "idefics3": "idefics3",
        "smolvlm": "smolvlm",
        "qwen3_vl": "qwen3_vl",
        "glm4v": "glm4v",
        "gemma3": "gemma3",
        "minicpmv4_6": "minicpmv4_6",
        "minicpmv4_7": "minicpmv4_7",
    }
    for model_type, name in expected.items():
        family = family_for(model_type)
        assert family.name == name
        if model_type != "llava":  # LLaVA-1.5 centre-crops; every other family resizes the whole image
            assert family.grid_coverage(56, 84) is None


def test_image_token_runs() -> None:
    assert image_token_runs([1, 9, 9, 2, 9, 3, 9, 9, 9], 9) == [(1, 3), (4, 5), (6, 9)]
    assert image_token_runs([1, 2], 9) == []


def test_split_runs_assigns_tokens_by_count_across_and_within_runs() -> None:
    # Three images rendered back to back (one merged run), then one image over two runs.
    runs = [(2, 14), (20, 23), (25, 28)]
    assert split_runs(runs, [4, 4, 4, 6]) == [((2, 6),), ((6, 10),), ((10, 14),), ((20, 23), (25, 28))]
    with pytest.raises(ConfigError, match="left over"):
        split_runs(runs, [4, 4, 4])
    with pytest.raises(ConfigError, match="end before"):
        split_runs(runs, [12, 7])
    assert leading_tokens(((2, 4), (6, 9)), 3) == ((2, 4), (6, 7))
    assert trailing_tokens(((2, 4), (6, 9)), 4) == ((3, 4), (6, 9))
    with pytest.raises(ConfigError, match="do not fill"):
        ImageTokens(((0, 4),), (1, 2, 3), ((0, 4),))
    with pytest.raises(ConfigError, match="same image"):
        ImageTokens(((0, 4),), (1, 2, 2), ((1, 5),))


def test_idefics3_spans_from_hand_built_ids() -> None:
    """Idefics3/SmolVLM id layout: tiles with <fake><row_i_col_j>, "\n" per row, then the global view."""
    img, fake, glob, r11, r12, nl, txt = 9, 7, 8, 31, 32, 5, 1
    tiled = [fake, r11, img, img, img, img, fake, r12, img, img, img, img, nl]
    tiled += [nl, fake, glob, img, img, img, img, fake]
    single = [fake, glob, img, img, img, img, fake]
    ids = [txt, *tiled, txt, txt, *single, txt]
    first, second = global_view_images(ids, img, glob, 4)
    assert first.ranges == ((3, 7), (9, 13), (17, 21)) and first.grid_ranges == ((17, 21),)
    assert first.grid == (1, 2, 2) and first.count == 12
    assert second.ranges == ((26, 30),) and second.grid_ranges == second.ranges
    with pytest.raises(ConfigError, match="without a closing global view"):
        global_view_images([txt, fake, r11, img, img, img, img, txt], img, glob, 4)
    with pytest.raises(ConfigError, match="expected 4"):
        global_view_images([fake, glob, img, img, img, fake], img, glob, 4)


def test_llava_anyres_spans_from_hand_built_ids() -> None:
    """LLaVA-NeXT/OneVision: images back to back in one run, split by the processor's counts; base view first."""
    img, txt = 9, 1
    ids = [txt, *[img] * 6, *[img] * 5, txt, *[img] * 4, txt]
    first, second, third = base_view_images(ids, img, [6, 5, 4], side=2)
    assert first.ranges == ((1, 7),) and first.grid_ranges == ((1, 5),) and first.grid == (1, 2, 2)
    assert second.ranges == ((7, 12),) and second.grid_ranges == ((7, 11),)
    assert third.ranges == ((13, 17),) and third.grid_ranges == third.ranges
    with pytest.raises(ConfigError, match="base view"):
        base_view_images(ids, img, [6, 2, 7], side=2)
    with pytest.raises(ConfigError, match="left over"):
        base_view_images(ids, img, [6, 5], side=2)


def test_internvl_spans_from_hand_built_ids() -> None:
    """InternVL: <img> tiles... thumbnail </img>, one run per image; the thumbnail (last S tokens) is the grid."""
    ctx, start, end, txt = 9, 7, 8, 1
    ids = [txt, start, *[ctx] * 12, end, txt, start, *[ctx] * 4, end]
    tiled, single = thumbnail_images(ids, ctx, 4)
    assert tiled.ranges == ((2, 14),) and tiled.grid_ranges == ((10, 14),) and tiled.grid == (1, 2, 2)
    assert single.ranges == ((17, 21),) and single.grid_ranges == single.ranges
    with pytest.raises(ConfigError, match="whole number"):
        thumbnail_images([start, *[ctx] * 6, end], ctx, 4)


def test_minicpmv_spans_from_hand_built_ids() -> None:
    """MiniCPM-V: <image> opens an image (its source view is the grid), <slice> runs join it."""
    img, start, end, s_start, s_end, nl, txt = 9, 7, 8, 5, 6, 4, 1
    first = [start, img, img, img, img, end, s_start, img, img, s_end, s_start, img, img, s_end]
    ids = [txt, *first, txt, start, *[img] * 4, end, txt]
    sizes = [(8, 8), (8, 4), (8, 4), (8, 8)]  # patches per view, in run order: 16x mode gives h*w/16 tokens
    tiled, single = source_view_images(ids, img, start, s_start, sizes, 16)
    assert tiled.ranges == ((2, 6), (8, 10), (12, 14)) and tiled.grid_ranges == ((2, 6),) and tiled.grid == (1, 2, 2)
    assert single.ranges == ((17, 21),) and single.grid_ranges == single.ranges
    assert source_view_images([start, *[img] * 8, end], img, start, s_start, [(4, 8)], 4)[0].grid == (1, 2, 4)
    with pytest.raises(ConfigError, match="a run of 4 tokens for a 8x4-patch view"):
        source_view_images(ids, img, start, s_start, [(8, 8), (8, 4), (8, 4), (8, 4)], 16)
    with pytest.raises(ConfigError, match="neither opens an image"):
        source_view_images([txt, img, img, img, img, nl], img, start, s_start, [(8, 8)], 16)
    with pytest.raises(ConfigError, match="4 image-token runs for 3"):
        source_view_images(ids, img, start, s_start, sizes[:3], 16)


def test_gemma3_refuses_views_it_cannot_attribute(hf_backends: Any, prompt_images: dict[str, np.ndarray]) -> None:
    """Pan-and-scan crops are told from the next image only by text: a prompt with more views than images is refused."""
    backend = hf_backends("gemma3")
    prepared = backend.prepare(build_prompt(PromptRequest("q.png")), prompt_images)
    ((span,),) = prepared.images.spans
    assert span[1] - span[0] == 4 and prepared.images.grids == [(1, 2, 2)]
    from eagle_iad.mllm.families.base import image_spans

    doubled = [*prepared.input_ids, *prepared.input_ids[span[0] : span[1]]]  # a second view, as a crop would add
    with pytest.raises(ConfigError, match="2 image views for 1 images: pan-and-scan crops"):
        image_spans(backend.family, backend.config, backend.processor, prepared.inputs, doubled, 1)


def test_token_cell_and_upsampling_place_a_token_in_its_image_cell() -> None:
    # Qwen2.5-VL: image_grid_thw (1, 4, 6) with 2x2 merge -> (1, 2, 3); token 4 = row 1, col 1.
    assert token_cell(4, (1, 2, 3)) == (0, 1, 1)
    assert token_cell(7, (2, 2, 3)) == (1, 0, 1)
    # LLaVA-1.5: 24x24 patch grid; token 24*5+7 = row 5, col 7.
    assert token_cell(24 * 5 + 7, (1, 24, 24)) == (0, 5, 7)
    with pytest.raises(IndexError):
        token_cell(6, (1, 2, 3))
    values = np.zeros(6, dtype=np.float32)
    values[4] = 1.0
    capture = AttentionCapture(((10, 16),), (1, 2, 3), {0: values}, {0: 1.0})
    image = upsample_to_image(capture.layer_map(0), 56, 84)
    ys, xs = np.nonzero(image)
    assert (ys.min(), ys.max(), xs.min(), xs.max()) == (28, 55, 28, 55)
    # A centre-crop coverage (LLaVA on a non-square image): the grid spans only the square.
    cropped = upsample_to_image(capture.layer_map(0), 56, 84, coverage=(14, 0, 70, 56))
    ys, xs = np.nonzero(cropped)
    assert (ys.min(), ys.max(), xs.min(), xs.max()) == (28, 55, 33, 51)


def test_layer_metrics() -> None:
    values = np.array([0.0, 0.0, 0.0, 0.0, 0.3, 0.1], dtype=np.float32)
    capture = AttentionCapture(((0, 6),), (1, 2, 3), {2: values}, {2: 0.4})
    mask = np.zeros((56, 84), dtype=bool)
    mask[28:, 28:56] = True  # exactly token 4's cell: 1/6 of the image
    (metrics,) = layer_metrics(capture, mask)
    assert metrics.layer == 2 and metrics.share == pytest.approx(0.4) and metrics.peak_in_mask
    assert metrics.concentration == pytest.approx(0.75 * 6)
    again = AttentionCapture.from_dict(capture.to_dict())
    assert (again.span, again.grid, again.share, again.coverage) == (((0, 6),), (1, 2, 3), {2: 0.4}, None)
    np.testing.assert_array_equal(again.per_layer[2], values)
    # Records written before multi-range spans held one [start, end] pair; they still load.
    old_record = capture.to_dict() | {"span": [0, 6]}
    assert AttentionCapture.from_dict(old_record).span == ((0, 6),)
    tiled = AttentionCapture(((0, 4), (6, 10)), (1, 2, 2), {0: values[:4]}, {0: 0.5})
    assert AttentionCapture.from_dict(tiled.to_dict()).span == ((0, 4), (6, 10))
    overlay = attention_overlay(np.zeros((56, 84, 3), dtype=np.uint8), capture, 2)
    assert overlay.shape == (56, 84, 3) and overlay.dtype == np.uint8
    hot = overlay[28:, 28:56].astype(int)
    assert (hot[..., 0] > hot[..., 2]).all() and (overlay[:28, :28, 2] > overlay[:28, :28, 0]).all()
    assert family_for("llava").grid_coverage(56, 84) == (14, 0, 70, 56)
    assert family_for("qwen2_5_vl").grid_coverage(56, 84) is None


@pytest.mark.parametrize(
    ("family", "grid", "tokens"),
    [
        ("qwen2_5_vl", (1, 2, 3), 6),
        ("llava", (1, 4, 4), 16),
        ("qwen3_vl", (1, 2, 3), 6),
        ("glm4v", (1, 2, 3), 6),
        ("gemma3", (1, 2, 2), 4),
    ],
)
def test_real_processor_grid_matches_query_run(
    family: str, grid: tuple[int, int, int], tokens: int, hf_backends: Any, prompt_images: dict[str, np.ndarray]
) -> None:
    backend = hf_backends(family)
    prepared = backend.prepare(build_prompt(PromptRequest("q.png")), prompt_images)
    ((span,),) = prepared.images.spans
    assert prepared.images.grids == [grid]
    assert span[1] - span[0] == tokens
    image_token = backend.family.image_token_id(backend.config)
    assert all(prepared.input_ids[i] == image_token for i in range(*span))
    assert prepared.input_ids[span[0] - 1] != image_token and prepared.input_ids[span[1]] != image_token


def test_idefics3_query_image_is_tiles_plus_global_view(hf_backends: Any, prompt_images: dict[str, np.ndarray]) -> None:
    """Real processor: a 56x84 image -> 2x2 tiles + global view, separators excluded, global view on the grid."""
    backend = hf_backends("idefics3")
    prepared = backend.prepare(build_prompt(PromptRequest("q.png")), prompt_images)
    (image,) = prepared.images.images
    tokens = backend.processor.tokenizer.convert_ids_to_tokens(prepared.input_ids)
    assert len(image.ranges) == 5 and all(end - start == 4 for start, end in image.ranges)
    assert all(tokens[i] == "<image>" for start, end in image.ranges for i in range(start, end))
    gaps = [tokens[end:start] for (_, end), (start, _) in zip(image.ranges, image.ranges[1:], strict=False)]
    assert gaps[0] == ["<fake_token_around_image>", "<row_1_col_2>"]
    assert gaps[-1][-2:] == ["<fake_token_around_image>", "<global-img>"]
    assert tokens[image.ranges[0][0] - 2 : image.ranges[0][0]] == ["<fake_token_around_image>", "<row_1_col_1>"]
    assert image.grid == (1, 2, 2) and image.grid_ranges == (image.ranges[-1],)
    reply = backend.generate(
        build_prompt(PromptRequest("q.png")), prompt_images, GenerateOptions(max_new_tokens=2, capture_attention=True)
    )
    capture = reply.attention
    assert capture is not None and capture.span == image.ranges and capture.grid == (1, 2, 2)
    for layer, values in capture.per_layer.items():
        # The map holds the global view's 4 tokens; the share counts all 20 (tiles included).
        assert values.shape == (4,) and capture.share[layer] > float(values.sum()) > 0.0


def test_llava_onevision_images_back_to_back_are_split_by_processor_counts(
    hf_backends: Any, prompt_images: dict[str, np.ndarray]
) -> None:
    backend = hf_backends("llava_onevision")
    items = build_prompt(PromptRequest("q.png", "anomalous", boxed_ref="q_box.png", template_ref="t.png"))
    prepared = backend.prepare(items, prompt_images)
    image_token = backend.family.image_token_id(backend.config)
    runs = image_token_runs(prepared.input_ids, image_token)
    assert len(runs) == 1  # the template renders <image><image><image>: one merged run
    template, query, boxed = prepared.images.images
    # 56x84 -> 4x4 base view (16) + unpadded 2 tiles (4 rows x 6 cols) + 4 newlines = 44 tokens each.
    assert [image.count for image in (template, query, boxed)] == [44, 44, 44]
    assert template.ranges[-1][1] == query.ranges[0][0] and query.ranges[-1][1] == boxed.ranges[0][0]
    assert query.grid == (1, 4, 4) and query.grid_ranges == ((query.ranges[0][0], query.ranges[0][0] + 16),)


def test_internvl_query_run_is_tiles_then_thumbnail(hf_backends: Any, prompt_images: dict[str, np.ndarray]) -> None:
    backend = hf_backends("internvl")
    prepared = backend.prepare(build_prompt(PromptRequest("q.png")), prompt_images)
    ((start, end),) = prepared.images.spans[0]
    tokens = backend.processor.tokenizer.convert_ids_to_tokens(prepared.input_ids)
    assert tokens[start - 1] == "<img>" and tokens[end] == "</img>"
    assert end - start == 12  # 56x84 -> 2 tiles + thumbnail, 4 tokens each
    assert prepared.images.images[0].grid_ranges == ((end - 4, end),)


def test_image_only_keeps_the_stock_signature_and_refuses_what_it_cannot_place() -> None:
    """The generated ``__init__``: stock parameters minus ``video_processor``, keyword-only kept so."""
    import inspect

    from transformers.processing_utils import ProcessorMixin

    from eagle_iad.mllm.families.base import image_only

    class Stock(ProcessorMixin):  # type: ignore[misc]
        def __init__(self, image_processor: Any = None, tokenizer: Any = None, video_processor: Any = None,
                     chat_template: Any = None, *, seq_len: int = 4, **kwargs: Any) -> None:  # fmt: skip
            self.seq_len = seq_len
            super().__init__(image_processor, tokenizer, video_processor, chat_template=chat_template, **kwargs)

    made = image_only(Stock)
    assert str(inspect.signature(made.__init__)) == (
        "(self, image_processor=None, tokenizer=None, chat_template=None, *, seq_len=4, **kwargs)"
    )
    assert made.__init__.__code__.co_varnames[:4] == ("self", "image_processor", "tokenizer", "chat_template")
    assert made.get_attributes() == ["image_processor", "tokenizer"]
    with pytest.raises(TypeError, match="positional"):
        made(None, None, "template", 8)  # seq_len is keyword-only, as in the stock class

    class Overflowing(ProcessorMixin):  # type: ignore[misc]
        def __init__(self, image_processor: Any = None, video_processor: Any = None, **kwargs: Any) -> None:
            super().__init__(image_processor, video_processor, "a third positional argument", **kwargs)

    with pytest.raises(TypeError, match="3 positional arguments"):
        image_only(Overflowing)()


def test_reasoning_templates_are_asked_not_to_think(hf_backends: Any, prompt_images: dict[str, np.ndarray]) -> None:
    """MiniCPM-V's Qwen3.5 template writes an empty thinking block when told not to think: the answer comes first."""
    backend = hf_backends("minicpmv4_6")
    assert backend.family.chat_template_kwargs == {"enable_thinking": False}
    prepared = backend.prepare(build_prompt(PromptRequest("q.png")), prompt_images)
    assert prepared.text.endswith("<|im_start|>assistant\n<think>\n\n</think>\n\n")
    assert family_for("llava").chat_template_kwargs == {}
