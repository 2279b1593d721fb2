"""The names of every interchangeable part, declared once and importable without torch.

``eagle --help`` lists these as the choices of its options; importing the modules that implement
them would load torch, transformers and faiss (seconds) just to print a help screen. Each
implementing module imports its names from here (and re-exports them), so a name is declared in one
place; ``tests/test_fresh_clone.py`` checks that every name has an implementation and that the help
screens load none of those libraries.
"""

from __future__ import annotations

from typing import Literal, TypeAlias, get_args

#: File suffixes (lower case, with the dot; matched in any case) taken for images wherever a folder is listed by
#: name: a fit's training folders (every dataset layout), ``eagle teach``/``eagle eval`` folders, the service's
#: server-side folders and a station's hot folder. They name what :func:`eagle_iad.images.load_rgb` decodes
#: (``tests/test_load.py`` checks that Pillow reads each), so a file that ``eagle inspect`` reads one at a time never
#: vanishes from a folder: the camera formats (PGM/PPM/PNM, JPEG 2000) and JPEG's other names (``.jpe``,
#: ``.jfif``) included. Files named one by one (``eagle inspect`` arguments, service uploads and zip members) are
#: taken by their content instead, whatever their name. Declared here, once, because listing a folder must not
#: load torch.
IMAGE_SUFFIXES: tuple[str, ...] = (
    ".png", ".jpg", ".jpeg", ".jpe", ".jfif", ".bmp", ".tif", ".tiff", ".gif", ".webp",
    ".pgm", ".ppm", ".pbm", ".pnm", ".jp2", ".j2k",
)  # fmt: skip

#: Feature extractors (``eagle_iad.expert.backbones`` registers one factory per name).
BACKBONES: tuple[str, ...] = ("efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2", "wide_resnet50_2")
#: The backbone used when none is named; docs/MEASUREMENTS.md, "Choosing the default backbone", says why.
DEFAULT_BACKBONE = "efficientnet_lite0"

#: Where an inspection's score and map are computed: the fitted model in torch, or an exported graph
#: (``eagle export``) in ONNX Runtime or OpenVINO (``eagle_iad.expert.runtime``, docs/DEPLOY.md).
RUNTIMES: tuple[str, ...] = ("torch", "onnx", "openvino")
#: ``eagle export --format`` (``eagle_iad.expert.export``).
EXPORT_FORMATS: tuple[str, ...] = ("onnx", "openvino")

#: Memory-bank subsampling (``eagle_iad.expert.coreset.make_sampler``).
SAMPLERS: tuple[str, ...] = ("greedy", "random", "all")

#: Nearest-neighbour search (``eagle_iad.expert.search.make_search``).
SEARCHES: tuple[str, ...] = ("torch", "faiss", "pruned")
#: "pruned" is the default: as exact as the others (a proven subspace lower bound skips entries, the
#: rest are compared in full), and it took 1/5 to 1/2 of faiss's time on elpv features, inspection and
#: leave-own-out alike (``benchmarks/expert.py``; docs/MEASUREMENTS.md, "Speed and memory").
DEFAULT_SEARCH = "pruned"

#: Where ``eagle eval`` runs its work (``eagle_iad.eval.executors.EXECUTOR_REGISTRY``).
EXECUTORS: tuple[str, ...] = ("local", "ray")

#: The default threshold rule; the rules and their parameters are the registry
#: ``eagle_iad.tgps.thresholds.THRESHOLD_RULES`` (torch-free, so the help screens read it directly).
DEFAULT_RULE = "ksigma"

#: Visual-prompt styles (``eagle_iad.tgps.render.render``).
RenderStyle = Literal["box", "contour", "heatmap", "mask"]
RENDER_STYLES: tuple[str, ...] = get_args(RenderStyle)

#: What the MLLM is shown (``eagle_iad.pipeline``; docs/METHOD.md, "Conditions").
Condition: TypeAlias = Literal["baseline", "tgps", "eagle", "text-only", "visual-only"]
CONDITIONS: tuple[str, ...] = get_args(Condition)

#: CAAS sharpening strength (``eagle_iad.mllm.caas``; docs/METHOD.md, "CAAS").
DEFAULT_ALPHA = 0.6
#: When CAAS scales: in the prompt's prefill and every decoding step ("all", so the first answer
#: token, computed in prefill, is sharpened too), or in decoding steps only ("decode", the reference
#: attention-editing tool's default). docs/METHOD.md, "When CAAS acts", says why "all" is the default.
CaasPhase: TypeAlias = Literal["all", "decode"]
CAAS_PHASES: tuple[str, ...] = get_args(CaasPhase)
DEFAULT_CAAS_PHASE: CaasPhase = "all"
#: Which rule turned CAAS on in the ``eagle`` condition (``eagle_iad.pipeline``; recorded as ``caas_rule``): the
#: product's ``band`` rule (only ``tau <= score < s_max``) or ``forced`` (``--force-caas`` of ``eagle inspect``,
#: ``eagle eval`` and ``eagle attention``: on every eagle inspection, so its effect can be looked at on any image;
#: never the product's behaviour). Declared here so the flag's help, the records and the reports say the same.
CaasRule: TypeAlias = Literal["band", "forced"]
CAAS_RULES: tuple[str, ...] = get_args(CaasRule)


def caas_rule(force: bool) -> CaasRule:
    """The recorded name of the rule a ``--force-caas`` value means."""
    return "forced" if force else "band"


#: Largest image accepted, in pixels (width x height). 40 MP covers industrial line-scan and 8K
#: cameras; anything larger is almost certainly a mistake or an attack. Here, not in
#: ``eagle_iad.images`` (which enforces it, ``EAGLE_MAX_PIXELS`` overriding it), because the service's
#: settings table (``eagle serve --max-pixels``) and its help screen read it without torch.
DEFAULT_MAX_PIXELS = 40_000_000

#: Images one ``eagle teach`` (or ``POST /v1/categories/{name}/teach``) takes: their features are held
#: in memory (about 6.5 MB an image at 320 px), and a teach of more is closer to a refit than to a
#: correction (benchmarks/teach.py). Here, torch-free, so the service's request schema states it too.
MAX_TEACH_IMAGES = 100

#: Attention capture reads the first decode step, so it needs two generated tokens: ``eagle attention`` and
#: ``eagle eval --attention`` refuse fewer with this one message (a run with one token records no attention).
ATTENTION_MIN_NEW_TOKENS = 2
ATTENTION_TOKENS_MESSAGE = (
    f"attention analysis needs --max-new-tokens >= {ATTENTION_MIN_NEW_TOKENS} (capture reads the first decode step)"
)

#: ``eagle eval``'s defaults (:class:`eagle_iad.eval.experiment.ExperimentConfig` and the CLI's ``--help`` read
#: them here). 32 tokens hold an MMAD answer (one letter) and a short reason; the seed draws ``--limit``'s and
#: ``--limit-train``'s subsets and seeds a missing expert's fit.
EVAL_MAX_NEW_TOKENS = 32
EVAL_SEED = 0

#: Seconds back the warnings of what happened lately look: the p95 over the deadline (the images whose deliveries
#: ended since), files of a content already inspected, and files the hot folder found it does not take. Each says
#: how the station does now, and clears once nothing of the kind happened for that long, where a count since the
#: start (or the figures over the last ``LATENCY_WINDOW`` of ``eagle_iad.station.status`` images) would keep one
#: burst or outage warning for hours, and an alert on ``eagle_station_warnings`` firing until a restart.
#: ``/healthz`` serves it (``recent_s``): the console's Stations page names the window from there. Declared here, not
#: in ``eagle_iad.station.recent`` which counts by it, so the service (a layer below the stations) can serve it.
RECENT_S = 300.0
