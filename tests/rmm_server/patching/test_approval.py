"""approval.decide: manual records, decline rules, deferral, include/exclude, drivers apart."""

from __future__ import annotations

from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from rmm_server.patching import approval
from rmm_server.patching.approval import ManualIndex, compile_rules, decide, decide_for
from rmm_server.patching.model import (
    APPROVED,
    CLASSIFICATIONS,
    DECLINED,
    PENDING,
    ApprovalRule,
    ManualDecision,
    NamePattern,
    PatchSettings,
    UpdateFacts,
)
from rmm_server.policy import AgentContext, load_policy_dir
from tests.fuzz import FUZZ, examples

DAY = 86400.0
NOW = 1_800_000_000.0
AGENT_ID = "a1" * 16

POLICY = """\
apiVersion: rmm/v1
kind: PatchPolicy
metadata: {name: p}
scope: {all: true}
approval:
  - name: security
    classifications: [security, critical]
  - name: bugfix
    classifications: [bugfix]
    min_age_days: 7
    exclude: ["linux-image-*", {regex: "^kernel(-[a-z]+)?$"}]
  - name: no-previews
    action: decline
    classifications: [feature, bugfix, security]
    include: [{regex: ".*[Pp]review.*"}]
  - name: browsers
    classifications: [third-party]
    include: ["winget:Mozilla.*", "winget:Google.Chrome"]
  - name: important-only
    classifications: [feature]
    severities: [critical, important]
  - name: nic
    classifications: [driver]
    hardware_ids: ["PCI\\\\VEN_8086&DEV_15B8"]
"""


def update(
    name: str = "openssl",
    classification: str = "security",
    published: float | None = NOW - DAY,
    severity: str = "",
    uid: str | None = None,
    hardware_ids: tuple[str, ...] = (),
) -> UpdateFacts:
    return UpdateFacts(
        id=uid or f"apt:{name}",
        name=name,
        current="1.0",
        available="1.1",
        classification=classification,
        backend=(uid or "apt:").split(":")[0],
        severity=severity,
        published=published,
        hardware_ids=hardware_ids,
    )


def settings_for(tmp_path: Path, client: str = "acme") -> PatchSettings:
    (tmp_path / "p.yaml").write_text(POLICY)
    agent = AgentContext(AGENT_ID, "web01", client, "hq", frozenset(), "linux", 60.0, 1.0, {})
    return load_policy_dir(tmp_path).patches.settings_for(agent)


def manual(
    update_id: str, action: str, scope: str = "everywhere", target: str = "", at: float = NOW
) -> ManualDecision:
    return ManualDecision(update_id, action, scope, target, "alice", at, "ticket 42")


def test_rules_approve_by_classification_and_deferral_holds_bugfixes(tmp_path: Path) -> None:
    rules = approval.rule_book(settings_for(tmp_path).rules)
    approved = decide(update(), rules, now=NOW)
    assert approved.state == APPROVED and approved.rule == "p/security"
    assert 'rule "security"' in approved.why and "p.yaml:6" in approved.why
    # Released a day ago, a bugfix waits for its seven days, and says until when.
    waiting = decide(update("bash", "bugfix"), rules, now=NOW)
    assert waiting.state == PENDING and waiting.not_before == NOW - DAY + 7 * DAY
    assert waiting.why.startswith('deferred: rule "bugfix"')
    assert decide(update("bash", "bugfix"), rules, now=NOW + 6 * DAY).state == APPROVED
    # No release date: the age counts from when the server first saw it, or not at all.
    undated = update("bash", "bugfix", published=None)
    assert decide(undated, rules, now=NOW).state == PENDING
    assert decide(undated, rules, now=NOW, first_seen=NOW - 8 * DAY).state == APPROVED
    assert decide(undated, rules, now=NOW, first_seen=NOW - DAY).not_before == NOW + 6 * DAY


def test_include_and_exclude_by_glob_and_regex(tmp_path: Path) -> None:
    rules = approval.rule_book(settings_for(tmp_path).rules)
    old = NOW - 30 * DAY
    assert decide(update("bash", "bugfix", old), rules, now=NOW).state == APPROVED
    # Excluded by a glob on the name, and by a whole-name regular expression.
    image = decide(update("linux-image-6.1", "bugfix", old), rules, now=NOW)
    assert image.state == PENDING and "no approval rule" in image.why
    assert decide(update("kernel-core", "bugfix", old), rules, now=NOW).state == PENDING
    assert decide(update("kernel-core-extra", "bugfix", old), rules, now=NOW).state == APPROVED
    # Include globs may name ids: only the listed third-party apps.
    firefox = update("Firefox", "third-party", uid="winget:Mozilla.Firefox")
    assert decide(firefox, rules, now=NOW).state == APPROVED
    vlc = update("VLC", "third-party", uid="winget:VideoLAN.VLC")
    assert decide(vlc, rules, now=NOW).state == PENDING
    # Severity filter: a feature update approved only when important or critical.
    assert decide(update("f", "feature", severity="Important"), rules, now=NOW).state == APPROVED
    assert decide(update("f", "feature", severity="Low"), rules, now=NOW).state == PENDING
    assert decide(update("f", "feature"), rules, now=NOW).state == PENDING


def test_a_decline_rule_wins_over_any_approval(tmp_path: Path) -> None:
    rules = approval.rule_book(settings_for(tmp_path).rules)
    preview = decide(update("dotnet-preview", "security"), rules, now=NOW)
    assert preview.state == DECLINED and preview.rule == "p/no-previews"
    # The order of the rules in the file does not matter: a decline rule written first or
    # last declines alike.
    first = compile_rules(tuple(reversed(settings_for(tmp_path).rules)))
    assert decide(update("dotnet-preview", "security"), first, now=NOW).state == DECLINED


def test_drivers_and_firmware_only_by_their_own_rules_and_pins(tmp_path: Path) -> None:
    rules = approval.rule_book(settings_for(tmp_path).rules)
    pinned = update(
        "Intel NIC",
        "driver",
        uid="windows-update:1234",
        hardware_ids=("pci\\ven_8086&dev_15b8",),
    )
    assert decide(pinned, rules, now=NOW).state == APPROVED
    other = update("Intel NIC", "driver", uid="windows-update:99", hardware_ids=("PCI\\VEN_10EC",))
    assert decide(other, rules, now=NOW).state == PENDING
    # The id's key is a hardware id too (fwupd's device id).
    assert (
        decide(update("x", "driver", uid="fwupd:PCI\\VEN_8086&DEV_15B8"), rules, now=NOW).state
        == APPROVED
    )
    # No software rule ever reaches firmware, however wide its patterns.
    firmware = decide(update("UEFI", "firmware", uid="fwupd:abc"), rules, now=NOW)
    assert firmware.state == PENDING and "firmware" in firmware.why


def test_manual_records_override_rules_narrowest_scope_and_latest_win(tmp_path: Path) -> None:
    settings = settings_for(tmp_path)
    rules = approval.rule_book(settings.rules)
    openssl = update()
    index = ManualIndex([manual("apt:openssl", "decline")])
    declined = decide(openssl, rules, index.for_agent(AGENT_ID, "acme", "hq"), NOW)
    assert declined.state == DECLINED and declined.manual is not None
    assert declined.why == "declined by alice everywhere: ticket 42"
    # A narrower approval (this site) beats the fleet-wide decline, for this site only.
    index = ManualIndex(
        [manual("apt:openssl", "decline"), manual("apt:openssl", "approve", "site", "acme/hq")]
    )
    assert decide(openssl, rules, index.for_agent(AGENT_ID, "acme", "hq"), NOW).state == APPROVED
    assert decide(openssl, rules, index.for_agent("b2" * 16, "acme", "lab"), NOW).state == DECLINED
    # A manual approval beats a decline rule; a glob decline declines what a rule approves.
    index = ManualIndex(
        [
            manual("apt:dotnet-preview", "approve", "agent", AGENT_ID),
            manual("apt:open*", "decline", "client", "acme"),
        ]
    )
    mine = index.for_agent(AGENT_ID, "acme", "hq")
    assert decide(update("dotnet-preview"), rules, mine, NOW).state == APPROVED
    glob = decide(openssl, rules, mine, NOW)
    assert glob.state == DECLINED and "matching apt:open*" in glob.why
    # In one scope an exact id beats a glob, then the latest record wins.
    index = ManualIndex(
        [
            manual("apt:open*", "decline", "client", "acme", at=NOW),
            manual("apt:openssl", "approve", "client", "acme", at=NOW - 10),
            manual("apt:bash", "approve", "client", "acme", at=NOW - 10),
            manual("apt:bash", "decline", "client", "acme", at=NOW),
        ]
    )
    mine = index.for_agent(AGENT_ID, "acme", "hq")
    assert decide(openssl, rules, mine, NOW).state == APPROVED
    assert decide(update("bash", "bugfix"), rules, mine, NOW).state == DECLINED
    # Through the settings, as P2 calls it for one update.
    assert decide_for(openssl, settings, index, "acme", "hq", NOW).state == APPROVED


def test_an_unknown_classification_waits_for_an_operator(tmp_path: Path) -> None:
    rules = approval.rule_book(settings_for(tmp_path).rules)
    odd = decide(update("x", "optional"), rules, now=NOW)
    assert odd.state == PENDING and "unknown classification 'optional'" in odd.why


def test_equal_rule_tuples_compile_once(tmp_path: Path) -> None:
    (tmp_path / "p.yaml").write_text(POLICY)
    patches = load_policy_dir(tmp_path).patches
    one = patches.settings_for(
        AgentContext("a" * 32, "h1", "c", "s", frozenset(), "linux", 60, 1, {})
    )
    two = patches.settings_for(
        AgentContext("b" * 32, "h2", "d", "t", frozenset(), "linux", 60, 1, {})
    )
    assert one.rules is two.rules
    assert approval.rule_book(one.rules) is approval.rule_book(two.rules)


def test_a_pin_matches_the_hardware_ids_the_agent_reports(tmp_path: Path) -> None:
    # The agent's own parsers on recorded output, through the JSON the collector sends.
    from rmm_agent.patching import fwupd, windows_update  # noqa: PLC0415 - tests may cross

    fixtures = Path(__file__).resolve().parents[2] / "fixtures" / "patching"
    found = windows_update.parse_search_output(
        (fixtures / "windows_update_search_win11-23H2_powershell5.1.json").read_text()
    )
    (driver,) = [u for u in found if u.classification == "driver"]
    assert driver.hardware_ids == ("PCI\\VEN_8086&DEV_A7A0&SUBSYS_0B141028",)
    facts = UpdateFacts.from_dict(driver.to_dict())
    policy = POLICY.replace("DEV_15B8", "DEV_A7A0&SUBSYS_0B141028")
    (tmp_path / "p.yaml").write_text(policy)
    agent = AgentContext(AGENT_ID, "web01", "acme", "hq", frozenset(), "windows", 60.0, 1.0, {})
    settings = load_policy_dir(tmp_path).patches.settings_for(agent)
    assert decide(facts, approval.rule_book(settings.rules), now=NOW).state == APPROVED
    firmware = fwupd.parse_get_updates(
        (fixtures / "fwupdmgr_get-updates_json_debian12-fwupd1.9.json").read_text()
    )
    assert firmware[0].hardware_ids and all(len(g) == 36 for g in firmware[0].hardware_ids)
    assert UpdateFacts.from_dict(firmware[0].to_dict()).hardware_ids == firmware[0].hardware_ids


# ---- properties over random rules and updates --------------------------------------------------

_names = st.sampled_from(["openssl", "linux-image-6.1", "dotnet-preview", "bash", "Intel NIC"])
_classes = st.sampled_from([*CLASSIFICATIONS, "optional"])
_rule = st.builds(
    lambda name, action, classes, severities, days, include, exclude: ApprovalRule(
        name=name,
        action=action,
        classifications=frozenset(classes),
        severities=frozenset(severities),
        min_age_seconds=days * DAY,
        include=tuple(NamePattern.glob(p) for p in include),
        exclude=tuple(NamePattern.regex(p) for p in exclude),
        policy="p",
    ),
    st.sampled_from(["a", "b", "c", "d"]),
    st.sampled_from(["approve", "decline"]),
    st.sets(st.sampled_from(CLASSIFICATIONS), min_size=1, max_size=3),
    st.sets(st.sampled_from(["critical", "low", "unknown"]), max_size=2),
    st.integers(0, 10),
    st.lists(st.sampled_from(["*ssl*", "linux-*", "apt:*", "*"]), max_size=2),
    st.lists(st.sampled_from([".*preview.*", "bash", "linux-image-[0-9.]+"]), max_size=2),
)
_update = st.builds(
    lambda name, classification, severity, age: update(
        name, classification, NOW - age * DAY, severity
    ),
    _names,
    _classes,
    st.sampled_from(["", "Critical", "Low"]),
    st.integers(0, 12),
)


@settings(FUZZ, max_examples=examples(300))
@given(st.lists(_rule, max_size=6), _update)
def test_rule_order_never_matters_and_device_updates_need_their_own_rule(
    rules: list[ApprovalRule], pending: UpdateFacts
) -> None:
    decision = decide(pending, compile_rules(rules), now=NOW)
    reversed_decision = decide(pending, compile_rules(list(reversed(rules))), now=NOW)
    assert decision.state == reversed_decision.state
    if decision.state == APPROVED and pending.classification in ("driver", "firmware"):
        assert any(pending.classification in r.classifications for r in rules)
    declining = [
        r for r in rules if r.action == "decline" and pending.classification in r.classifications
    ]
    if decision.state == APPROVED:
        # Whatever approved it, no decline rule for its class matched it.
        assert all(
            decide(pending, compile_rules([r]), now=NOW).state != DECLINED for r in declining
        )
