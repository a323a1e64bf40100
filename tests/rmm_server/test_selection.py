"""Target resolution: an operator's word never picks an agent by what the agent says of itself.

Every case here is one an attacker with an enrolled agent (of another client, or of the same
one) can set up by choosing its own hostname.
"""

from __future__ import annotations

import time
import uuid

import pytest

from rmm_common.agent_words import (
    WordKind,
    hostname_key,
    is_agent_id_text,
    parse_agent_word,
    shown_hostname_flagged,
)
from rmm_common.errors import InvalidArgument, NotFound, RmmError
from rmm_proto import operator_pb2
from rmm_server.fleet import Fleet
from rmm_server.selection import describe_selector, resolve_agent, select_agents
from rmm_server.storage import AgentRecord

NOW = time.time()


def agent(hostname: str, client: str = "acme", site: str = "hq", **fields: object) -> AgentRecord:
    record = AgentRecord(
        id=uuid.uuid4().hex,  # as enrollment makes them
        credential_hash="h",
        client=client,
        site=site,
        enrolled_at=NOW,
        hostname=hostname,
        last_seen=NOW,
        **fields,  # type: ignore[arg-type]
    )
    return record


def fleet_of(*agents: AgentRecord) -> Fleet:
    fleet = Fleet()
    for record in agents:
        fleet.add(record)
    return fleet


def select(fleet: Fleet, *words: str, **terms: str) -> list[str]:
    selector = operator_pb2.TargetSelector(agents=list(words), **terms)  # type: ignore[arg-type]
    return [record.id for record in select_agents(fleet, selector, NOW)]


def refusal(fleet: Fleet, *words: str, **terms: str) -> str:
    with pytest.raises(RmmError) as caught:
        select(fleet, *words, **terms)
    return str(caught.value)


# ---- the word's kind ----


def test_a_word_of_hex_digits_is_an_id_and_any_other_a_hostname() -> None:
    assert is_agent_id_text("0") and is_agent_id_text("DC01") and is_agent_id_text("f" * 32)
    assert not is_agent_id_text("f" * 33) and not is_agent_id_text("web-01")
    assert not is_agent_id_text("") and not is_agent_id_text("ab cd")
    assert parse_agent_word("DC01").kind is WordKind.ID and parse_agent_word("DC01").value == "dc01"
    assert parse_agent_word("web-01").kind is WordKind.HOST
    assert parse_agent_word("host=dc01").kind is WordKind.HOST
    assert parse_agent_word(" Agent = AB12 ").value == "ab12"
    for bad, message in [
        ("agent=web-01", "for a hostname write host=web-01"),
        ("host=", "names no hostname"),
        ("site=hq", "an agent is named by agent=ID, host=NAME"),
        ("  ", "empty"),
    ]:
        with pytest.raises(InvalidArgument, match=message):
            parse_agent_word(bad)


def test_look_alike_hostnames_have_one_key() -> None:
    key = hostname_key("web-01")
    for imitation in [
        "WEB-01",
        "web-\uff101",  # fullwidth digit
        "w\u0435b-01",  # Cyrillic e
        "web-01\u200b",  # zero-width space
        "web\u200d-01",  # zero-width joiner
        "web\u2010" + "01",  # another hyphen
        "web-01\x1b",  # a control character
        "web-01\x1b[2J",  # a terminal escape sequence
        "\x1b]0;title\x07web-01",
        "web-O1",  # letter O for digit 0
        "web-0l",  # letter l for digit 1
        "w\u00e9b-01",  # an accent
        "\U0001d430eb-01",  # mathematical bold w
        "web_01",
    ]:
        assert hostname_key(imitation) == key, ascii(imitation)
    assert hostname_key("web-02") != key and hostname_key("db-01") != key


def test_plain_ascii_hostnames_take_the_short_path_to_the_same_key() -> None:
    # A zero-width space sends a hostname through Unicode normalization and is then dropped:
    # every ASCII character must come out of both paths the same.
    for code in range(128):
        text = f"a{chr(code)}B-1"
        assert hostname_key(text) == hostname_key(text + "\u200b"), repr(chr(code))


# ---- ids are ids ----


def test_an_agent_named_after_another_clients_id_prefix_never_gets_its_commands() -> None:
    victim = agent("web-01", client="acme")
    spoof = agent(victim.id[:12], client="evil")
    full = agent(victim.id, client="evil")
    upper = agent(victim.id[:8].upper(), client="evil")
    fleet = fleet_of(victim, spoof, full, upper)
    for word in (victim.id[:12], victim.id, victim.id[:8].upper(), victim.id[:8]):
        assert select(fleet, word) == [victim.id]
        assert select(fleet, f"agent={word}") == [victim.id]


def test_an_agent_named_like_an_id_prefix_of_nobody_is_not_found_by_it() -> None:
    impostor = agent("abc123", client="evil")
    fleet = fleet_of(agent("web-01"), impostor)
    if impostor.id.startswith("abc123"):  # 1 in 16 million: the word would be its id
        pytest.skip("the random id starts with the hostname")
    message = refusal(fleet, "abc123")
    assert "no agent id starts with 'abc123'" in message
    assert "to name a hostname write host=abc123" in message
    # Said plainly (and with its client), a hex-looking hostname is a hostname.
    assert select(fleet, "host=abc123", client="evil") == [impostor.id]


def test_an_ambiguous_id_prefix_is_refused_with_the_candidates() -> None:
    first, second = agent("a"), agent("b")
    second.id = first.id[:4] + second.id[4:]
    message = refusal(fleet_of(first, second), first.id[:4])
    assert "starts 2 agent ids" in message and first.id in message and second.id in message


def test_agent_terms_must_be_ids() -> None:
    fleet = fleet_of(agent("web-01"))
    assert "for a hostname write host=web-01" in refusal(fleet, "agent=web-01")


# ---- hostnames must name exactly one agent ----


def test_a_hostname_in_two_clients_is_refused_with_both_listed() -> None:
    mine, theirs = agent("web-01", client="acme"), agent("web-01", client="evil", site="x")
    fleet = fleet_of(mine, theirs)
    for words in (["web-01"], ["host=web-01"], ["host=WEB-01"]):
        message = refusal(fleet, *words)
        assert "agents of 2 clients" in message
        assert f"{mine.id} (client 'acme', site 'hq', agent-reported hostname 'web-01')" in message
        assert f"{theirs.id} (client 'evil', site 'x', agent-reported hostname 'web-01')" in message
    # Pinning the client (it comes from the enrollment token, not from the agent) settles it.
    assert select(fleet, "web-01", client="acme") == [mine.id]
    assert select(fleet, "web-01", client="evil", site="x") == [theirs.id]


def test_what_the_agent_says_cannot_settle_a_clash() -> None:
    # os and tags are reported by the agent too: they narrow a selection, never pick a hostname.
    mine = agent("web-01", client="acme", os="windows", tags=["web"])
    theirs = agent("web-01", client="evil", os="linux", tags=["web", "x"])
    fleet = fleet_of(mine, theirs)
    for terms in ({"os": "linux"}, {"tag": "x"}, {"status": "online"}):
        assert "agents of 2 clients" in refusal(fleet, "web-01", **terms)


def test_a_hostname_twice_in_one_client_is_refused_even_when_pinned() -> None:
    first, second = agent("web-01"), agent("web-01")
    message = refusal(fleet_of(first, second), "web-01", client="acme", site="hq")
    assert "2 agents in client 'acme' in site 'hq'" in message
    assert first.id in message and second.id in message


@pytest.mark.parametrize(
    "imitation",
    ["WEB-01", "w\u0435b-01", "web-01\u200b", "web-\uff101", "web-01\x1b[2J", "web-O1"],
)
def test_a_look_alike_hostname_is_a_clash(imitation: str) -> None:
    mine, theirs = agent("web-01", client="acme"), agent(imitation, client="evil")
    fleet = fleet_of(mine, theirs)
    message = refusal(fleet, "web-01")
    assert mine.id in message and theirs.id in message
    assert ascii(imitation) in message  # shown escaped: the difference is visible
    assert "\x1b" not in message and "\u200b" not in message and "\u0435" not in message
    # The imitation alone is not taken for the name it imitates; named itself, it is found.
    alone = fleet_of(theirs)
    if imitation.lower() == "web-01":
        assert select(alone, "web-01") == [theirs.id]  # hostnames ignore case
    else:
        assert "only a look-alike" in refusal(alone, "web-01")


def test_a_unique_hostname_selects_its_agent_and_several_words_add_up() -> None:
    web, db = agent("web-01"), agent("db-01")
    fleet = fleet_of(web, db, agent("web-02"))
    assert select(fleet, "web-01") == [web.id]
    assert select(fleet, "WEB-01") == [web.id]  # hostnames ignore case
    assert sorted(select(fleet, "web-01", "db-01", db.id[:10])) == sorted([web.id, db.id])


def test_with_several_clients_a_hostname_needs_its_client() -> None:
    # Acme's new laptop has not enrolled yet; an agent of another client took its name first.
    squatter = agent("ceo-laptop", client="evil")
    web = agent("web-01", client="acme")
    fleet = fleet_of(web, squatter)
    message = refusal(fleet, "ceo-laptop")
    assert "names no client" in message and "add client=NAME" in message
    assert f"{squatter.id} (client 'evil'" in message  # listed, so it can be seen for what it is
    assert "no agent in client 'acme' reports" in refusal(fleet, "ceo-laptop", client="acme")
    assert select(fleet, "web-01", client="acme") == [web.id]
    assert select(fleet, web.id[:8]) == [web.id]  # ids need no client
    # Agents, not clients on paper: a revoked agent's client does not count.
    lone = fleet_of(web, agent("x", client="gone", revoked_at=NOW))
    assert select(lone, "web-01") == [web.id]


def test_revoked_agents_are_no_candidates_for_an_action() -> None:
    mine, old = agent("web-01"), agent("web-01", client="evil", revoked_at=NOW - 10)
    fleet = fleet_of(mine, old)
    assert select(fleet, "web-01") == [mine.id]
    assert "no agent id starts with" in refusal(fleet, old.id)


def test_nothing_found_says_so() -> None:
    fleet = fleet_of(agent("web-01", client="acme"))
    with pytest.raises(NotFound, match="no agent in client 'evil' reports the hostname 'web-01'"):
        select(fleet, "web-01", client="evil")


def test_resolve_agent_reads_light_rows_too() -> None:
    from rmm_server.storage.store import AgentName  # noqa: PLC0415 (only this test)

    rows = [AgentName("0" * 32, "acme", "hq", "web-01"), AgentName("1" * 32, "evil", "hq", "W")]
    assert resolve_agent(rows, parse_agent_word("web-01")).id == "0" * 32
    assert resolve_agent(rows, parse_agent_word("1111")).id == "1" * 32
    with pytest.raises(NotFound):
        resolve_agent(rows, parse_agent_word("2222"))


def test_the_selector_is_described_with_explicit_terms() -> None:
    selector = operator_pb2.TargetSelector(agents=["AB12", "web-01", "host=dc01"], client="acme")
    assert describe_selector(selector) == "agent=ab12,host=web-01,host=dc01,client=acme"


def test_an_id_like_hostname_is_marked_and_invisible_characters_shown() -> None:
    assert shown_hostname_flagged("0A1b2c3d4e5f") == "0A1b2c3d4e5f (a hostname, not an id)"
    assert shown_hostname_flagged("web-01") == "web-01"
    assert shown_hostname_flagged("dc01") == "dc01"  # too short to pass for an id
    assert shown_hostname_flagged("web\x1b[2J\u200b\u202e") == "web\\x1b[2J\\u200b\\u202e"


def test_a_tag_an_agent_of_another_client_claims_does_not_reach_it_unasked() -> None:
    # Tags are named by the agent at enrollment: another client's agent can claim payroll.
    payroll = agent("pay-01", tags=["payroll"])
    claimant = agent("evil-01", client="evil", tags=["payroll"])
    fleet = fleet_of(payroll, claimant)
    message = refusal(fleet, tag="payroll")
    assert "2 clients (acme, evil)" in message and "client=NAME" in message
    assert payroll.id in message and claimant.id in message
    assert select(fleet, tag="payroll", client="acme") == [payroll.id]
    # Meant for every client: said so with `all`.
    widened = operator_pb2.TargetSelector(tag="payroll", all=True)
    assert sorted(r.id for r in select_agents(fleet, widened, NOW)) == sorted(
        [payroll.id, claimant.id]
    )


def test_an_os_target_across_clients_must_be_meant() -> None:
    linux = agent("web-01", os="linux")
    other = agent("web-02", client="evil", os="linux")
    fleet = fleet_of(linux, other)
    assert "2 clients" in refusal(fleet, os="linux")
    assert select(fleet, os="linux", client="evil") == [other.id]


def test_a_tag_within_one_client_needs_no_pin() -> None:
    first, second = agent("a", tags=["web"]), agent("b", tags=["web"])
    fleet = fleet_of(first, second, agent("c", client="evil"))
    assert sorted(select(fleet, tag="web")) == sorted([first.id, second.id])
