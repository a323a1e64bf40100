"""Clients and sites as records, on SQLite and PostgreSQL: created, listed, renamed with the
agents and enrollment tokens that carry their names, refused with the fix when wrong."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

from rmm_common.errors import AlreadyExists, InvalidArgument, NotFound
from rmm_server.cluster import Cluster
from rmm_server.desk.places import Places
from rmm_server.enrollment import Enrollment
from rmm_server.fleet import Fleet
from rmm_server.patching.scheduling import SiteZones
from rmm_server.storage import AgentRecord, Store, open_store


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def store(db_url: str) -> Iterator[Store]:
    store = open_store(db_url)
    yield store
    store.close()


@pytest.fixture
def fleet() -> Fleet:
    return Fleet()


@pytest.fixture
def places(store: Store, fleet: Fleet) -> Places:
    return Places(store, fleet, Cluster("local"), Clock())


def enroll(store: Store, fleet: Fleet, agent_id: str, client: str, site: str) -> None:
    """Enroll an agent through a token, which creates the desk's records as `rmm tokens` does."""
    token, _secret = Enrollment(store, fleet).create_token(client, site, "admin")
    record = AgentRecord(agent_id, "h", client, site, 1.0, hostname=agent_id, tags=["web"])
    assert store.enroll_agent(token.id, 2.0, record)
    stored = store.get_agent(agent_id)
    assert stored is not None
    fleet.add(stored)


def test_clients_are_created_listed_and_shown_with_their_counts(
    store: Store, fleet: Fleet, places: Places
) -> None:
    created = places.create_client("Globex Corp", "alice")
    assert (created.name, created.created_by, created.sites, created.agents) == (
        "Globex Corp", "alice", 0, 0,
    )  # fmt: skip
    enroll(store, fleet, "a1", "acme", "hq")
    enroll(store, fleet, "a2", "acme", "branch")
    listed = {c.name: (c.sites, c.agents, c.has_contract) for c in places.list_clients()}
    assert listed == {"Globex Corp": (0, 0, False), "acme": (2, 2, False)}
    assert places.get_client("acme").agents == 2
    with pytest.raises(AlreadyExists, match="client 'acme' exists already"):
        places.create_client("acme", "bob")
    with pytest.raises(InvalidArgument, match="client name '' is invalid"):
        places.create_client("  ", "bob")
    with pytest.raises(NotFound, match="unknown client 'initech': see `rmm clients list`"):
        places.get_client("initech")


def test_sites_have_a_time_zone_checked_and_belong_to_a_known_client(places: Places) -> None:
    places.create_client("acme", "alice")
    site = places.create_site("acme", "berlin", "Europe/Berlin", "alice")
    assert (site.client, site.name, site.time_zone, site.agents) == (
        "acme", "berlin", "Europe/Berlin", 0,
    )  # fmt: skip
    assert places.create_site("acme", "hq", "", "alice").time_zone == "UTC"
    with pytest.raises(InvalidArgument, match="time zone 'Mars/Olympus' is unknown"):
        places.create_site("acme", "mars", "Mars/Olympus", "alice")
    with pytest.raises(NotFound, match="unknown client 'initech'"):
        places.create_site("initech", "hq", "UTC", "alice")
    with pytest.raises(AlreadyExists, match="site acme/hq exists already"):
        places.create_site("acme", "hq", "UTC", "alice")
    assert [s.name for s in places.list_sites("acme")] == ["berlin", "hq"]
    with pytest.raises(NotFound, match="client 'acme' has no site 'paris'"):
        places.get_site("acme", "paris")
    # Nothing half written: the refused sites are not there.
    assert [s.name for s in places.list_sites()] == ["berlin", "hq"]


def test_renaming_a_client_renames_it_on_its_agents_tokens_and_the_fleet(
    store: Store, fleet: Fleet, places: Places
) -> None:
    enroll(store, fleet, "a1", "acme", "hq")
    enroll(store, fleet, "a2", "acme", "branch")
    enroll(store, fleet, "b1", "globex", "hq")
    renamed = asyncio.run(places.rename_client("acme", "Acme Inc", "alice"))
    assert (renamed.name, renamed.sites, renamed.agents) == ("Acme Inc", 2, 2)
    for agent_id, site in (("a1", "hq"), ("a2", "branch")):
        stored = store.get_agent(agent_id)
        assert stored is not None and (stored.client, stored.site) == ("Acme Inc", site)
        live = fleet.get(agent_id)
        assert live is not None and (live.client, live.site, live.tags) == (
            "Acme Inc", site, ["web"],
        )  # fmt: skip
    untouched = store.get_agent("b1")
    assert untouched is not None and untouched.client == "globex"
    assert {t.client for t in store.list_tokens()} == {"Acme Inc", "globex"}
    with pytest.raises(AlreadyExists, match="client 'globex' exists already"):
        asyncio.run(places.rename_client("Acme Inc", "globex", "alice"))
    with pytest.raises(NotFound, match="unknown client 'acme'"):
        asyncio.run(places.rename_client("acme", "x", "alice"))
    # The refused rename moved nobody.
    assert {a.client for a in store.all_agents()} == {"Acme Inc", "globex"}


def test_renaming_a_site_and_setting_its_time_zone(
    store: Store, fleet: Fleet, places: Places
) -> None:
    enroll(store, fleet, "a1", "acme", "hq")
    enroll(store, fleet, "b1", "globex", "hq")
    site = asyncio.run(places.update_site("acme", "hq", "head office", "America/Chicago", "al"))
    assert (site.name, site.time_zone, site.agents) == ("head office", "America/Chicago", 1)
    moved, other = store.get_agent("a1"), store.get_agent("b1")
    assert moved is not None and moved.site == "head office"
    assert other is not None and other.site == "hq"  # another client's hq stays
    live = fleet.get("a1")
    assert live is not None and live.site == "head office"
    only_zone = asyncio.run(places.update_site("acme", "head office", "", "UTC", "al"))
    assert (only_zone.name, only_zone.time_zone) == ("head office", "UTC")
    with pytest.raises(InvalidArgument, match="say what to change"):
        asyncio.run(places.update_site("acme", "head office", "", "", "al"))
    with pytest.raises(InvalidArgument, match="time zone 'Nowhere' is unknown"):
        asyncio.run(places.update_site("acme", "head office", "x", "Nowhere", "al"))
    assert store.get_agent("a1").site == "head office"  # type: ignore[union-attr]


def test_a_token_for_a_new_client_creates_its_records_once(store: Store, fleet: Fleet) -> None:
    enrollment = Enrollment(store, fleet)
    enrollment.create_token("newco", "hq", "alice")
    enrollment.create_token("newco", "hq", "bob")
    enrollment.create_token("newco", "lab", "bob")
    places = Places(store, fleet, Cluster("local"))
    [client] = places.list_clients()
    assert (client.name, client.created_by, client.sites) == ("newco", "alice", 2)
    assert [(s.name, s.time_zone) for s in places.list_sites("newco")] == [
        ("hq", "UTC"), ("lab", "UTC"),
    ]  # fmt: skip


def test_patch_windows_read_a_sites_time_zone_from_its_record(store: Store, places: Places) -> None:
    """A schedule with `time_zone: site` follows the site record (`rmm sites update
    --time-zone`); `--site-time-zone` still wins; a changed zone is read within a minute."""
    clock = Clock()
    places.create_client("acme", "alice")
    places.create_site("acme", "berlin", "Europe/Berlin", "alice")
    places.create_site("acme", "hq", "", "alice")
    zones = SiteZones(store, {"acme/ny": "America/New_York"}, clock)

    def zone_of(site: str) -> str:
        return zones(AgentRecord("a1", "h", "acme", site, 1.0, hostname="a1"))

    assert [zone_of(s) for s in ("berlin", "hq", "ny", "nowhere")] == [
        "Europe/Berlin", "UTC", "America/New_York", "UTC",
    ]  # fmt: skip
    asyncio.run(places.update_site("acme", "hq", "", "Asia/Tokyo", "alice"))
    assert zone_of("hq") == "UTC"  # read again at most every minute
    clock.now += SiteZones.REFRESH_SECONDS
    assert zone_of("hq") == "Asia/Tokyo"
