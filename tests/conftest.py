"""Shared fixtures. napari's own pytest plugin provides ``make_napari_viewer``."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest


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
