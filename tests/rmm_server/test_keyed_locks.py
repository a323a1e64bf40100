"""KeyedLocks: one key's blocks one at a time and in order, other keys alongside, no key kept."""

from __future__ import annotations

import asyncio

from rmm_server.keyed_locks import KeyedLocks


def test_one_keys_blocks_run_in_turn_and_in_order_other_keys_alongside() -> None:
    locks = KeyedLocks()
    events: list[str] = []

    async def block(key: str, name: str) -> None:
        async with locks.hold(key):
            events.append(f"{name} in")
            await asyncio.sleep(0.01)
            events.append(f"{name} out")

    async def main() -> None:
        tasks = [asyncio.create_task(block("a", f"a{n}")) for n in range(3)]
        tasks.append(asyncio.create_task(block("b", "b0")))
        await asyncio.sleep(0)
        assert len(locks) == 2
        await asyncio.gather(*tasks)

    asyncio.run(main())
    a_events = [e for e in events if e.startswith("a")]
    assert a_events == ["a0 in", "a0 out", "a1 in", "a1 out", "a2 in", "a2 out"]
    assert events.index("b0 in") < events.index("a0 out"), "another key does not wait"
    assert len(locks) == 0, "no lock kept once its users left"


def test_a_failing_block_releases_its_key() -> None:
    locks = KeyedLocks()

    async def main() -> None:
        try:
            async with locks.hold("a"):
                raise ValueError("boom")
        except ValueError:
            pass
        async with locks.hold("a"):
            assert len(locks) == 1
        assert len(locks) == 0

    asyncio.run(main())
