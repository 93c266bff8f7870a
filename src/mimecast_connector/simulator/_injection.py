"""The queue of injected faults and the rule that decides which request a fault hits.

A fault is spent on the next request that matches its tenant and category filters (None matches
any) and that it can apply to: ``ExpireToken`` needs an API 2.0 bearer request, ``BindingExpired``
an API 1.0 request. Rules are tried in the order they were injected; each request takes at most
one fault. Faults meant for ``/oauth/token`` are kept apart from faults for the log endpoints.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

from mimecast_connector._categories import Category
from mimecast_connector.simulator import faults
from mimecast_connector.simulator._auth import Scheme

TOKEN_ENDPOINT_KINDS = (
    faults.HttpStatus,
    faults.RateLimited,
    faults.Truncate,
    faults.NotJson,
    faults.Slow,
    faults.Disconnect,
    faults.Echo,
)
"""The kinds that make sense on ``/oauth/token``, whose answer is not a log page."""


def check_rule(
    fault: faults.Fault, *, category: Category | None, times: int | None, token_endpoint: bool
) -> None:
    """Refuse a rule that could never apply, with a ValueError saying why."""
    if not isinstance(fault, tuple(faults.KINDS.values())):
        raise TypeError(f"not a fault from mimecast_connector.simulator.faults: {fault!r}")
    if times is not None and times < 1:
        raise ValueError(f"times must be >= 1 or None, not {times}")
    if token_endpoint and category is not None:
        raise ValueError("a fault for /oauth/token cannot filter on a category")
    if token_endpoint and not isinstance(fault, TOKEN_ENDPOINT_KINDS):
        raise ValueError(f"{faults.kind_of(fault)} does not apply to /oauth/token")


@dataclass(slots=True)
class _Rule:
    fault: faults.Fault
    tenant: str | None
    category: Category | None
    remaining: int | None  # None: until cleared
    token_endpoint: bool

    def matches(
        self, tenant: str | None, category: Category | None, scheme: Scheme, token_endpoint: bool
    ) -> bool:
        if self.token_endpoint is not token_endpoint:
            return False
        if self.tenant is not None and self.tenant != tenant:
            return False
        if self.category is not None and self.category is not category:
            return False
        if isinstance(self.fault, faults.ExpireToken):
            return scheme is Scheme.V2
        if isinstance(self.fault, faults.BindingExpired):
            return scheme is Scheme.V1
        return True


class FaultQueue:
    """Injected faults waiting for their requests. Thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._rules: list[_Rule] = []

    def add(
        self,
        fault: faults.Fault,
        *,
        tenant: str | None,
        category: Category | None,
        times: int | None,
        token_endpoint: bool,
    ) -> None:
        """Queue ``fault`` for the next ``times`` matching requests (None: until cleared)."""
        check_rule(fault, category=category, times=times, token_endpoint=token_endpoint)
        with self._lock:
            self._rules.append(_Rule(fault, tenant, category, times, token_endpoint))

    def clear(self) -> None:
        """Forget every queued fault."""
        with self._lock:
            self._rules.clear()

    def take(
        self,
        *,
        tenant: str | None,
        category: Category | None,
        scheme: Scheme,
        token_endpoint: bool = False,
    ) -> faults.Fault | None:
        """The fault this request gets, if any, counting it as spent."""
        with self._lock:
            for index, rule in enumerate(self._rules):
                if rule.matches(tenant, category, scheme, token_endpoint):
                    if rule.remaining is not None:
                        rule.remaining -= 1
                        if rule.remaining == 0:
                            del self._rules[index]
                    return rule.fault
        return None
