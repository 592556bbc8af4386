"""docs/architecture.md draws the layers import-linter checks: every subpackage is a layer of
the contract and a node of the diagram, and every arrow points down the layers."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _layers() -> list[set[str]]:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    (contract,) = [c for c in config["tool"]["importlinter"]["contracts"] if c["type"] == "layers"]
    return [{name.strip() for name in layer.split("|")} for layer in contract["layers"]]


def _diagram() -> str:
    text = (ROOT / "docs" / "architecture.md").read_text(encoding="utf-8")
    return text.split("```mermaid", 1)[1].split("```", 1)[0]


def test_every_subpackage_is_a_layer_of_the_contract() -> None:
    packages = {p.parent.name for p in (ROOT / "runner_agent").glob("*/__init__.py")}
    assert packages == set().union(*_layers())


def test_every_layer_is_a_node_of_the_diagram() -> None:
    nodes = set(re.findall(r"^\s*(\w+)\[", _diagram(), re.M))
    assert nodes == set().union(*_layers())


def test_every_arrow_of_the_diagram_points_down_the_layers() -> None:
    rank = {name: n for n, layer in enumerate(_layers()) for name in layer}
    arrows = re.findall(r"^\s*(\w+) --> (\w+)\s*$", _diagram(), re.M)
    assert arrows
    upward = [(a, b) for a, b in arrows if rank[a] >= rank[b]]
    assert upward == []
