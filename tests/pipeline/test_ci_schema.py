"""GitLab's CI schema, and the rules GitLab enforces that the schema does not."""

from __future__ import annotations

import textwrap

import pytest

from runner_agent.core.errors import InvalidInput
from runner_agent.pipeline import ci_schema

GOOD = """
stages: [build, deploy]
.template:
  script: [echo hi]
build:
  stage: build
  extends: .template
  resource_group: runner-agent/acme/web
deploy:
  stage: deploy
  needs: [build]
  script:
    - !reference [.template, script]
    - echo done
"""


def _problems(text: str, **kwargs: object) -> list[str]:
    return [str(p) for p in ci_schema.problems(textwrap.dedent(text), "t.yml", **kwargs)]  # type: ignore[arg-type]


def test_a_valid_file_has_no_problem() -> None:
    assert _problems(GOOD) == []


BAD = {
    "undeclared stage": ("stages: [build]\njob:\n  stage: test\n  script: [x]\n", "not declared"),
    "default stages": ("job:\n  stage: agents\n  script: [x]\n", "'agents' is not declared"),
    "needs missing job": ("a:\n  script: [x]\n  needs: [b]\n", "'b', which does not exist"),
    "needs later stage": (
        "stages: [s1, s2]\na:\n  stage: s1\n  script: [x]\n  needs: [b]\n"
        "b:\n  stage: s2\n  script: [x]\n",
        "from a later stage",
    ),
    "needs itself": ("a:\n  script: [x]\n  needs: [a]\n", "cannot need itself"),
    "needs cycle": (
        "a:\n  script: [x]\n  needs: [b]\nb:\n  script: [x]\n  needs: [a]\n",
        "cycle",
    ),
    "too many needs": (
        "".join(f"j{i}:\n  script: [x]\n" for i in range(51))
        + "last:\n  script: [x]\n  needs: ["
        + ", ".join(f"j{i}" for i in range(51))
        + "]\n",
        "more than 50 needs",
    ),
    "missing extends": ("a:\n  extends: .nope\n  script: [x]\n", "extends '.nope'"),
    "missing reference": ("a:\n  script: [!reference [.nope, script]]\n", "!reference to '.nope'"),
    "long name": ("n" * 256 + ":\n  script: [x]\n", "longer than 255"),
    "duplicate job": ("a:\n  script: [x]\na:\n  script: [y]\n", "duplicate key 'a'"),
    "schema: bad when": ("a:\n  script: [x]\n  when: sometimes\n", "GitLab's CI schema"),
    "schema: bad retry": (
        "a:\n  script: [x]\n  retry: {max: 2, when: [oops]}\n",
        "GitLab's CI schema",
    ),
    "no script": ("a:\n  stage: test\n", "needs script:, run: or trigger:"),
    "dependency later": (
        "stages: [s1, s2]\na:\n  stage: s1\n  script: [x]\n  dependencies: [b]\n"
        "b:\n  stage: s2\n  script: [x]\n",
        "not in an earlier stage",
    ),
    "artifact job": (
        "a:\n  trigger:\n    include:\n      - {artifact: c.yml, job: gen}\ngen:\n  script: [x]\n",
        "artifact job 'gen'",
    ),
    "resource group": ("a:\n  script: [x]\n  resource_group: 'a;b'\n", "resource_group"),
    "no job": ("stages: [a]\n", "no job"),
    "not yaml": ("a: [\n", "not valid YAML"),
    "not a mapping": ("- a\n", "a mapping"),
}


@pytest.mark.parametrize("case", BAD)
def test_what_gitlab_refuses(case: str) -> None:
    text, message = BAD[case]
    found = ci_schema.problems(text, "t.yml")
    assert any(message in str(p) for p in found), found


def test_size_limit() -> None:
    text = (
        "a:\n  script:\n" + "    - echo xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\n" * 45_000
    )
    assert len(text) > ci_schema.MAX_CONFIG_BYTES
    assert "at most 2097152" in _problems(text)[0]


def test_job_count_limit() -> None:
    text = "".join(f"j{i}:\n  script: [x]\n" for i in range(4))
    assert _problems(text, max_jobs=4) == []
    assert "4 jobs; at most 3" in _problems(text, max_jobs=3)[0]


def test_an_extends_target_may_come_from_an_include() -> None:
    assert _problems("include: [{local: base.yml}]\na:\n  extends: .base\n") == []


def test_optional_needs_and_other_pipelines_are_not_local_needs() -> None:
    text = """
    a:
      script: [x]
      needs:
        - {job: gone, optional: true}
        - {pipeline: $PARENT_PIPELINE_ID, job: plan}
    """
    assert _problems(text) == []


SPEC = """
spec:
  inputs:
    stage:
      default: test
    tags:
      type: array
      default: [a]
    name:
      regex: '^[a-z]+$'
---
job:
  stage: $[[ inputs.stage ]]
  tags: $[[ inputs.tags ]]
  script: ["echo $[[ inputs.name ]]"]
"""


def test_inputs_are_interpolated_with_their_types() -> None:
    assert _problems(SPEC, inputs={"name": "abc"}) == []
    assert _problems(SPEC, inputs={"name": "abc", "tags": ["x", "y"]}) == []
    assert "not declared" in _problems(SPEC, inputs={"name": "abc", "stage": "nope"})[0]


@pytest.mark.parametrize(
    ("inputs", "message"),
    [
        ({}, "has no value and no default"),
        ({"name": "ABC"}, "does not match"),
        ({"name": "abc", "other": "x"}, "unknown input(s) other"),
    ],
)
def test_bad_inputs_are_refused(inputs: dict[str, object], message: str) -> None:
    assert message in _problems(SPEC, inputs=inputs)[0]


def test_validate_text_raises_invalid_input_with_every_problem() -> None:
    with pytest.raises(InvalidInput) as info:
        ci_schema.validate_text("a:\n  script: [x]\n  needs: [b, c]\n", "t.yml")
    assert [p.field for p in info.value.problems] == ["a", "a"]
    assert info.value.exit_code == 2
