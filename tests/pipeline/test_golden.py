"""Golden files: the rendered YAML of the examples, so every template change shows as a diff.

Run ``UPDATE_GOLDEN=1 pytest tests/pipeline/test_golden.py`` to rewrite them after a deliberate
change, and review the diff.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from runner_agent.model.agents import default_registry
from runner_agent.model.tasks import load_tasks
from runner_agent.pipeline import ci_schema
from runner_agent.pipeline.render import RenderOptions, render_child

HERE = Path(__file__).parent / "golden"
ROOT = Path(__file__).resolve().parents[2]
SOURCES = sorted((ROOT / "examples").glob("*.y*ml")) + sorted((HERE / "tasks").glob("*.yml"))
# what the shipped parent pipeline's plan job renders with its default inputs
OPTIONS = RenderOptions(tasks_from_job="runner-agent-plan", default_tags=("runner-agent",))


def _golden(source: Path) -> Path:
    folder = HERE / ("examples" if source.parent.name == "examples" else "")
    return folder / f"{source.stem}.gitlab-ci.yml"


def test_there_are_sources() -> None:
    assert len(SOURCES) >= 2


@pytest.mark.parametrize("source", SOURCES, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_rendered_yaml_matches_golden_file(source: Path) -> None:
    pipelines = render_child(load_tasks([source], default_registry()), OPTIONS)
    text = "---\n".join(p.text for p in pipelines)
    golden = _golden(source)
    if os.environ.get("UPDATE_GOLDEN") == "1":
        golden.parent.mkdir(parents=True, exist_ok=True)
        golden.write_text(text, encoding="utf-8")
    assert golden.is_file(), (
        f"no golden file {golden}: run UPDATE_GOLDEN=1 pytest tests/pipeline/test_golden.py"
    )
    assert text == golden.read_text(encoding="utf-8")
    assert ci_schema.problems(golden.read_text(encoding="utf-8")) == []
