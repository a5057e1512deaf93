"""Fixtures shared by the core and the plugin tests. napari's own pytest plugin provides
``make_napari_viewer``; the image tests' synthetic crystals are in ``core/image/conftest.py``."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from ccount_core.image.preprocess import PreprocessConfig


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Skip GUI tests with a clear reason when no display is available (run `make test`)."""
    if os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"):
        return
    skip = pytest.mark.skip(reason="no display: GUI tests run under Xvfb via `make test`")
    for item in items:
        if "gui" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(autouse=True, scope="session")
def _private_cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """What ccount measures of the machine (``precision.bf16_pays``) goes to a test folder,
    not the user's ~/.cache/ccount."""
    old = os.environ.get("CCOUNT_CACHE_DIR")
    os.environ["CCOUNT_CACHE_DIR"] = str(tmp_path_factory.mktemp("ccount_cache"))
    yield
    if old is None:
        os.environ.pop("CCOUNT_CACHE_DIR", None)
    else:
        os.environ["CCOUNT_CACHE_DIR"] = old


@pytest.fixture
def errors(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The plugin's error notifications (one string each), recorded instead of shown."""
    shown: list[str] = []
    monkeypatch.setattr("napari_ccount._workers.show_error", shown.append)
    return shown


@pytest.fixture
def one_torch_thread() -> Iterator[None]:
    """One torch thread: on a shared 2-core machine OpenMP threads otherwise wait on each other."""
    import torch

    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


@pytest.fixture(scope="session")
def write_model() -> Callable[..., Path]:
    """Write a real, untrained counting model (``ccount_core.nn.model.build_model`` seeded with
    ``torch.manual_seed(seed)``, saved by ``save_model`` as safetensors + JSON card) and return
    its weights path. For tests of the plumbing around a model, not of its accuracy.

    ``labels`` are the card's ``label_names`` (one output each); ``label_scale`` defaults to
    350 ions per output; ``preprocess`` (a ``PreprocessConfig``, default the default one) gives
    the card's ``preprocess`` and ``input_shape``; ``card`` adds fields (``label_range``,
    ``metrics``); ``half`` stores float16 weights, as the shipped models are.
    """
    import torch

    from ccount_core.image.preprocess import PreprocessConfig
    from ccount_core.nn.model import build_model, save_model

    def write(
        path: Path,
        labels: Sequence[str] = ("Ca+",),
        *,
        label_scale: Sequence[float] | None = None,
        preprocess: PreprocessConfig | None = None,
        seed: int = 0,
        half: bool = False,
        card: Mapping[str, Any] | None = None,
    ) -> Path:
        cfg = PreprocessConfig() if preprocess is None else preprocess
        scale = [350.0] * len(labels) if label_scale is None else list(label_scale)
        torch.manual_seed(seed)
        model = build_model(len(labels), label_scale=scale).eval()
        weights, _ = save_model(
            path,
            model,
            {
                "label_names": list(labels),
                "preprocess": cfg.to_dict(),
                "input_shape": list(cfg.output_shape),
                **(card or {}),
            },
            half=half,
        )
        return weights

    return write


@pytest.fixture(scope="session")
def model_file(write_model: Callable[..., Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny model of the demo and plugin tests: seed 0, the default preparation, float16
    weights, and a second output for ND3+ as a model trained with ``--labels Ca+ ND3+`` has."""
    return write_model(
        tmp_path_factory.mktemp("model") / "tiny.safetensors",
        ["Ca+", "ND3+"],
        label_scale=[300.0, 200.0],
        half=True,
    )


def _spot_md(
    trap: Mapping[str, Any],
    ions: Sequence[tuple[str, int]],
    simulation: Mapping[str, Any],
    seed: int,
) -> tuple[Any, Any]:
    """No MD: every ion at the origin (``_spot_render`` places the spots)."""
    import numpy as np

    n = sum(c for _, c in ions)
    return np.zeros((1, n, 3)), np.ones(n, bool)


def _spot_render(samples: Any, fluorescing: Any, imaging: Mapping[str, Any], rng: Any) -> Any:
    """Spots inside an ellipse (trap axis horizontal) whose semi-axes grow with the number of
    fluorescing ions, so the shared pipeline prepares them as it prepares real renders."""
    import numpy as np

    rows, cols = imaging["shape"]
    n = int(fluorescing.sum())
    a, b = 8 + n / 4, 4 + n / 8  # px
    image = np.zeros((rows, cols), np.float32)
    yy, xx = np.mgrid[:rows, :cols]
    t = rng.uniform(0, 2 * np.pi, n)
    r = np.sqrt(rng.uniform(0, 1, n))
    for y, x in zip(rows / 2 + b * r * np.sin(t), cols / 2 + a * r * np.cos(t), strict=True):
        image += np.exp(-((yy - y) ** 2 + (xx - x) ** 2) / 2.0)
    return image


@pytest.fixture(scope="session")
def spot_store() -> Callable[[Mapping[str, Any], Path], Path]:
    """``make(spec, path)``: run a data-set spec into a store at ``path`` with a stand-in
    simulator (elliptical crystals of bright spots that grow with the ion number) on an
    in-process dask cluster; returns ``path``."""

    def make(spec: Mapping[str, Any], path: Path) -> Path:
        from distributed import Client, LocalCluster

        from ccount_core.dataset import generate

        cluster = LocalCluster(
            n_workers=1, threads_per_worker=1, processes=False, dashboard_address=None
        )
        with Client(cluster) as client:
            generate(spec, path, client=client, simulate_fn=_spot_md, render_fn=_spot_render)
        cluster.close()
        return path

    return make
