"""The family interface, the per-image token record and the shared id-only span finders.

An image's visual tokens are not always one contiguous run of one token id: tiled families
(Idefics3/SmolVLM image splitting) put separator tokens between the tiles of one image, and
families whose chat template renders images back to back (LLaVA-OneVision, LLaVA-1.5) may merge
several images into one run. So each family turns the input ids into one :class:`ImageTokens` per
image: *all* of that image's visual-token positions (what CAAS scales) as disjoint ranges, and the
subset lying on a known grid (what attention capture maps onto the image).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from eagle_iad.errors import ConfigError

#: A token range ``[start, end)`` in the input ids.
Range = tuple[int, int]


def image_token_runs(input_ids: Sequence[int], image_token_id: int) -> list[Range]:
    """Maximal runs ``[start, end)`` of ``image_token_id`` in ``input_ids``, in prompt order.

    Found from ids only, never by searching prompt text (docs/METHOD.md §3). Whether a run is one image, part
    of one image, or several images is the family's business (see :func:`split_runs`).
    """
    runs: list[Range] = []
    start: int | None = None
    for index, token in enumerate(input_ids):
        if token == image_token_id:
            if start is None:
                start = index
        elif start is not None:
            runs.append((start, index))
            start = None
    if start is not None:
        runs.append((start, len(input_ids)))
    return runs


def split_runs(runs: Sequence[Range], counts: Sequence[int]) -> list[tuple[Range, ...]]:
    """Assign consecutive image tokens to images by their known token counts, in prompt order.

    Each image takes the next ``counts[i]`` image tokens, across run boundaries (one image split
    over several runs) and within runs (several images rendered back to back in one run). A
    mismatch between the tokens found and the counts is a bug, not noise, and raises.
    """
    images: list[tuple[Range, ...]] = []
    queue = list(runs)
    for count in counts:
        taken: list[Range] = []
        need = count
        while need > 0:
            if not queue:
                raise ConfigError(f"image-token runs end before an image's {count} tokens were found")
            start, end = queue.pop(0)
            take = min(need, end - start)
            taken.append((start, start + take))
            if start + take < end:
                queue.insert(0, (start + take, end))
            need -= take
        images.append(tuple(taken))
    if queue:
        raise ConfigError(f"{sum(e - s for s, e in queue)} image tokens are left over after {len(counts)} images")
    return images


def positions(ranges: Sequence[Range]) -> list[int]:
    """Every token position of ``ranges``, in order."""
    return [index for start, end in ranges for index in range(start, end)]


@dataclass(frozen=True)
class ImageTokens:
    """One image's visual tokens in the input ids.

    ``ranges``: every visual-token position of the image (disjoint, increasing) — the key columns
    CAAS scales. ``grid_ranges``: the positions, in row-major ``(t, h, w)`` order of ``grid``, of the
    tokens that lie on the grid (all of them for single-view families; the base/global view for
    tiled ones, see the family modules); always a subset of ``ranges``.
    """

    ranges: tuple[Range, ...]
    grid: tuple[int, int, int]
    grid_ranges: tuple[Range, ...]

    def __post_init__(self) -> None:
        t, h, w = self.grid
        grid_tokens = positions(self.grid_ranges)
        if len(grid_tokens) != t * h * w:
            raise ConfigError(f"{len(grid_tokens)} grid tokens do not fill grid {self.grid}")
        if not set(grid_tokens) <= set(positions(self.ranges)):
            raise ConfigError("grid tokens must be visual tokens of the same image")

    @property
    def count(self) -> int:
        """Number of visual tokens of the image."""
        return sum(end - start for start, end in self.ranges)


class Family(Protocol):
    """What the backend needs to know about a model family."""

    @property
    def name(self) -> str: ...

    @property
    def model_types(self) -> tuple[str, ...]: ...

    @property
    def chat_template_kwargs(self) -> dict[str, Any]:
        """Settings the checkpoint's chat template reads (e.g. ``enable_thinking``)."""
        ...

    def load_processor(self, path: str | Path, **kwargs: Any) -> Any:
        """The family's processor (image processor + tokenizer + chat template)."""
        ...

    def image_token_id(self, config: Any) -> int:
        """The token id that marks visual tokens in ``input_ids``."""
        ...

    def image_tokens(
        self, config: Any, processor: Any, inputs: Any, input_ids: Sequence[int], n_images: int
    ) -> list[ImageTokens]:
        """Per image, in prompt order: all its visual tokens and the ones on its grid."""
        ...

    def grid_coverage(self, height: int, width: int) -> tuple[int, int, int, int] | None:
        """The ``(x0, y0, x1, y1)`` part of a ``height x width`` input the grid covers (``None``: all)."""
        ...


@dataclass(frozen=True)
class ImageSpans:
    """Visual tokens of all images of one prompt, in prompt order."""

    images: list[ImageTokens]

    @property
    def spans(self) -> list[tuple[Range, ...]]:
        """Per image, all its visual-token ranges."""
        return [image.ranges for image in self.images]

    @property
    def grids(self) -> list[tuple[int, int, int]]:
        return [image.grid for image in self.images]


def image_spans(
    family: Family, config: Any, processor: Any, inputs: Any, input_ids: Sequence[int], n_images: int
) -> ImageSpans:
    """The family's per-image tokens, checked to cover every image token of the prompt exactly once.

    The check is what makes "the query image's span" trustworthy: no visual token of any image is
    left out (CAAS must reach all of the query image's tokens) and none is claimed twice.
    """
    images = family.image_tokens(config, processor, inputs, input_ids, n_images)
    if len(images) != n_images:
        raise ConfigError(
            f"{_who(family, config)}: its image_tokens found {len(images)} images' tokens for {n_images} "
            f"{'image' if n_images == 1 else 'images'} in the prompt; cannot locate the query image (it must "
            "return one ImageTokens per image, in prompt order)"
        )
    token = family.image_token_id(config)
    claimed = [p for image in images for p in positions(image.ranges)]
    expected = [index for index, value in enumerate(input_ids) if value == token]
    if sorted(claimed) != expected:
        raise ConfigError(f"{_who(family, config)}: {coverage_problem(claimed, expected, token)}")
    return ImageSpans(images)


def _who(family: Family, config: Any) -> str:
    """``family 'NAME' (model_type 'TYPE')``: whose ``image_tokens`` an error is about (a plugin's, maybe)."""
    model_type = getattr(config, "model_type", None)
    return f"family {family.name!r}" + ("" if model_type is None else f" (model_type {model_type!r})")


def _first(found: Sequence[int], limit: int = 5) -> str:
    shown = ", ".join(str(p) for p in found[:limit])
    return shown + (", ..." if len(found) > limit else "")


def coverage_problem(claimed: Sequence[int], expected: Sequence[int], token: int) -> str:
    """Why the visual-token positions a family claimed are not the prompt's image tokens exactly once, with the
    counts a plugin author needs to find the bug: how many were claimed against how many the prompt holds, and
    which are missing, claimed twice, or not image tokens at all (the first few positions of each)."""
    expected_set = set(expected)
    seen: set[int] = set()
    doubled: list[int] = []
    for position in claimed:
        if position in seen and position not in doubled:
            doubled.append(position)
        seen.add(position)
    missing = [p for p in expected if p not in seen]
    foreign = sorted(p for p in seen if p not in expected_set)
    parts = [f"{len(missing)} missing" + (f" (positions {_first(missing)})" if missing else "")]
    parts.append(f"{len(doubled)} claimed twice" + (f" (positions {_first(sorted(doubled))})" if doubled else ""))
    parts.append(f"{len(foreign)} not image tokens" + (f" (positions {_first(foreign)})" if foreign else ""))
    return (
        "the images' visual tokens do not cover the prompt's image tokens exactly once: its image_tokens claims "
        f"{len(claimed)} token positions, the prompt holds {len(expected)} image tokens (id {token}): "
        f"{', '.join(parts)}; each image's ranges must hold exactly its own image tokens"
    )


def one_run_per_image(
    input_ids: Sequence[int], token_id: int, grids: Sequence[tuple[int, int, int]]
) -> list[ImageTokens]:
    """Single-view families: image ``i`` is the next ``t*h*w`` image tokens, all on ``grids[i]``."""
    counts = [t * h * w for t, h, w in grids]
    return [
        ImageTokens(ranges, grid, ranges)
        for ranges, grid in zip(split_runs(image_token_runs(input_ids, token_id), counts), grids, strict=True)
    ]


def leading_tokens(ranges: Sequence[Range], count: int) -> tuple[Range, ...]:
    """The first ``count`` token positions of ``ranges``, as ranges."""
    out: list[Range] = []
    for start, end in ranges:
        if count <= 0:
            break
        take = min(count, end - start)
        out.append((start, start + take))
        count -= take
    return tuple(out)


def trailing_tokens(ranges: Sequence[Range], count: int) -> tuple[Range, ...]:
    """The last ``count`` token positions of ``ranges``, as ranges."""
    out: list[Range] = []
    for start, end in reversed(ranges):
        if count <= 0:
            break
        take = min(count, end - start)
        out.append((end - take, end))
        count -= take
    return tuple(reversed(out))


def load_pil_processor(path: str | Path, image_only_processor: Any, **kwargs: Any) -> Any:
    """The checkpoint's processor with the PIL image processor.

    Without torchvision, transformers 5 cannot build these families' video processors, so the
    family's image-only subclass of the real processor class is loaded instead (all image and text
    handling stays the real class's); with torchvision the stock class is used.
    """
    from transformers import AutoProcessor
    from transformers.utils import is_torchvision_available

    if image_only_processor is None or is_torchvision_available():
        return AutoProcessor.from_pretrained(path, backend="pil", **kwargs)
    return image_only_processor.from_pretrained(path, backend="pil", **kwargs)


def image_only(stock: Any, video_processor: Callable[[], Any] | None = None, **members: Any) -> type:
    """A subclass of the real processor class ``stock`` that is loaded and built without a video processor.

    Why: transformers 5 declares a video processor on most families' processors, and loading one
    needs torchvision (a multi-GB CUDA build here) although an inspection prompt never holds video.
    The subclass's ``__init__`` has ``stock``'s signature minus ``video_processor`` — transformers
    reads that signature to decide what to load and which saved settings to pass, so every setting
    the checkpoint saved still arrives — and calls ``stock.__init__`` with ``video_processor()``
    (``None`` unless the stock class reads the video processor's settings at construction). The
    mixin below sits between ``stock`` and ``ProcessorMixin`` in the MRO and takes the video
    processor out of the attribute list, in whatever order ``stock`` passes its attributes.
    All image and text handling stays the stock class's. ``members`` add or override methods.
    """
    import inspect

    from transformers.processing_utils import ProcessorMixin

    stock_signature = inspect.signature(stock.__init__)
    stock_attributes = list(stock.get_attributes())
    signature = stock_signature.replace(
        parameters=[p for name, p in stock_signature.parameters.items() if name != "video_processor"]
    )

    class WithoutVideo(ProcessorMixin):  # type: ignore[misc]
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            if len(args) > len(stock_attributes):
                raise TypeError(f"{stock.__name__} passed {len(args)} positional arguments for {stock_attributes}")
            named = dict(zip(stock_attributes, args, strict=False))
            video = named.pop("video_processor", kwargs.pop("video_processor", None))
            ProcessorMixin.__init__(self, **named, **kwargs)
            self.video_processor = video

    def construct(self: Any, arguments: dict[str, Any], extra: dict[str, Any]) -> None:
        video = None if video_processor is None else video_processor()
        stock.__init__(self, video_processor=video, **arguments, **extra)

    init = _init_with_signature(signature, construct)
    name = f"{stock.__name__}ImageOnly"
    namespace = {"__init__": init, "__module__": __name__, "__qualname__": name, **members}
    namespace["__doc__"] = f"{stock.__name__} without the (torchvision-only) video processor."
    return type(name, (stock, WithoutVideo), namespace)


def _init_with_signature(signature: Any, construct: Callable[..., None]) -> Callable[..., None]:
    """An ``__init__`` whose *code object* has ``signature``'s parameters: ``construct(self, named, extra)``.

    transformers' ``from_args_and_dict`` reads the accepted settings from ``__init__.__code__``'s
    variable names (not from ``inspect.signature``), so the parameters must be real ones; the
    function is compiled from the signature's parameter names, with its defaults passed by
    reference (never rendered into source).
    """
    import inspect

    params: list[str] = []
    names: list[str] = []
    extra = "{}"
    defaults: dict[str, Any] = {}
    keyword_only = False
    for index, param in enumerate(signature.parameters.values()):
        if not param.name.isidentifier():
            raise ConfigError(f"processor parameter {param.name!r} is not an identifier")
        if param.kind is inspect.Parameter.KEYWORD_ONLY and not keyword_only:
            params.append("*")  # keyword-only stays keyword-only (and may follow defaulted parameters)
            keyword_only = True
        if param.kind is inspect.Parameter.VAR_KEYWORD:
            params.append(f"**{param.name}")
            extra = param.name
            continue
        elif param.kind is inspect.Parameter.VAR_POSITIONAL:
            raise ConfigError("a processor __init__ with *args cannot be given an image-only subclass")
        elif param.default is inspect.Parameter.empty:
            params.append(param.name)
        else:
            defaults[f"_default_{index}"] = param.default
            params.append(f"{param.name}=_default_{index}")
        names.append(param.name)
    body = ", ".join(f"{name!r}: {name}" for name in names[1:])
    source = f"def __init__({', '.join(params)}):\n    _construct({names[0]}, {{{body}}}, {extra})\n"
    namespace: dict[str, Any] = {"_construct": construct, **defaults}
    exec(compile(source, "<image-only processor>", "exec"), namespace)  # names checked above
    init: Callable[..., None] = namespace["__init__"]
    return init


@dataclass(frozen=True)
class FamilyBase:
    """What most families share: the config's ``image_token_id``, a processor loaded with the PIL
    image processor (the image-only subclass where the stock class needs torchvision), and a grid
    covering the whole image. A family module subclasses it and states only its differences —
    above all :meth:`image_tokens`, which is where families really differ."""

    name: str
    model_types: tuple[str, ...]
    image_only_processor: Any = None
    #: Passed to the checkpoint's chat template. Reasoning checkpoints (GLM-4.1V-Thinking, Qwen3.5
    #: under MiniCPM-V 4.6) otherwise open their answer with a ``<think>`` block, and an inspection's
    #: answer is its first tokens; templates without the setting ignore it.
    chat_template_kwargs: dict[str, Any] = field(default_factory=dict, hash=False)

    def load_processor(self, path: str | Path, **kwargs: Any) -> Any:
        return load_pil_processor(path, self.image_only_processor, **kwargs)

    def image_token_id(self, config: Any) -> int:
        return int(config.image_token_id)

    def grid_coverage(self, height: int, width: int) -> tuple[int, int, int, int] | None:
        return None  # the grid's view is a resize of the whole image: nothing is cropped

    def image_tokens(
        self, config: Any, processor: Any, inputs: Any, input_ids: Sequence[int], n_images: int
    ) -> list[ImageTokens]:
        raise NotImplementedError(f"family {self.name} does not say where its images' tokens are")


def inherit_checkpoint_layout(model_class: type) -> None:
    """Let ``model_class`` (a checkpoint class a plugin registers under a new ``model_type``) load its
    parent's checkpoints: give it the parent's checkpoint key renaming.

    Why: transformers renames a checkpoint's keys to its classes' current layout (Qwen2.5-VL's saved
    ``model.layers.*`` become ``model.language_model.layers.*``) by a mapping it looks up by class name,
    then by ``model_type``; a subclass under a new type has neither, so every decoder weight would be
    unexpected, the decoder left random and the load refused (``hf.weights_problem``). The first class of
    its bases with a mapping (by its name, else its config's ``model_type``) gives it.
    """
    from transformers.conversion_mapping import (
        get_checkpoint_conversion_mapping,
        register_checkpoint_conversion_mapping,
    )

    for parent in model_class.__mro__[1:]:
        parent_type = getattr(getattr(parent, "config_class", None), "model_type", None)
        mapping = get_checkpoint_conversion_mapping(parent.__name__)
        if mapping is None and parent_type:
            mapping = get_checkpoint_conversion_mapping(parent_type)
        if mapping is not None:
            register_checkpoint_conversion_mapping(model_class.__name__, mapping, overwrite=True)
            return


def read_template_kwargs(processor: Any, wanted: dict[str, Any]) -> dict[str, Any]:
    """Those of ``wanted`` (a family's :attr:`Family.chat_template_kwargs`) that the processor's chat template reads.

    Why: transformers hands a keyword the template does not name to the processor's ``__call__`` instead, with
    the warning "Kwargs passed to `processor.__call__` have to be in `processor_kwargs` dict" on every prompt
    (``enable_thinking=False`` to a Qwen3-VL Instruct or GLM-4V template that has no thinking switch). A
    template that reads it (a Thinking checkpoint's) still gets it; one whose variables cannot be read gets all.
    """
    template = getattr(processor, "chat_template", None)
    if isinstance(template, dict):
        template = template.get("default")
    if not isinstance(template, str) or not wanted:
        return dict(wanted)
    names = _template_variables(template)
    return dict(wanted) if names is None else {key: value for key, value in wanted.items() if key in names}


@functools.lru_cache(maxsize=16)
def _template_variables(template: str) -> frozenset[str] | None:
    """The variables a chat template reads (parsed once per template, not once per prompt); None: unparsable here."""
    import jinja2
    from jinja2 import meta

    try:
        parsed = jinja2.Environment(extensions=["jinja2.ext.loopcontrols"]).parse(template)
    except jinja2.TemplateSyntaxError:  # a tag of transformers' own environment: let transformers decide
        return None
    return frozenset(meta.find_undeclared_variables(parsed))
