"""SIGKILL a real `run` delivering to each network sink, again and again: nothing goes missing.

For each network kind of sink (README, "Sinks"), the connector runs as a child process against
the simulator (a day of history, live records, late ones: ``scripts/soak.py``'s world, with its
functions) and delivers to a test receiver in this process, which outlives every connector. The
connector is killed with SIGKILL and started again for ``KILL_SECONDS``: every other life ends
at a random moment, the others as a delivery is under way. For that, a loopback proxy stands in
front of the receiver: it holds each answer up to ``SLOWEST`` seconds, and kills the connector
*instead of* passing on one of the first answers of the life (the destination took the batch,
the connector never heard so: the moment a crash repeats a batch, or loses one if a sink
acknowledged too early). Kafka's brokers advertise their own addresses, so no proxy can stand
there: the mock cluster goes down instead, and the connector dies while a batch waits for it.

Then live mode stops, two clean ``--once`` passes run, and what the destination holds is checked
against the ids of a reference ``--once`` run over the same data: every id there (nothing
missing), no other (nothing unexpected), and for ``elasticsearch`` each id stored once (its
guarantee: exactly once in the index). The other kinds are at least once: their repeats are
reported in the message, not refused. What "holds" means per kind: ``splunk_hec`` the events HEC
took, and with ``ack = true`` only those of requests HEC then confirmed indexed (what it never
confirmed, Splunk may still lose); ``elasticsearch`` the stored documents' own ``id``;
``sentinel`` the records answered 204; ``syslog`` each line rsyslogd wrote, parsed as RFC 5424;
``kafka`` the records a consumer reads back, by key.

A second syslog test kills rsyslogd itself (SIGKILL, every other time as its answer to messages
it wrote is on its way) and starts it again while one connector runs: RELP loses nothing.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import json
import random
import re
import signal
import socket
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import ModuleType

import pytest

from mimecast_connector.simulator import SimTenant, Simulator
from tests.e2e.conftest import load_script
from tests.fakes import FakeClock
from tests.sinks import azure_receiver as azure
from tests.sinks.es_receiver import EsReceiver
from tests.sinks.hec_receiver import HecReceiver
from tests.sinks.syslog_receiver import NO_RSYSLOGD, RSYSLOGD, Rsyslogd, parse_5424

#: Records of the day of history (the soak's shares of three categories), before live ones.
RECORDS = 1000
#: How long the connector (or rsyslogd) is killed again and again.
KILL_SECONDS = 8.0
#: A life that ends on the clock lasts this long (the connector takes ~1 s to start).
CLOCK_LIFE = (0.5, 2.5)
#: A life that ends on an answer ends on the clock after this long if no answer came.
LONGEST_LIFE = 4.0
#: The longest the proxy holds an answer.
SLOWEST = 0.2
#: Without a proxy (kafka): the destination goes down this long after a life began (started,
#: delivering live records), and the connector is killed this long after that.
OUTAGE_AFTER = (1.2, 2.0)
OUTAGE = (0.5, 1.0)
TOKEN = "CANARY-sink-crash-token-6d1e"


@pytest.fixture(scope="module")
def soak() -> ModuleType:
    return load_script("soak")


# --- the destinations -----------------------------------------------------------------------


@dataclass
class Destination:
    """A receiver in this process: the ``[[sinks]]`` table that reaches it through a port (the
    proxy's), the alert ids it holds now, and whether its sink promises exactly once."""

    table: Callable[[int], str]
    held: Callable[[], Counter[str]]
    port: int | None  # the receiver's own port; None: no proxy can stand in front (kafka)
    exactly_once: bool = False
    #: A life that ends on an answer ends on one of the first this many answers.
    kill_within: int = 2
    #: How an answer starts (HTTP: its status line); None: every piece the proxy reads is one
    #: (RELP, whose answers come a few messages' worth at a time).
    answer_start: bytes | None = b"HTTP/"
    #: Without a proxy: takes the destination down (True) and up again (False), so that a
    #: life can end while a batch waits for it.
    outage: Callable[[bool], None] | None = None
    note: Callable[[], str] = lambda: ""


@contextlib.contextmanager
def splunk_hec(*, ack: bool) -> Iterator[Destination]:
    """The fake HEC. With ``ack``, an event counts as held only once HEC confirmed its request
    indexed (asked twice): what HEC took and never confirmed could still be lost by Splunk."""
    hec = HecReceiver(TOKEN, ack_enabled=ack, ack_after=2, allowed_indexes={"mimecast"})
    hec.start()

    def held(*, confirmed: bool = ack) -> Counter[str]:
        with hec._lock:  # the receiver's threads may still be answering
            done = set(hec._confirmed)
            taken = list(hec.event_requests)
        ids: Counter[str] = Counter()
        for request in taken:
            channel = request.headers["x-splunk-request-channel"]
            if not confirmed or (channel, (request.answer or {})["ackId"]) in done:
                ids.update(envelope["fields"]["alert_id"] for envelope in request.envelopes)
        return ids

    def note() -> str:
        unconfirmed = sum(held(confirmed=False).values()) - sum(held().values())
        return f"{unconfirmed} events taken by HEC and never confirmed" if ack else ""

    settings = 'ack = true\nack_timeout = "5s"\nack_poll_interval = "100ms"\n' if ack else ""
    try:
        yield Destination(
            lambda port: (
                f'type = "splunk_hec"\nurl = "http://127.0.0.1:{port}"\n'
                f'token = "{TOKEN}"\nindex = "mimecast"\n{settings}'
            ),
            held,
            hec.port,
            kill_within=3 if ack else 2,  # an event request's answer, then each ack query's
            note=note,
        )
    finally:
        hec.stop()


@contextlib.contextmanager
def elasticsearch() -> Iterator[Destination]:
    """The fake cluster; ids are read from the stored documents (native format), not their
    ``_id``, so a repeat stored under another ``_id`` would show."""
    es = EsReceiver()
    es.start()

    def held() -> Counter[str]:
        return Counter(json.loads(source)["id"] for source in es.sources())

    def note() -> str:
        with es._lock:
            conflicts = sum(
                1
                for bulk in es.bulks
                for item in bulk.answer["items"]
                if item["create"]["status"] == 409
            )
        return f"{conflicts} creates answered 409 (already indexed)"

    try:
        yield Destination(
            lambda port: (
                f'type = "elasticsearch"\nurl = "http://127.0.0.1:{port}"\n'
                'index = "mimecast-alerts"\nformat = "native"\n'
            ),
            held,
            es.port,
            exactly_once=True,
            note=note,
        )
    finally:
        es.stop()


@contextlib.contextmanager
def sentinel() -> Iterator[Destination]:
    """The fake Entra ID and Logs Ingestion endpoints (one port: authority and DCE)."""
    secret = "CANARY-sink-crash-client-secret-0b7a"
    fake = azure.AzureReceiver(FakeClock(), client_secret=secret)
    fake.start()

    def held() -> Counter[str]:
        with fake._lock:
            return Counter(record["id"] for record in fake.records)

    try:
        yield Destination(
            lambda port: (
                f'type = "sentinel"\ndce = "http://127.0.0.1:{port}"\n'
                f'authority = "http://127.0.0.1:{port}"\ndcr_immutable_id = "{azure.DCR}"\n'
                f'stream = "{azure.STREAM}"\ntenant_id = "{azure.TENANT}"\n'
                f'client_id = "{azure.CLIENT_ID}"\nclient_secret = "{secret}"\nformat = "native"\n'
            ),
            held,
            fake.port,
            kill_within=3,  # the token's answer, then each ingestion request's
        )
    finally:
        fake.stop()


#: Where an RFC 5424 message of the sink starts (a torn line holds one after the torn head).
MESSAGE_START = re.compile(rb"<\d{1,3}>1 \d{4}-")


def syslog_id(message: bytes) -> str:
    """The id of one message rsyslogd wrote, parsed as RFC 5424 (strictly), its structured
    data's id the same as its MSG's; a message that is not one names itself as unreadable."""
    try:
        parsed = parse_5424(message)
        found = parsed.params["id"]
        if json.loads(parsed.msg)["id"] != found:
            raise ValueError("the MSG's id is not the structured data's")
    except (ValueError, KeyError) as problem:
        return f"<unreadable message {message[:80]!r}: {problem}>"
    return found


def syslog_ids(server: Rsyslogd, torn: list[bytes] | None = None) -> Counter[str]:
    """The ids of what rsyslogd wrote, a line each. With ``torn`` (when rsyslogd itself is
    killed), a line that does not parse may be the head of a message a killed rsyslogd was
    writing (never answered, so sent again) followed by what the next rsyslogd wrote: the head
    goes to ``torn`` and the rest is read as usual."""
    ids: Counter[str] = Counter()
    for line in server.raw():
        pieces = [line]
        if torn is not None and syslog_id(line).startswith("<"):
            starts = [m.start() for m in MESSAGE_START.finditer(line) if m.start() > 0]
            if starts:
                torn.append(line[: starts[0]])
                pieces = [line[a:b] for a, b in zip(starts, [*starts[1:], len(line)], strict=True)]
        ids.update(syslog_id(piece) for piece in pieces)
    return ids


def relp_table(port: int) -> str:
    return (
        f'type = "syslog"\nhost = "127.0.0.1"\nport = {port}\nprotocol = "relp"\n'
        'format = "native"\nhostname = "sink-crash"\n'
    )


@contextlib.contextmanager
def syslog(folder: Path) -> Iterator[Destination]:
    """A real rsyslogd over RELP, writing each message before it answers ``200 OK``."""
    if RSYSLOGD is None:
        pytest.skip(NO_RSYSLOGD)
    folder.mkdir()
    server = Rsyslogd(folder)
    server.start()
    try:
        yield Destination(
            relp_table,
            lambda: syslog_ids(server),
            server.ports["relp"],
            answer_start=None,
            kill_within=3,
        )
    finally:
        server.stop()


@contextlib.contextmanager
def kafka() -> Iterator[Destination]:
    """librdkafka's mock cluster in this process; the connector reaches its brokers over
    loopback TCP (they advertise their own addresses, so no proxy stands between)."""
    pytest.importorskip("confluent_kafka", reason="the kafka sink's extra is not installed")
    from tests.sinks.adapter_kafka import MockCluster

    cluster = MockCluster()
    topic = "sink-crash"
    cluster.create_topic(topic, partitions=3)
    brokers = ", ".join(f'"{broker}"' for broker in cluster.brokers)

    def held() -> Counter[str]:
        ids: Counter[str] = Counter()
        for record in cluster.read(topic):
            key = (record.key or b"").decode()
            same = json.loads(record.value or b"{}").get("id") == key
            ids[key if same else f"<record keyed {key!r} holds another alert>"] += 1
        return ids

    try:
        yield Destination(
            lambda port: (
                f'type = "kafka"\nbrokers = [{brokers}]\ntopic = "{topic}"\n'
                'security_protocol = "PLAINTEXT"\nformat = "native"\ndelivery_timeout = 10\n'
            ),
            held,
            None,
            outage=lambda down: cluster.down() if down else cluster.up(),
        )
    finally:
        cluster.close()


# --- killing --------------------------------------------------------------------------------


class Victim:
    """One process at a time, started again and again and killed with SIGKILL, from this
    thread (on the clock) or the proxy's (on an answer)."""

    def __init__(self, start: Callable[[], subprocess.Popen[bytes]]) -> None:
        self._start = start
        self._process: subprocess.Popen[bytes] | None = None
        self._signalled = False  # the running process was sent SIGKILL (it may not be dead yet)
        self._lock = threading.Lock()
        self.kills = 0
        self.exits: Counter[int] = Counter()

    def start(self) -> None:
        process = self._start()
        with self._lock:
            self._process, self._signalled = process, False

    def alive(self) -> bool:
        """Running, and not sent SIGKILL."""
        with self._lock:
            return (
                self._process is not None and not self._signalled and self._process.poll() is None
            )

    def kill(self) -> bool:
        """SIGKILL the running process, unless it was already or has ended; whether it was."""
        with self._lock:
            if self._process is None or self._signalled or self._process.poll() is not None:
                return False
            self._process.send_signal(signal.SIGKILL)
            self._signalled = True
            self.kills += 1
            return True

    def reap(self) -> None:
        """Wait for the process to end (killed or not) and count how it ended."""
        with self._lock:
            process, self._process = self._process, None
        if process is not None:
            self.exits[process.wait(timeout=30)] += 1
            if process.stdout is not None:
                process.stdout.close()


class HoldingProxy:
    """A TCP proxy on loopback in front of a destination: what the destination answers is held
    0 to ``slowest`` seconds; once :meth:`kill_at` is set, the n-th answer from then on is not
    passed on: the victim is killed instead (the destination took the batch, and the sender
    never hears so). :attr:`armed` False passes everything at once."""

    def __init__(
        self,
        target: int,
        kill: Callable[[], bool],
        seed: int,
        slowest: float,
        answer_start: bytes | None,
    ) -> None:
        self.target = target
        self._answer_start = answer_start
        self.armed = True
        self.answer_kills = 0
        self._kill = kill
        self._slowest = slowest
        self._rng = random.Random(seed)
        self._countdown: int | None = None
        self._lock = threading.Lock()
        self._open: set[socket.socket] = set()
        self._stop = threading.Event()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.05)
        self.port: int = self._listener.getsockname()[1]
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def kill_at(self, answer: int | None) -> None:
        with self._lock:
            self._countdown = answer

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self._listener.close()
        with self._lock:
            open_, self._open = set(self._open), set()
        self._drop(*open_)

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            client.settimeout(None)
            try:
                server = socket.create_connection(("127.0.0.1", self.target), timeout=2.0)
            except OSError:  # the destination is down: so is its proxy
                client.close()
                continue
            server.settimeout(None)
            for end in (client, server):
                end.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            with self._lock:
                self._open.update((client, server))
            for source, sink, answers in ((client, server, False), (server, client, True)):
                threading.Thread(
                    target=self._pump, args=(source, sink, answers), daemon=True
                ).start()

    def _pump(self, source: socket.socket, sink: socket.socket, answers: bool) -> None:
        try:
            while chunk := source.recv(65536):
                if answers and self.armed:
                    start = self._answer_start
                    if (start is None or chunk.startswith(start)) and self._killed_instead():
                        return
                    time.sleep(self._rng.uniform(0.0, self._slowest))
                sink.sendall(chunk)
        except OSError:
            pass
        finally:
            self._drop(source, sink)

    def _killed_instead(self) -> bool:
        with self._lock:
            if self._countdown is None:
                return False
            self._countdown -= 1
            if self._countdown > 0:
                return False
            self._countdown = None
        if not self._kill():
            return False
        with self._lock:
            self.answer_kills += 1
        return True

    def _drop(self, *ends: socket.socket) -> None:
        for end in ends:
            with contextlib.suppress(OSError):
                end.shutdown(socket.SHUT_RDWR)
            end.close()
            with self._lock:
                self._open.discard(end)


# --- the run --------------------------------------------------------------------------------


@dataclass
class World:
    """The simulator with one tenant: a day of history, live records while it runs."""

    sim: Simulator
    tenant: SimTenant
    start: datetime
    root: Path
    rng: random.Random
    late: int = 0

    def write_config(self, path: Path, table: str) -> None:
        """soak.py's configuration (pages of 50, polls every second, lookback 30 min) at
        ``path``, with ``table`` as its one sink."""
        path.parent.mkdir(parents=True, exist_ok=True)
        t = self.tenant
        path.write_text(
            'state = "state.db"\ndead_letter = "dead-letter.jsonl"\nlookback = "30m"\n'
            f'page_size = 50\n\n[[tenants]]\nname = "soak"\nbase_url = "{self.sim.url}"\n'
            f'client_id = "{t.client_id}"\nclient_secret = "{t.client_secret}"\n'
            f'start = "{self.start.isoformat()}"\npoll_interval = "1s"\n\n[[sinks]]\n{table}',
            "utf-8",
        )

    def maybe_late(self, soak: ModuleType) -> None:
        """Now and then a late record: dated inside the lookback, visible 1 to 3 log requests
        later."""
        if self.rng.random() < 0.3:
            category, record = soak.late_record(self.tenant, self.rng, 30 * 60)
            self.tenant.add_late(category, [record], after_requests=self.rng.randrange(1, 4))
            self.late += 1


@contextlib.contextmanager
def world(tmp: Path, soak: ModuleType, seed: int) -> Iterator[World]:
    now = datetime.now(UTC).replace(microsecond=0)
    start = now - timedelta(hours=24)
    with Simulator(seed=seed) as sim:
        tenant = sim.add_tenant("soak")
        for category, share in soak.SHARE.items():
            tenant.generate(
                category, count=int(RECORDS * share), start=start, end=now - timedelta(minutes=1)
            )
        tenant.start_live(rate_per_second=3.0)
        try:
            yield World(sim, tenant, start, tmp, random.Random(seed))
        finally:
            tenant.stop_live()


def connector(soak: ModuleType, config: Path, log: Path) -> Victim:
    def start() -> subprocess.Popen[bytes]:
        with log.open("ab") as errors:  # the child keeps its own descriptor
            return subprocess.Popen(  # noqa: S603 - this Python, our own arguments
                soak.command(config), stdout=subprocess.DEVNULL, stderr=errors
            )

    return Victim(start)


def finish(soak: ModuleType, w: World, config: Path) -> Counter[str]:
    """Live mode off and two clean ``--once`` passes: the first makes the last late records
    visible (each waits for at most 3 more log requests, and a pass asks each of the four logs
    at least once), the second reads them while the reference, a fresh ``--once`` into a jsonl
    file over the same data, runs beside it. The reference's ids."""
    w.tenant.stop_live()
    reference = soak.write_config(w.root / "reference", w.sim.url, w.tenant, w.start)
    run(soak.command(config, "--once"))
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        for done in [pool.submit(run, soak.command(c, "--once")) for c in (config, reference)]:
            done.result()
    expected: Counter[str] = soak.ids_in(w.root / "reference" / "alerts.jsonl")
    return expected


def run(command: list[str]) -> None:
    done = subprocess.run(command, capture_output=True, timeout=120, check=False)  # noqa: S603
    assert done.returncode == 0, done.stderr.decode(errors="replace")[-3000:]


@dataclass
class Outcome:
    """What a destination holds against the reference, and how hard the run was."""

    expected: Counter[str]
    got: Counter[str]
    kills: int
    delivery_kills: int  # as a delivery was under way: an answer withheld, or an outage
    during: int  # distinct reference ids the destination held when the killing stopped
    late: int
    exits: Counter[int] = field(default_factory=Counter)
    note: str = ""

    @property
    def missing(self) -> set[str]:
        return set(self.expected) - set(self.got)

    @property
    def unexpected(self) -> set[str]:
        return set(self.got) - set(self.expected)

    @property
    def repeats(self) -> int:
        return sum(n - 1 for n in self.got.values() if n > 1)

    def __str__(self) -> str:
        return (
            f"{self.kills} kills ({self.delivery_kills} as a delivery was under way), "
            f"{self.late} late records; "
            f"expected {len(self.expected)} ids, {self.during} held when the killing stopped; "
            f"held {sum(self.got.values())} alerts, {len(self.got)} distinct: "
            f"missing {len(self.missing)} {sorted(self.missing)[:5]}, "
            f"unexpected {len(self.unexpected)} {sorted(self.unexpected)[:5]}, "
            f"repeats {self.repeats}; exits {dict(self.exits)}"
            + (f"; {self.note}" if self.note else "")
        )


def assert_delivered(outcome: Outcome, *, exactly_once: bool) -> None:
    """Not vacuous (kills, some as a delivery was under way; a real reference set; deliveries
    between the kills), then nothing missing, nothing unexpected, no repeat if exactly once."""
    numbers = str(outcome)
    print(numbers)  # for -s
    assert outcome.kills >= 3, numbers
    assert outcome.delivery_kills >= 1, numbers
    assert len(outcome.expected) > 100, numbers
    assert outcome.during > 0, f"nothing was delivered while the killing went on: {numbers}"
    assert not outcome.missing, f"missing: {numbers}"
    assert not outcome.unexpected, f"unexpected: {numbers}"
    if exactly_once:
        assert outcome.repeats == 0, f"repeats where exactly once is promised: {numbers}"
        assert sum(outcome.got.values()) == sum(outcome.expected.values()), numbers


DESTINATIONS: dict[str, Callable[[Path], contextlib.AbstractContextManager[Destination]]] = {
    "splunk_hec": lambda tmp: splunk_hec(ack=False),
    "splunk_hec-ack": lambda tmp: splunk_hec(ack=True),
    "elasticsearch": lambda tmp: elasticsearch(),
    "sentinel": lambda tmp: sentinel(),
    "syslog-rsyslog": lambda tmp: syslog(tmp / "rsyslog"),
    "kafka": lambda tmp: kafka(),
}


@pytest.mark.parametrize("kind", list(DESTINATIONS))
def test_killed_connector_delivers_every_alert(kind: str, tmp_path: Path, soak: ModuleType) -> None:
    """Seeded SIGKILLs of `run`, half of them as a delivery is under way, end with the
    destination holding the reference set (each id once for elasticsearch)."""
    seed = 11 + sorted(DESTINATIONS).index(kind)
    log = tmp_path / "connector.log"
    with (
        DESTINATIONS[kind](tmp_path) as destination,
        world(tmp_path, soak, seed) as w,
        contextlib.ExitStack() as stack,
    ):
        config = w.root / "run" / "config.toml"
        victim = connector(soak, config, log)
        proxy: HoldingProxy | None = None
        port = 0
        if destination.port is not None:
            proxy = HoldingProxy(
                destination.port, victim.kill, seed, SLOWEST, destination.answer_start
            )
            stack.callback(proxy.close)
            port = proxy.port
        w.write_config(config, destination.table(port))
        deadline = time.monotonic() + KILL_SECONDS
        lives = outages = 0
        while time.monotonic() < deadline:
            # Every other life ends as a delivery is under way: on the n-th answer the
            # destination sends back, or (no proxy) while the destination is down.
            special = lives % 2 == 1
            if proxy is not None:
                proxy.kill_at(w.rng.randint(1, destination.kill_within) if special else None)
            life = LONGEST_LIFE if special else w.rng.uniform(*CLOCK_LIFE)
            outage = destination.outage if special else None
            if outage is not None:
                life = w.rng.uniform(*OUTAGE_AFTER)
            victim.start()
            lives += 1
            end_of_life = min(time.monotonic() + life, deadline)
            while time.monotonic() < end_of_life and victim.alive():
                time.sleep(0.02)
            if outage is not None and victim.alive():
                outage(True)  # a poll or two come while it is down, and wait
                time.sleep(w.rng.uniform(*OUTAGE))
                outages += victim.kill()
                outage(False)
            w.maybe_late(soak)
            victim.kill()
            victim.reap()
        held_then = set(destination.held())
        if proxy is not None:
            proxy.armed = False
        expected = finish(soak, w, config)
        outcome = Outcome(
            expected,
            destination.held(),
            victim.kills,
            outages + (proxy.answer_kills if proxy is not None else 0),
            len(held_then & set(expected)),
            w.late,
            Counter(victim.exits),
            destination.note(),
        )
    assert set(victim.exits) == {-signal.SIGKILL}, (
        f"a life ended by itself: {outcome}\n{log.read_text('utf-8', 'replace')[-3000:]}"
    )
    assert_delivered(outcome, exactly_once=destination.exactly_once)


def test_killed_rsyslogd_loses_nothing_over_relp(tmp_path: Path, soak: ModuleType) -> None:
    """rsyslogd killed with SIGKILL (every other time as its answer to a message it wrote is
    on its way) and started again, while one connector runs: every alert is in its file."""
    if RSYSLOGD is None:
        pytest.skip(NO_RSYSLOGD)
    seed = 29
    folder = tmp_path / "rsyslog"
    folder.mkdir()
    server = Rsyslogd(folder)

    def start_rsyslogd() -> subprocess.Popen[bytes]:
        (folder / "rsyslogd.pid").unlink(missing_ok=True)  # the killed one's
        server.start()  # the same ports, the same files; returns once it listens
        assert server.process is not None
        return server.process

    rsyslogd = Victim(start_rsyslogd)
    log = tmp_path / "connector.log"
    with (
        world(tmp_path, soak, seed) as w,
        contextlib.ExitStack() as stack,
    ):
        stack.callback(rsyslogd.reap)
        stack.callback(rsyslogd.kill)
        rsyslogd.start()
        proxy = HoldingProxy(server.ports["relp"], rsyslogd.kill, seed, SLOWEST, None)
        stack.callback(proxy.close)
        config = w.root / "run" / "config.toml"
        w.write_config(config, relp_table(proxy.port))
        runner = connector(soak, config, log)
        runner.start()
        stack.callback(runner.reap)
        stack.callback(runner.kill)
        deadline = time.monotonic() + KILL_SECONDS
        lives = 1
        while time.monotonic() < deadline:
            on_answer = lives % 2 == 1
            proxy.kill_at(w.rng.randint(1, 3) if on_answer else None)
            life = LONGEST_LIFE if on_answer else w.rng.uniform(*CLOCK_LIFE)
            end_of_life = min(time.monotonic() + life, deadline)
            while time.monotonic() < end_of_life and rsyslogd.alive():
                time.sleep(0.02)
            w.maybe_late(soak)
            rsyslogd.kill()
            rsyslogd.reap()
            time.sleep(w.rng.uniform(0.1, 0.5))  # down a while: the proxy hangs up on all
            rsyslogd.start()
            lives += 1
        assert runner.alive(), f"the connector stopped: {log.read_text('utf-8', 'replace')[-3000:]}"
        runner.kill()
        runner.reap()
        held_then = set(syslog_ids(server, []))
        proxy.armed = False
        expected = finish(soak, w, config)
        failed = log.read_text("utf-8", "replace").count("poll_failed")
        torn: list[bytes] = []
        outcome = Outcome(
            expected,
            syslog_ids(server, torn),
            rsyslogd.kills,
            proxy.answer_kills,
            len(held_then & set(expected)),
            w.late,
            Counter(rsyslogd.exits),
            f"{failed} polls failed while rsyslogd was down; {len(torn)} messages torn by a "
            f"killed rsyslogd (each in the file whole too, or it is missing)",
        )
    assert_delivered(outcome, exactly_once=False)
