"""``eagle eval`` scores each image once (issue 27): the worker's reuse and the run folder's expert cache.

Every expert pass ends in ``Expert.inspect_many``; the tests count the images it is given, per image
(arrays are told apart by their pixels), so a second pass of any image shows as a 2, not as a total
that another image's missing pass could balance. The expert is fitted on real elpv cells with tau set
to the median test score, so some images are anomalous (boxed copies drawn) and in the band (CAAS
applied); the MLLM is the tiny random Qwen2.5-VL.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import copy_elpv_cells

from eagle_iad.cli import main
from eagle_iad.eval.experiment import ExperimentConfig, build_items
from eagle_iad.eval.expert_cache import CACHE_DIR, CacheKey, ExpertCache, read
from eagle_iad.eval.protocol import WorkItem
from eagle_iad.eval.runner import RESULTS, Worker, WorkerConfig, ensure_expert
from eagle_iad.expert import load_expert
from eagle_iad.expert.geometry import (
    CenterCrop,
    Tiles,
    ViewGeometry,
    WholeFrame,
    geometry_from_dict,
    geometry_to_dict,
)
from eagle_iad.expert.patchcore import Expert, ExpertResult
from eagle_iad.images import Geometry, ImageSource, load_rgb
from eagle_iad.pipeline import expert_pass

pytestmark = pytest.mark.usefixtures("torch_single_thread")

#: ``eagle eval``'s default ``--conditions``; expert, tgps and eagle read the expert's result.
DEFAULT = ("baseline", "expert", "tgps", "eagle")


def _pixels(rgb: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(rgb).tobytes()).hexdigest()


class Passes:
    """Images scored by ``Expert.inspect_many``, counted per image path (arrays matched by their pixels)."""

    def __init__(self, images: Sequence[str]) -> None:
        self.by_pixels = {_pixels(load_rgb(image)): image for image in images}
        self.count: Counter[str] = Counter()

    def see(self, sources: Sequence[ImageSource | np.ndarray]) -> None:
        for source in sources:
            rgb = source if isinstance(source, np.ndarray) else load_rgb(source)
            self.count[self.by_pixels.get(_pixels(rgb), "<unknown image>")] += 1

    def take(self) -> dict[str, int]:
        """The counts so far (then zero again)."""
        counts = dict(self.count)
        self.count.clear()
        return counts


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Cells, a fitted expert with tau at the median test score, the tiny MLLM, the run's config and items."""
    from eagle_iad.expert.store import change_threshold
    from eagle_iad.testing.tiny import build_tiny_qwen2_5_vl

    root = tmp_path_factory.mktemp("expert_cache")
    data = copy_elpv_cells(root / "data")
    models = root / "models"
    ensure_expert(models, "cells", lambda: sorted((data / "cells/train/good").iterdir()), None, 0)
    qwen = build_tiny_qwen2_5_vl(root / "qwen")
    config = ExperimentConfig(layout="folder", data=str(data), models=str(models), conditions=DEFAULT,
                              mllm=f"hf:{qwen}", max_new_tokens=2)  # fmt: skip
    items = build_items(config)
    scores = [load_expert(models / "cells").inspect(item.image).score for item in items]
    change_threshold(models / "cells", tau=float(np.median(scores)), why="test: some anomalous, some in band", by="t")
    return {"data": data, "models": models, "qwen": qwen, "config": config, "items": items}


@pytest.fixture
def passes(setup: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> Passes:
    counter = Passes([item.image for item in setup["items"]])
    original = Expert.inspect_many

    def counted(self: Expert, sources: Sequence[ImageSource | np.ndarray], *args: Any, **kwargs: Any) -> Any:
        counter.see(sources)
        return original(self, sources, *args, **kwargs)

    monkeypatch.setattr(Expert, "inspect_many", counted)
    return counter


def _worker(setup: dict[str, Any], cache: Path | None = None) -> WorkerConfig:
    config: ExperimentConfig = setup["config"]
    return WorkerConfig(DEFAULT, config.models, config.mllm, max_new_tokens=2,
                        expert_cache=None if cache is None else str(cache))  # fmt: skip


def _records(worker: Worker, items: list[WorkItem]) -> dict[tuple[str, ...], Any]:
    """The worker's records by key, without their latencies (what must not depend on the path taken)."""
    rows = list(worker.run(items, set()))
    return {(r["image"], r["question_id"], r["condition"]): {k: v for k, v in r.items() if k != "latency_s"}
            for r in rows}  # fmt: skip


class PerCondition(Worker):
    """The runner before issue 27: the expert scored again by every condition that reads it."""

    def expert_result(self, item: WorkItem) -> ExpertResult:
        return expert_pass(self.expert(item.category), load_rgb(item.image))


def test_worker_scores_each_image_once_and_gives_the_per_condition_records(
    setup: dict[str, Any], passes: Passes, tmp_path: Path
) -> None:
    items: list[WorkItem] = setup["items"]
    once = {item.image: 1 for item in items}
    reference = _records(PerCondition(_worker(setup)), items)
    assert passes.take() == {item.image: 3 for item in items}  # expert, tgps and eagle each scored it
    in_memory = _records(Worker(_worker(setup)), items)
    assert passes.take() == once
    cached = _records(Worker(_worker(setup, tmp_path / CACHE_DIR)), items)
    assert passes.take() == once
    assert cached == in_memory == reference
    assert len(reference) == len(items) * len(DEFAULT)
    # The fixture's tau makes the comparison cover boxed copies and CAAS, not only plain prompts.
    eagle = [r for key, r in reference.items() if key[2] == "eagle"]
    assert any(r["caas_applied"] for r in eagle) and any(not r["in_band"] for r in eagle)
    assert {r["answer"] for key, r in reference.items() if key[2] == "expert"} == {"A", "B"}
    # A new worker (a resumed run) reads every result from the cache: no pass at all.
    assert _records(Worker(_worker(setup, tmp_path / CACHE_DIR)), items) == cached
    assert passes.take() == {}


def test_eval_scores_each_image_once_and_a_resumed_run_not_again(
    setup: dict[str, Any], passes: Passes, tmp_path: Path
) -> None:
    items: list[WorkItem] = setup["items"]
    run = tmp_path / "run"
    args = ["eval", "--data", str(setup["data"]), "--layout", "folder", "--models", str(setup["models"]),
            "--mllm", str(setup["config"].mllm), "--max-new-tokens", "2", "--out", str(run)]  # fmt: skip
    assert main(args) == 0  # the default conditions: baseline, expert, tgps, eagle
    # One pass per image for every record (expert, tgps and eagle share it), and one in the expert
    # evaluation (metrics.json's AUROC and boxes), which scores in batches and so keeps its own.
    assert passes.take() == {item.image: 2 for item in items}
    assert len(list((run / CACHE_DIR / "cells").iterdir())) == len(items)
    rows = (run / RESULTS).read_text().splitlines()
    assert {json.loads(row)["condition"] for row in rows} == set(DEFAULT)
    metrics = (run / "metrics.json").read_text()
    # As if killed before tgps and eagle were answered: the resumed run scores nothing for them.
    kept = [row for row in rows if json.loads(row)["condition"] in ("baseline", "expert")]
    (run / RESULTS).write_text("".join(f"{row}\n" for row in kept))
    assert main(args) == 0
    assert passes.take() == {item.image: 1 for item in items}  # the expert evaluation's only

    def strip(lines: list[str]) -> set[str]:
        return {json.dumps({k: v for k, v in json.loads(line).items() if k != "latency_s"}, sort_keys=True)
                for line in lines}  # fmt: skip

    assert strip((run / RESULTS).read_text().splitlines()) == strip(rows)
    assert (run / "metrics.json").read_text() == metrics


def _geometries() -> list[ViewGeometry]:
    return [
        WholeFrame(300, 400, 224, 288),
        Tiles(1000, 800, 448, 384, 224, ((0, 0), (0, 160), (224, 0), (224, 160))),
        CenterCrop(Geometry.for_image(300, 400, 256, 224)),
    ]


def test_every_geometry_round_trips_and_a_plugin_geometry_is_not_stored() -> None:
    geometries = _geometries()
    assert {type(g) for g in geometries} == set(ViewGeometry.__subclasses__())  # a new one is added here
    for geometry in geometries:
        data = geometry_to_dict(geometry)
        assert data is not None
        assert geometry_from_dict(json.loads(json.dumps(data))) == geometry

    class Plugin(WholeFrame):
        pass

    assert geometry_to_dict(Plugin(3, 4, 8, 8)) is None
    with pytest.raises(ValueError, match="unknown geometry"):
        geometry_from_dict({"kind": "hexagons"})


def _same(a: ExpertResult, b: ExpertResult) -> bool:
    arrays = ("patch_scores", "crop_map", "anomaly_map")
    scalars = [name for name in a.__dataclass_fields__ if name not in arrays]
    return all(getattr(a, n) == getattr(b, n) for n in scalars) and all(
        getattr(a, n).dtype == getattr(b, n).dtype and np.array_equal(getattr(a, n), getattr(b, n)) for n in arrays
    )


def test_cache_gives_the_result_back_bit_for_bit_and_only_for_its_key(setup: dict[str, Any], tmp_path: Path) -> None:
    image = setup["items"][-1].image
    result = load_expert(Path(setup["models"]) / "cells").inspect(load_rgb(image))
    cache = ExpertCache(tmp_path)
    key = CacheKey(image, "a" * 64, "b" * 64, "1.0")
    assert cache.get("cells", key) is None
    cache.put("cells", key, result)
    found = cache.get("cells", key)
    assert found is not None and _same(found, result)
    # Another model (a refit, a threshold change), other image bytes or another package: not found.
    for other in (CacheKey(image, "a" * 64, "c" * 64, "1.0"), CacheKey(image, "d" * 64, "b" * 64, "1.0"),
                  CacheKey(image, "a" * 64, "b" * 64, "1.1")):  # fmt: skip
        assert cache.path("cells", other) != cache.path("cells", key) and cache.get("cells", other) is None
        assert read(cache.path("cells", key), other) is None  # nor read under another key's name
    # A damaged file is not an error: the result is scored again and the file replaced.
    path = cache.path("cells", key)
    path.write_bytes(path.read_bytes()[:100])
    assert cache.get("cells", key) is None
    plugin = ExpertResult(**{**result.__dict__, "geometry": type("Plugin", (WholeFrame,), {})(3, 4, 8, 8)})
    other = CacheKey(image, "e" * 64, "b" * 64, "1.0")
    cache.put("cells", other, plugin)
    assert not cache.path("cells", other).exists()


def test_a_changed_model_is_scored_again(setup: dict[str, Any], passes: Passes, tmp_path: Path) -> None:
    import shutil

    from eagle_iad.expert.store import change_threshold

    models = tmp_path / "models"
    shutil.copytree(setup["models"], models)
    items: list[WorkItem] = setup["items"][:2]
    config = WorkerConfig(("expert",), str(models), None, expert_cache=str(tmp_path / CACHE_DIR))
    first = _records(Worker(config), items)
    assert passes.take() == {item.image: 1 for item in items}
    change_threshold(models / "cells", tau=1.0, why="test: everything anomalous", by="t")
    again = _records(Worker(config), items)
    assert passes.take() == {item.image: 1 for item in items}  # the old model's results are not used
    assert all(r["answer"] == "A" for r in again.values()) and first != again


def test_a_model_saved_during_its_load_is_refused(
    setup: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Its results would be filed under the identity of the model.json read before or after the load.
    import shutil

    import eagle_iad.expert
    from eagle_iad.errors import ConfigError
    from eagle_iad.expert.store import change_threshold

    models = tmp_path / "models"
    shutil.copytree(setup["models"], models)
    real_load = eagle_iad.expert.load_expert

    def load_then_change(directory: str | Path, runtime: str = "torch") -> Expert:
        expert = real_load(directory, runtime)
        change_threshold(directory, tau=2.0, why="test: saved beside the run", by="t")
        return expert

    monkeypatch.setattr(eagle_iad.expert, "load_expert", load_then_change)
    worker = Worker(WorkerConfig(("expert",), str(models), None, expert_cache=str(tmp_path / CACHE_DIR)))
    with pytest.raises(ConfigError, match="changed while it was loaded"):
        worker.expert("cells")


def test_a_missing_model_is_named_by_the_loader_not_a_raw_file_error(tmp_path: Path) -> None:
    from eagle_iad.errors import EagleError

    worker = Worker(WorkerConfig(conditions=("expert",), models_dir=str(tmp_path), mllm=None))
    with pytest.raises(EagleError) as caught:
        worker.expert("absent")
    assert "absent" in str(caught.value) and not isinstance(caught.value, FileNotFoundError)
