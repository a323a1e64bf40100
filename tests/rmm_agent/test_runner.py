"""The agent's run loop against a real gRPC server on loopback that records what it gets and
answers as each test says: reports numbered, spooled and delivered in order, acknowledgements
obeyed (a refusal, a request for the inventory, a new interval, a credential rotation), a refused
credential ends the agent, and a server that goes away and comes back gets the backlog.

Collectors are injected (a fake collector in a real ReportBuilder), as is the channel; the runner
runs in a thread of its own as in the agent."""

from __future__ import annotations

import json
import logging
import queue
import random
import threading
import time
from collections.abc import Callable, Iterator
from concurrent import futures
from pathlib import Path
from typing import ClassVar

import grpc
import pytest

from rmm_agent.collectors import CollectorOutput, Sample
from rmm_agent.report import ReportBuilder
from rmm_agent.runner import EXIT_OK, EXIT_REFUSED, AgentRunner, Backoff
from rmm_agent.service.sdnotify import ServiceNotifier
from rmm_agent.state import Identity, StateDir
from rmm_common.metric_catalog import MetricSpec
from rmm_common.tokens import AUTH_METADATA_KEY, BEARER_PREFIX
from rmm_proto import agent_pb2, agent_pb2_grpc

WAIT = 60.0
pytestmark = pytest.mark.timeout(180)
CREDENTIAL = "rmma_agent1_first"


class Load:
    name: ClassVar[str] = "load"
    metrics: ClassVar[tuple[MetricSpec, ...]] = (MetricSpec("load_value", "gauge", "A value."),)
    inventory: ClassVar[bool] = False

    def collect(self) -> CollectorOutput:
        return CollectorOutput([Sample("load_value", 1.5)])


class Packages:
    name: ClassVar[str] = "software"
    metrics: ClassVar[tuple[MetricSpec, ...]] = ()
    inventory: ClassVar[bool] = True

    def collect(self) -> CollectorOutput:
        return CollectorOutput([], {"packages": [{"name": "bash", "version": "5"}]})


Answer = Callable[[agent_pb2.Report], agent_pb2.ReportAck | grpc.StatusCode]


class Recorder(agent_pb2_grpc.AgentServiceServicer):
    """Records each report with the credential it came with; answers with `answer`."""

    def __init__(self) -> None:
        self.got: queue.Queue[tuple[str, agent_pb2.Report]] = queue.Queue()
        self.answer: Answer = lambda report: agent_pb2.ReportAck(sequence=report.sequence)
        self.rotated = "rmma_agent1_second"

    def StreamReports(
        self, request_iterator: Iterator[agent_pb2.Report], context: grpc.ServicerContext
    ) -> Iterator[agent_pb2.ReportAck]:
        credential = dict(context.invocation_metadata()).get(AUTH_METADATA_KEY, "")
        for report in request_iterator:
            self.got.put((str(credential).removeprefix(BEARER_PREFIX), report))
            answer = self.answer(report)
            if isinstance(answer, grpc.StatusCode):
                context.abort(answer, "refused by the test")
            yield answer

    def RotateCredential(
        self, request: agent_pb2.RotateCredentialRequest, context: grpc.ServicerContext
    ) -> agent_pb2.RotateCredentialResponse:
        return agent_pb2.RotateCredentialResponse(credential=self.rotated)

    def next(self) -> tuple[str, agent_pb2.Report]:
        return self.got.get(timeout=WAIT)


class Serving:
    """A grpc server on a loopback port that can be stopped and started again on that port."""

    def __init__(self, recorder: Recorder) -> None:
        self.recorder = recorder
        self.port = 0
        self.server: grpc.Server | None = None

    def start(self) -> None:
        server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
        agent_pb2_grpc.add_AgentServiceServicer_to_server(self.recorder, server)
        self.port = server.add_insecure_port(f"127.0.0.1:{self.port}")
        assert self.port
        server.start()
        self.server = server

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop(grace=None).wait(WAIT)
            self.server = None


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()


@pytest.fixture
def serving(recorder: Recorder) -> Iterator[Serving]:
    serving = Serving(recorder)
    serving.start()
    yield serving
    serving.stop()


class Agent:
    """An AgentRunner on its own thread, as `rmm-agent run` has it."""

    def __init__(self, tmp_path: Path, port: int, interval: float = 3600.0) -> None:
        self.state = StateDir(tmp_path / "state")
        self.state.ensure()
        self.identity = Identity(
            agent_id="agent1",
            credential=CREDENTIAL,
            server=f"127.0.0.1:{port}",
            client="acme",
            site="hq",
            insecure=True,
        )
        self.state.save_identity(self.identity)
        self.channel = grpc.insecure_channel(self.identity.server)
        self.builder = ReportBuilder([Load(), Packages()], timeout_seconds=WAIT)
        # An interval longer than any test: the loop collects once at start, tests add cycles.
        self.runner = AgentRunner(
            self.identity,
            self.state,
            self.builder,
            self.channel,
            interval,
            notifier=ServiceNotifier(),
        )
        self.exit_code: int | None = None
        self.thread = threading.Thread(target=self._run, name="runner-under-test")

    def _run(self) -> None:
        self.exit_code = self.runner.run()

    def __enter__(self) -> Agent:
        self.thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.runner.stop()
        self.thread.join(WAIT)
        self.channel.close()

    def wait_acked(self) -> None:
        deadline = time.monotonic() + WAIT
        while len(self.runner.spool):
            if time.monotonic() > deadline:
                raise AssertionError("reports still unacknowledged")
            time.sleep(0.01)


def test_each_cycle_delivers_a_numbered_report_with_the_credential_and_inventory_once(
    tmp_path: Path, serving: Serving, recorder: Recorder
) -> None:
    with Agent(tmp_path, serving.port) as agent:
        credential, first = recorder.next()
        agent.wait_acked()
        agent.runner.collect_now()  # the next cycle
        _, second = recorder.next()
        agent.wait_acked()
    assert agent.exit_code == EXIT_OK
    assert credential == CREDENTIAL
    assert (first.sequence, second.sequence) == (1, 2)
    assert first.interval_seconds == 3600
    assert [s.name for c in first.collectors for s in c.samples] == ["load_value"]
    # The inventory goes with the first report; once acknowledged, only its hash.
    assert first.HasField("inventory") and b"bash" in first.inventory.json
    assert not second.HasField("inventory")
    assert second.inventory_hash == first.inventory.hash
    runtime = json.loads((agent.state.path / "runtime.json").read_text())
    assert runtime["inventory_acked_hash"] == first.inventory.hash


def test_acknowledgements_are_obeyed_refusal_inventory_and_interval(
    tmp_path: Path, serving: Serving, recorder: Recorder, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="rmm_agent.runner")

    def answer(report: agent_pb2.Report) -> agent_pb2.ReportAck:
        if report.sequence == 1:  # the inventory went missing on the server, say
            return agent_pb2.ReportAck(sequence=1, need_inventory=True, report_interval_seconds=90)
        if report.sequence == 2:
            return agent_pb2.ReportAck(sequence=2, rejected="not today")
        return agent_pb2.ReportAck(sequence=report.sequence)

    recorder.answer = answer
    with Agent(tmp_path, serving.port) as agent:
        recorder.next()
        agent.wait_acked()
        assert agent.runner.interval == 90.0  # the server sets the interval
        agent.runner.collect_now()
        _, second = recorder.next()
        agent.wait_acked()
        agent.runner.collect_now()
        _, third = recorder.next()
        agent.wait_acked()
    # Asked for again, the inventory rides on the next report; refused with it, again after.
    assert second.HasField("inventory") and second.interval_seconds == 90
    assert third.HasField("inventory")
    assert recorder.got.empty()  # the refused report was dropped, not resent
    assert "the server refused report 2 for good: not today" in caplog.text


def test_a_refused_credential_stops_the_agent_with_its_exit_code(
    tmp_path: Path, serving: Serving, recorder: Recorder, caplog: pytest.LogCaptureFixture
) -> None:
    recorder.answer = lambda _report: grpc.StatusCode.UNAUTHENTICATED
    agent = Agent(tmp_path, serving.port)
    with agent:
        agent.thread.join(WAIT)  # ends by itself
        assert not agent.thread.is_alive()
    assert agent.exit_code == EXIT_REFUSED
    assert "this agent stops: enroll it again" in caplog.text
    credential, report = recorder.next()
    assert (credential, report.sequence) == (CREDENTIAL, 1)


def test_a_rotation_asked_in_an_ack_saves_the_new_credential_and_reconnects_with_it(
    tmp_path: Path, serving: Serving, recorder: Recorder
) -> None:
    recorder.answer = lambda report: agent_pb2.ReportAck(
        sequence=report.sequence, rotate_credential=report.sequence == 1
    )
    with Agent(tmp_path, serving.port) as agent:
        before, _ = recorder.next()
        agent.wait_acked()
        agent.runner.collect_now()
        # Report 2 may go out on the old stream before it is dropped; unacknowledged there, it
        # goes again on the new one, which carries the new credential.
        after, report = recorder.next()
        if after == CREDENTIAL:
            assert report.sequence == 2
            after, report = recorder.next()
    assert (before, after, report.sequence) == (CREDENTIAL, recorder.rotated, 2)
    assert agent.state.load_identity().credential == recorder.rotated
    assert agent.identity.credential == recorder.rotated  # shared with the command stream


def test_reports_made_while_the_server_is_away_are_delivered_in_order_when_it_is_back(
    tmp_path: Path, serving: Serving, recorder: Recorder, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="rmm_agent.runner")
    with Agent(tmp_path, serving.port) as agent:
        recorder.next()
        agent.wait_acked()
        serving.stop()
        for _ in range(3):  # collection goes on on time, into the spool
            agent.runner.collect_now()
        assert len(agent.runner.spool) >= 1
        serving.start()  # the same port
        got = [recorder.next()[1].sequence for _ in range(3)]
        agent.wait_acked()
    # Nothing was in flight at the cut: each comes once, in order, after the reconnect.
    assert got == [2, 3, 4]
    assert "lost the server: cannot reach the server at 127.0.0.1" in caplog.text
    assert caplog.text.count("connected to 127.0.0.1") == 2


def test_backoff_doubles_with_jitter_up_to_its_cap_and_resets() -> None:
    backoff = Backoff(first=1.0, cap=8.0, rng=random.Random(7))
    waits = [backoff.next() for _ in range(6)]
    ceilings = [1.0, 2.0, 4.0, 8.0, 8.0, 8.0]
    assert all(c / 2 <= w <= c for w, c in zip(waits, ceilings, strict=True)), waits
    assert len(set(waits)) == len(waits)  # jittered: a fleet does not reconnect in step
    backoff.reset()
    assert 0.5 <= backoff.next() <= 1.0
