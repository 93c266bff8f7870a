"""The :class:`Simulator`: the one object tests, the demo and benchmarks hold.

It owns the tenants, the token registry, the fault queue and the request log, and runs the HTTP
server (``_server.py``) in a daemon thread. Everything it answers is decided by the pipeline in
``_api.py``; everything it serves comes from the tenants (``_tenant.py``).
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime
from types import MappingProxyType, TracebackType

from mimecast_connector._categories import LOG_CATEGORIES, Category
from mimecast_connector.simulator import faults
from mimecast_connector.simulator._api import Api, Directory
from mimecast_connector.simulator._auth import TokenRegistry, check_secret_key, default_credentials
from mimecast_connector.simulator._injection import FaultQueue, SiemFilter
from mimecast_connector.simulator._scenario import load_scenario
from mimecast_connector.simulator._server import HttpServer, LoggedRequest, RequestLog
from mimecast_connector.simulator._tenant import SimTenant


class Simulator:
    """A faithful, local Mimecast TTP log API for many tenants (``mimecast-api.md`` §1 to §8),
    with the SIEM receipt logs of both API generations (``mta-rejections.md`` §2.1, §2.2).

    ``seed`` makes generated content deterministic; ``token_lifetime`` is the OAuth token lifetime
    in seconds. ``clock`` (monotonic seconds: token expiry, rate limits, request times) and
    ``wall_clock`` (epoch seconds: default filter window, ``x-mc-date`` checks, record dates,
    SIEM file publication and link expiry) can be replaced by tests. ``siem_link_lifetime`` is
    how long, in seconds on the wall clock, a 2.0 SIEM batch link stays valid. The request log
    keeps the most recent ``request_log_limit`` requests.

    Nothing is served until :meth:`start`; ``with Simulator(...) as sim:`` starts and stops.
    """

    def __init__(
        self,
        seed: int = 0,
        token_lifetime: float = 1799.0,
        *,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
        request_log_limit: int | None = 100_000,
        siem_link_lifetime: float = 900.0,
    ) -> None:
        if not token_lifetime > 0:
            raise ValueError(f"token_lifetime must be > 0 seconds, not {token_lifetime}")
        self.seed = seed
        self._clock = clock
        self._wall_clock = wall_clock
        self._directory = Directory()
        self._tokens = TokenRegistry(token_lifetime, clock)
        self._faults = FaultQueue()
        self._log = RequestLog(request_log_limit)
        self._api = Api(
            directory=self._directory,
            tokens=self._tokens,
            fault_queue=self._faults,
            wall_clock=wall_clock,
            siem_link_lifetime=siem_link_lifetime,
        )
        self._lock = threading.Lock()
        self._server: HttpServer | None = None
        self._thread: threading.Thread | None = None
        self._url: str | None = None
        self._live_on_start: dict[str, float] = {}

    @classmethod
    def from_scenario(
        cls,
        path: str | os.PathLike[str],
        *,
        seed: int | None = None,
        live_rate: float | None = None,
    ) -> Simulator:
        """A simulator built from a scenario file (see ``_scenario``), not yet started.

        Records are generated now, over each tenant's ``history`` before the current time; live
        streams begin when the simulator starts. ``seed`` and ``live_rate`` override the file
        (``live_rate`` for every tenant). A bad file raises one ``ScenarioError``.
        """
        scenario = load_scenario(path)
        sim = cls(
            seed=scenario.seed if seed is None else seed, token_lifetime=scenario.token_lifetime
        )
        now = datetime.fromtimestamp(sim._wall_clock(), UTC)
        for spec in scenario.tenants:
            tenant = sim.add_tenant(spec.name, roles=spec.roles, **spec.credentials())
            for category in LOG_CATEGORIES:
                count = getattr(spec.records, category.value)
                if count:
                    tenant.generate(category, count, start=now - spec.history, end=now)
            if spec.rate_limit is not None:
                tenant.set_rate_limit(spec.rate_limit.capacity, spec.rate_limit.refill_per_second)
            rate = spec.live_rate if live_rate is None else live_rate
            if rate is not None:
                sim._live_on_start[spec.name] = rate
        for entry in scenario.faults:
            sim.inject(
                entry.fault,
                tenant=entry.tenant,
                category=entry.category,
                times=entry.times,
                token_endpoint=entry.token_endpoint,
            )
        return sim

    # -- tenants ------------------------------------------------------------------------------

    def add_tenant(
        self,
        name: str,
        *,
        client_id: str | None = None,
        client_secret: str | None = None,
        app_id: str | None = None,
        app_key: str | None = None,
        access_key: str | None = None,
        secret_key: str | None = None,
        roles: Iterable[Category] | None = None,
        siem: bool = True,
        enhanced_logging: bool = True,
    ) -> SimTenant:
        """Add a tenant; each credential not given defaults to a value derived from ``name``.

        ``roles`` None means every category is readable. ``siem`` False takes away the SIEM
        role: the SIEM endpoints answer 403. ``enhanced_logging`` False leaves the account's
        SIEM feeds empty (an empty 2.0 listing, the 1.0 "nothing new" answer), as an account
        without Enhanced Logging has nothing to serve.
        """
        given = {
            "client_id": client_id,
            "client_secret": client_secret,
            "app_id": app_id,
            "app_key": app_key,
            "access_key": access_key,
            "secret_key": secret_key,
        }
        credentials = default_credentials(name) | {k: v for k, v in given.items() if v is not None}
        check_secret_key(credentials["secret_key"])
        tenant = SimTenant(
            name,
            seed=self.seed,
            credentials=credentials,
            roles=frozenset(Category) if roles is None else frozenset(roles),
            clock=self._clock,
            wall_clock=self._wall_clock,
            siem=siem,
            enhanced_logging=enhanced_logging,
        )
        with self._lock:
            self._directory.add(tenant)
        return tenant

    def tenant(self, name: str) -> SimTenant:
        """The tenant called ``name`` (KeyError if there is none)."""
        return self._directory.tenants[name]

    @property
    def tenants(self) -> Mapping[str, SimTenant]:
        """Every tenant by name (read-only view)."""
        return MappingProxyType(self._directory.tenants)

    # -- serving ------------------------------------------------------------------------------

    def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        """Listen on ``host:port`` (0: any free port) and return the base URL."""
        with self._lock:
            if self._server is not None:
                raise RuntimeError(f"the simulator is already serving at {self._url}")
            server = HttpServer(host, port, api=self._api, log=self._log, clock=self._clock)
            bound_port = server.server_address[1]
            shown = f"[{host}]" if ":" in host else host
            self._url = f"http://{shown}:{bound_port}"
            self._server = server
            self._thread = threading.Thread(
                target=server.serve_forever,
                kwargs={"poll_interval": 0.02},  # how long stop() may wait for the loop
                name=f"mimecast-sim-{bound_port}",
                daemon=True,
            )
            self._thread.start()
        for name, rate in self._live_on_start.items():
            self._directory.tenants[name].start_live(rate)
        return self._url

    @property
    def url(self) -> str:
        """The base URL, e.g. ``http://127.0.0.1:40123``; RuntimeError before :meth:`start`."""
        if self._url is None:
            raise RuntimeError("the simulator is not serving; call start() first")
        return self._url

    def stop(self) -> None:
        """Stop live streams and the server, and close open connections. Safe to call twice."""
        for tenant in list(self._directory.tenants.values()):
            tenant.stop_live()
        with self._lock:
            server, thread = self._server, self._thread
            self._server = self._thread = None
            self._url = None
        if server is None or thread is None:
            return
        server.stopping.set()
        server.shutdown()
        server.close_connections()
        server.server_close()
        thread.join()

    def __enter__(self) -> Simulator:
        if self._server is None:
            self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    # -- faults, tokens, request log ----------------------------------------------------------

    def inject(
        self,
        fault: faults.Fault,
        tenant: str | None = None,
        category: Category | None = None,
        times: int | None = 1,
        *,
        token_endpoint: bool = False,
        siem: SiemFilter = False,
    ) -> None:
        """Queue ``fault`` for the next ``times`` matching requests (None: until cleared).

        Matching requests are TTP log requests that pass authentication, filtered by tenant name
        and category (None: any). With ``token_endpoint=True`` the fault hits ``/oauth/token``
        calls instead (tenant matched by ``client_id``). With ``siem`` it hits SIEM requests
        instead: ``True`` any it applies to, or only ``"listing"`` (2.0 batch listing),
        ``"download"`` (a 2.0 file link; the tenant is the link's) or ``"get-siem-logs"`` (1.0).
        The SIEM-only kinds (``TruncatedFile``, ``NotGzip``, ``ExpiredLink``, ``LateBatch``,
        ``HugeFile``) always go to SIEM requests. Faults apply in the order injected.
        """
        self._faults.add(
            fault,
            tenant=tenant,
            category=category,
            times=times,
            token_endpoint=token_endpoint,
            siem=siem,
        )

    def clear_faults(self) -> None:
        """Forget every queued fault."""
        self._faults.clear()

    def expire_tokens(self) -> None:
        """Make every OAuth token issued so far invalid (401 from then on)."""
        self._tokens.revoke_all()

    @property
    def requests(self) -> list[LoggedRequest]:
        """Every request received (most recent ``request_log_limit``), in arrival order."""
        return self._log.entries()

    def clear_requests(self) -> None:
        """Forget the request log."""
        self._log.clear()
