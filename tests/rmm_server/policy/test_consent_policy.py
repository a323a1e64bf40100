"""Test the consent mode set by policy layers: precedence, default, validation, shipped set."""

from __future__ import annotations

from pathlib import Path

import pytest

from rmm_common.errors import PolicyError
from rmm_proto import commands_pb2
from rmm_server.policy import AgentContext, load_policy_dir, validate_path
from rmm_server.policy.model import CONSENT_MODES, ConsentSetting

ROOT = Path(__file__).resolve().parents[3]
SHIPPED = ROOT / "policies"
HEAD = "apiVersion: rmm/v1\nkind: AlertPolicy\n"
RULE = "rules:\n  - {name: CpuHigh, expr: cpu_usage_ratio > 0.9}\n"


def agent(
    tags: set[str] | None = None, client: str = "acme", site: str = "hq", agent_id: str = "a1"
) -> AgentContext:
    return AgentContext(
        agent_id=agent_id,
        hostname=f"host-{agent_id}",
        client=client,
        site=site,
        tags=frozenset(tags or set()),
        os="linux",
        interval_seconds=60.0,
        seconds_since_report=10.0,
        info={},
    )


def doc(
    name: str, scope: str, consent: str | None, layer: str = "global", rules: bool = False
) -> str:
    text = HEAD + f"metadata: {{name: {name}}}\nlayer: {layer}\nscope: {scope}\n"
    if consent is not None:
        text += f"consent: {consent}\n"
    return text + (RULE if rules else "")


def test_layers_decide_lowest_wins_and_none_means_notify(tmp_path: Path) -> None:
    (tmp_path / "a-global.yaml").write_text(doc("base", "{all: true}", "notify", rules=True))
    (tmp_path / "b-client.yaml").write_text(doc("acme", "{clients: [acme]}", "ask", layer="client"))
    (tmp_path / "c-agent.yaml").write_text(
        doc("kiosk", "{agents: [" + "a2" * 16 + "]}", "unattended", layer="agent")
    )
    policies = load_policy_dir(tmp_path)

    # The agent layer beats the client layer, which beats the global one.
    assert policies.consent_for(agent(agent_id="a1")) == ConsentSetting(
        "ask", "acme", f"{tmp_path / 'b-client.yaml'}:6", "client"
    )
    kiosk = policies.consent_for(agent(agent_id="a2" * 16))  # a whole id, as enrollment makes
    assert (kiosk.mode, kiosk.policy, kiosk.layer) == ("unattended", "kiosk", "agent")
    assert kiosk.source == f"{tmp_path / 'c-agent.yaml'}:6"
    other = policies.consent_for(agent(client="globex", agent_id="a3"))
    assert (other.mode, other.policy) == ("notify", "base")
    # The order of files does not matter against layers: a global file sorting last loses.
    (tmp_path / "z-global.yaml").write_text(doc("late", "{all: true}", "unattended"))
    assert load_policy_dir(tmp_path).consent_for(agent()).mode == "ask"


def test_within_a_layer_the_later_document_wins(tmp_path: Path) -> None:
    (tmp_path / "policies.yaml").write_text(
        doc("first", "{all: true}", "ask", rules=True)
        + "---\n"
        + doc("second", "{tags: [kiosk]}", "unattended")
    )
    policies = load_policy_dir(tmp_path)
    assert policies.consent_for(agent({"kiosk"})).policy == "second"
    assert policies.consent_for(agent({"kiosk"})).mode == "unattended"
    # Out of the later document's scope, the earlier one still holds.
    assert policies.consent_for(agent({"desk"})).mode == "ask"


def test_default_is_notify_when_no_document_sets_consent(tmp_path: Path) -> None:
    (tmp_path / "p.yaml").write_text(doc("base", "{all: true}", None, rules=True))
    setting = load_policy_dir(tmp_path).consent_for(agent())
    assert setting == ConsentSetting("notify")
    assert (setting.policy, setting.source) == ("", "")


def test_the_answer_is_cached_per_agent(tmp_path: Path) -> None:
    (tmp_path / "p.yaml").write_text(doc("base", "{all: true}", "ask", rules=True))
    policies = load_policy_dir(tmp_path)
    assert policies.consent_for(agent()) is policies.consent_for(agent())


def test_mode_numbers_are_the_proto_enum() -> None:
    for mode in CONSENT_MODES:
        number = commands_pb2.ConsentMode.Value(f"CONSENT_{mode.upper()}")
        assert ConsentSetting(mode).number == number


def test_an_unknown_mode_is_an_error_with_file_line_and_column(tmp_path: Path) -> None:
    path = tmp_path / "p.yaml"
    path.write_text(doc("base", "{all: true}", "loud", rules=True))
    errors = validate_path(path)
    assert len(errors) == 1
    assert errors[0].startswith(
        f"{path}:6:10: policy \"base\": consent must be one of unattended|notify|ask, got 'loud'"
    )
    path.write_text(doc("base", "{all: true}", "[ask]", rules=True))
    assert validate_path(path)[0].startswith(f'{path}:6:10: policy "base": consent must be')
    with pytest.raises(PolicyError):
        load_policy_dir(path)


def test_a_document_needs_rules_or_consent(tmp_path: Path) -> None:
    path = tmp_path / "p.yaml"
    path.write_text(doc("empty", "{all: true}", None))
    errors = validate_path(path)
    assert errors == [f"{path}:1:1: missing required key 'rules' (or set consent: only)"]
    path.write_text(doc("only-consent", "{all: true}", "ask"))
    assert validate_path(path) == []


def test_shipped_policies_servers_unattended_workstations_notify() -> None:
    policies = load_policy_dir(SHIPPED)
    server = policies.consent_for(agent({"server"}))
    assert (server.mode, server.policy) == ("unattended", "servers")
    assert server.source.startswith(str(SHIPPED / "servers.yaml") + ":")
    workstation = policies.consent_for(agent({"workstation"}))
    assert (workstation.mode, workstation.policy) == ("notify", "workstations")
    # Untagged agents are neither: the default keeps actions visible.
    assert policies.consent_for(agent()).mode == "notify"
