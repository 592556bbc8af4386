"""STACKL's invocation and stack instance -> the task, by STACKL's own rules."""

from __future__ import annotations

from typing import Any

import pytest
from stackl_helpers import core_invocation, entry
from stackl_standin import StacklStandIn, stack_instance

from runner_agent.model.agents import AgentRegistry
from runner_agent.model.placeholders import resolve
from runner_agent.report.model import Report, Status
from runner_agent.stackl import (
    StacklClient,
    StacklError,
    StacklInvalid,
    identity_for,
    invocation_to_tasks,
    report_to_outputs,
    report_to_result,
)
from runner_agent.stackl.invocation import escape, map_invocation, parse_invocation

INSTANCE = stack_instance(
    "shop",
    {"web": [entry("dc1", {"message": "one"}), entry("dc2", {"message": "two"})]},
)


def task_for(registry: AgentRegistry, **change: Any) -> Any:
    invoc = {**core_invocation("create", "probe", "shop", "web", "dc2"), **change}
    (task,) = invocation_to_tasks(invoc, INSTANCE, registry=registry)
    return task


def test_the_agent_is_the_ansible_role_else_the_functional_requirement(
    registry: AgentRegistry,
) -> None:
    assert task_for(registry).agent == "probe"
    named = task_for(registry, functional_requirement="web_config", ansible_role="probe")
    assert named.agent == "probe" and named.identity == "shop/web/web_config/dc2"


def test_config_comes_from_the_service_entry_on_the_invocations_target(
    registry: AgentRegistry,
) -> None:
    assert task_for(registry).config == {"message": "two"}


def test_the_identity_names_instance_service_requirement_and_target(
    registry: AgentRegistry,
) -> None:
    assert task_for(registry).identity == "shop/web/probe/dc2"
    folded = identity_for(core_invocation("create", "probe", "Shop Prod", "web", "dc1"))
    assert folded.startswith("shop-prod-") and folded.endswith("/web/probe/dc1")
    assert folded != identity_for(core_invocation("create", "probe", "shop-prod", "web", "dc1"))


def test_create_and_update_run_the_digest_and_delete_uninstalls(registry: AgentRegistry) -> None:
    assert task_for(registry).command is None
    assert task_for(registry, action="update").command is None
    assert task_for(registry, action="delete").command == "uninstall"


def test_without_hosts_the_task_runs_on_stackls_service_index_host(
    registry: AgentRegistry,
) -> None:
    assert task_for(registry).inventory() == {
        "web": {"hosts": {"web_1": {"ansible_connection": "local"}}}
    }


def test_given_hosts_are_the_inventory_on_the_invocations_connection(
    registry: AgentRegistry,
) -> None:
    ssh = task_for(registry, hosts=["web-01", "web-02"]).inventory()
    assert ssh == {"web": {"hosts": {"web-01": {}, "web-02": {}}}}
    winrm = task_for(registry, hosts=["win-01"], connection="winrm").inventory()
    assert winrm == {"web": {"hosts": {"win-01": {"ansible_connection": "winrm"}}}}


def test_the_task_times_out_with_the_job(registry: AgentRegistry) -> None:
    invoc = core_invocation("create", "probe", "shop", "web", "dc1")
    mapped = map_invocation(parse_invocation(invoc), INSTANCE, registry=registry, timeout=90)
    assert mapped.task.timeout == 90


def test_secrets_become_env_placeholders_and_only_a_local_run_decodes_them(
    registry: AgentRegistry,
) -> None:
    instance = stack_instance("shop", {"web": [entry("dc1", {}, secrets={"message": "aGk="})]})
    parsed = parse_invocation(core_invocation("create", "probe", "shop", "web", "dc1"))
    remote = map_invocation(parsed, instance, registry=registry)
    local = map_invocation(parsed, instance, registry=registry, decode_secrets=True)
    assert remote.task.config == {"message": "${env:RA_SECRET_MESSAGE}"}
    assert remote.secret_env == {} and local.secret_env == {"RA_SECRET_MESSAGE": "hi"}


def test_escaped_stackl_text_resolves_to_itself() -> None:
    text = {"a": "${env:HOME}", "b": ["x ${outputs:shop/db:pw} y", "$${env:X}", "${other}"]}

    def lookup(placeholder: object) -> str:
        raise AssertionError(f"resolved {placeholder}")

    assert resolve(escape(text), lookup) == text


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"playbook_path": "site.yml"}, "playbook_path"),
        ({"functional_requirement": "nope"}, "functional_requirement"),
        ({"ansible_role": "nope"}, "ansible_role"),
        ({"service": "db"}, "service"),
        ({"action": "restart"}, "action"),
    ],
)
def test_what_cannot_become_a_task_is_invalid_naming_the_field(
    registry: AgentRegistry, change: dict[str, Any], field: str
) -> None:
    with pytest.raises(StacklInvalid) as caught:
        task_for(registry, **change)
    assert caught.value.problems[0].field == field


def test_a_result_keeps_every_key_and_a_timed_out_run_says_so() -> None:
    invoc = core_invocation("create", "probe", "shop", "web", "dc1")
    report = Report(
        "shop/web/probe/dc1",
        "probe",
        "2.0.0",
        Status.ERROR,
        timed_out=True,
        error="ran longer than 2s",
        outputs={"a": 1},
    )
    result = report_to_result(report, invoc)
    assert result == {
        **invoc,
        "status": "FAILED",
        "error_message": "timeout in invoked job: ran longer than 2s",
    }
    assert report_to_outputs(report, invoc) == {
        "stack_instance": "shop",
        "service": "web",
        "infrastructure_target": "dc1",
        "outputs": {"a": 1},
    }


def test_the_stackl_token_comes_from_the_environment_and_credentials_stay_out_of_errors(
    stackl: StacklStandIn,
) -> None:
    stackl.token = "stackl-token-CANARY"
    stackl.put(INSTANCE)
    client = StacklClient.from_environ(stackl.base, {"RUNNER_AGENT_STACKL_TOKEN": stackl.token})
    assert client.get_stack_instance("shop")["name"] == "shop"
    with_password = stackl.base.replace("http://", "http://user:pa55-CANARY@")
    with pytest.raises(StacklError) as caught:
        StacklClient(with_password).get_stack_instance("shop")
    assert "401" in str(caught.value) and "pa55-CANARY" not in str(caught.value)
