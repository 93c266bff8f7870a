"""The queue of injected faults and the rule that decides which request a fault hits.

Faults live in three lanes that never mix: the TTP log endpoints (the default), ``/oauth/token``
(``token_endpoint=True``) and the SIEM endpoints (``siem=...``). Within a lane a fault is spent on
the next request that matches its tenant and category filters (None matches any) and that it
can apply to: ``ExpireToken`` needs an API 2.0 bearer request, ``BindingExpired`` an API 1.0
request, a file fault a request that answers with a file. Rules are tried in the order they were
injected; each request takes at most one fault.

SIEM requests are of three kinds (:class:`SiemCall`): the 2.0 batch listing, the download of a
2.0 batch file (a presigned link: no credentials, the tenant is the link's), and the 1.0
``get-siem-logs`` call. A rule names the kinds it may hit; the SIEM-only fault kinds (``faults.
SIEM_KINDS``) always go to the SIEM lane, to the kinds they apply to.
"""

from __future__ import annotations

import enum
import threading
from dataclasses import dataclass
from typing import Literal, TypeAlias

from mimecast_connector._categories import Category
from mimecast_connector.simulator import faults
from mimecast_connector.simulator._auth import Scheme


class SiemCall(enum.Enum):
    """The kinds of SIEM request a fault may hit."""

    LISTING = "listing"
    DOWNLOAD = "download"
    GET_SIEM_LOGS = "get-siem-logs"


SiemFilter: TypeAlias = bool | Literal["listing", "download", "get-siem-logs"]
"""``False``: not a SIEM fault; ``True``: any SIEM request it applies to; or one kind."""

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

_ALL_CALLS = frozenset(SiemCall)
_AUTHENTICATED = frozenset({SiemCall.LISTING, SiemCall.GET_SIEM_LOGS})
_FILE_CALLS = frozenset({SiemCall.DOWNLOAD, SiemCall.GET_SIEM_LOGS})
_SIEM_CALLS: dict[type[faults.Fault], frozenset[SiemCall]] = {
    faults.HttpStatus: _ALL_CALLS,
    faults.RateLimited: _ALL_CALLS,
    faults.Truncate: _ALL_CALLS,
    faults.NotJson: _ALL_CALLS,
    faults.Slow: _ALL_CALLS,
    faults.Disconnect: _ALL_CALLS,
    faults.Echo: _AUTHENTICATED,
    faults.FailResponse: _AUTHENTICATED,
    faults.ExpireToken: _AUTHENTICATED,
    faults.BindingExpired: frozenset({SiemCall.GET_SIEM_LOGS}),
    faults.TruncatedFile: _FILE_CALLS,
    faults.NotGzip: _FILE_CALLS,
    faults.HugeFile: _FILE_CALLS,
    faults.ExpiredLink: frozenset({SiemCall.DOWNLOAD}),
    faults.LateBatch: _AUTHENTICATED,
}
"""The SIEM requests each kind can apply to; a kind missing here is for TTP pages only."""


def siem_calls(
    fault: faults.Fault,
    *,
    category: Category | None,
    times: int | None,
    token_endpoint: bool,
    siem: SiemFilter,
) -> frozenset[SiemCall] | None:
    """Check a rule and say which SIEM requests it may hit (None: it is not a SIEM rule).

    Refuses a rule that could never apply with a ValueError (a TypeError for a non-fault).
    """
    if not isinstance(fault, tuple(faults.KINDS.values())):
        raise TypeError(f"not a fault from mimecast_connector.simulator.faults: {fault!r}")
    if times is not None and times < 1:
        raise ValueError(f"times must be >= 1 or None, not {times}")
    kind = faults.kind_of(fault)
    if isinstance(fault, faults.SIEM_KINDS) and siem is False:
        siem = True  # these exist only on the SIEM endpoints
    if siem is not False:
        if token_endpoint:
            raise ValueError("a fault cannot be both for /oauth/token and for the SIEM endpoints")
        if category is not None:
            raise ValueError("a SIEM fault cannot filter on a category")
        applicable = _SIEM_CALLS.get(type(fault), frozenset())
        if not applicable:
            raise ValueError(f"{kind} does not apply to the SIEM endpoints")
        if siem is True:
            return applicable
        call = SiemCall(siem)
        if call not in applicable:
            raise ValueError(f"{kind} does not apply to a SIEM {call.value} request")
        return frozenset({call})
    if token_endpoint and category is not None:
        raise ValueError("a fault for /oauth/token cannot filter on a category")
    if token_endpoint and not isinstance(fault, TOKEN_ENDPOINT_KINDS):
        raise ValueError(f"{kind} does not apply to /oauth/token")
    return None


def check_rule(
    fault: faults.Fault,
    *,
    category: Category | None,
    times: int | None,
    token_endpoint: bool,
    siem: SiemFilter = False,
) -> None:
    """Refuse a rule that could never apply, with a ValueError saying why."""
    siem_calls(fault, category=category, times=times, token_endpoint=token_endpoint, siem=siem)


@dataclass(slots=True)
class _Rule:
    fault: faults.Fault
    tenant: str | None
    category: Category | None
    remaining: int | None  # None: until cleared
    token_endpoint: bool
    siem: frozenset[SiemCall] | None  # None: not a SIEM rule

    def matches(
        self,
        tenant: str | None,
        category: Category | None,
        scheme: Scheme,
        token_endpoint: bool,
        siem: SiemCall | None,
    ) -> bool:
        if self.token_endpoint is not token_endpoint:
            return False
        if (self.siem is None) is not (siem is None):
            return False
        if self.siem is not None and siem not in self.siem:
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
        siem: SiemFilter = False,
    ) -> None:
        """Queue ``fault`` for the next ``times`` matching requests (None: until cleared)."""
        calls = siem_calls(
            fault, category=category, times=times, token_endpoint=token_endpoint, siem=siem
        )
        with self._lock:
            self._rules.append(_Rule(fault, tenant, category, times, token_endpoint, calls))

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
        siem: SiemCall | None = None,
    ) -> faults.Fault | None:
        """The fault this request gets, if any, counting it as spent."""
        with self._lock:
            for index, rule in enumerate(self._rules):
                if rule.matches(tenant, category, scheme, token_endpoint, siem):
                    if rule.remaining is not None:
                        rule.remaining -= 1
                        if rule.remaining == 0:
                            del self._rules[index]
                    return rule.fault
        return None
