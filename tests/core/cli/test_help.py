"""What ``ccount ... --help`` shows: every shipped spec, and plain text without markup."""

from __future__ import annotations

import re
from importlib.resources import files

import pytest

from ccount_core.cli import main


def _help(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    with pytest.raises(SystemExit):
        main([*argv, "--help"])
    return " ".join(capsys.readouterr().out.split())  # lines joined as one text


def test_dataset_generate_lists_every_shipped_spec(capsys: pytest.CaptureFixture[str]) -> None:
    shipped = sorted(
        f.name[: -len(".yaml")]
        for f in (files("ccount_core") / "specs").iterdir()
        if f.name.endswith(".yaml")
    )
    assert len(shipped) > 2
    text = _help(capsys, "dataset", "generate")
    assert f"a shipped one by name: {', '.join(shipped)}" in text


@pytest.mark.parametrize(
    "command", ["simulate", "dataset", "train", "evaluate", "count", "demo", "kinetics"]
)
def test_help_is_plain_text(capsys: pytest.CaptureFixture[str], command: str) -> None:
    text = _help(capsys, command)
    assert "%%" not in text
    assert not re.search(r"``|:func:|:class:|:mod:", text)
