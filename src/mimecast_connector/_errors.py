"""Every exception the connector raises on purpose, in one tree.

Two questions decide what happens to a failure, so every error answers both:

* ``retryable``: may the same call succeed later without anybody changing anything?
* ``fault``: whose move is it?  ``"config"`` (the user's settings or the Mimecast account: fix
  and restart; pauses that tenant, pages nobody), ``"upstream"`` (Mimecast or the network:
  wait), ``"ours"`` (a bug or a broken local resource: report it).

::

    ConnectorError                         fault / retryable
    ├── ConfigError                        config / no     the settings file or a secret
    ├── StateError                         config / no     the state database: damaged, locked, newer
    │   ├── StateUnavailableError          upstream / yes  the PostgreSQL server did not answer
    │   └── LeaseLostError                 ours / yes      a fleet poll was taken over meanwhile
    ├── InternalError                      ours / yes      anything else, so no stream dies silently
    ├── SinkError                          (carries the sink's name)
    │   ├── SinkUnavailableError           upstream / yes  down, slow, 5xx, 408, 429
    │   ├── SinkStorageError               ours / yes      a local file write failed: disk full,
    │   │                                                  folder removed, I/O error
    │   └── SinkRejectedError              config / no     a 4xx other than 408/429; a local file
    │                                                      cannot be opened at start
    └── ApiError                           (carries tenant, endpoint, request id, status)
        ├── AuthError                      config / no     401 after one refresh; bad token request
        ├── ForbiddenError                 config / no     403: the API user lacks a role
        ├── BindingExpiredError            config / no     418: API 1.0 key binding expired
        ├── CertificateError               config / no     the host's TLS certificate fails verification
        ├── ApiFailure                     upstream / per item   200 with a non-empty ``fail``
        ├── RateLimitedError               upstream / yes  429 that outlasted the retry budget
        ├── UnavailableError               upstream / yes  5xx, timeouts, connection errors
        ├── UpstreamFormatError            upstream / yes  body not JSON, not the envelope, truncated, too large
        ├── PaginationError                upstream / yes  a repeated ``next`` token, too many pages
        └── UnexpectedResponseError        upstream / no   a status the table does not know

Messages say what to do. They never contain a secret: whatever reaches a message from a
response body passes through the tenant's redactor first (see ``client._client``).
"""

from __future__ import annotations

from typing import Literal

Fault = Literal["config", "upstream", "ours"]


class ConnectorError(Exception):
    """Base class of every error the connector raises on purpose."""

    fault: Fault = "ours"
    retryable: bool = False


class ConfigError(ConnectorError):
    """The configuration is wrong. ``problems`` lists every problem as ``(key path, message)``."""

    fault: Fault = "config"

    def __init__(self, problems: list[tuple[str, str]]) -> None:
        self.problems = list(problems)
        lines = [f"{path}: {msg}" if path else msg for path, msg in self.problems]
        super().__init__("invalid configuration:\n  " + "\n  ".join(lines))


class StateError(ConnectorError):
    """The state database cannot be used as it is; the message says how to recover."""

    fault: Fault = "config"


class StateUnavailableError(StateError):
    """The PostgreSQL state server or the network to it failed: nothing past the last commit
    was recorded, and the next call reconnects."""

    fault: Fault = "upstream"
    retryable = True


class LeaseLostError(StateError):
    """Another poll of the stream took its lease (this worker was presumed dead: it sent no
    heartbeat for too long); this poll stops without delivering or committing more, and the
    other one goes on. Nothing is lost: what this poll did not commit, the other reads."""

    fault: Fault = "ours"
    retryable = True

    def __init__(self, tenant: str, category: str) -> None:
        self.tenant, self.category = tenant, category
        super().__init__(
            f"{tenant} / {category}: another worker took this stream over (this one sent no "
            "heartbeat for too long: a stall, a pause or a cut network); this poll stops "
            "without committing, the other goes on from the last commit"
        )


class SinkError(ConnectorError):
    """A sink did not acknowledge a batch."""

    fault: Fault = "upstream"

    def __init__(self, message: str, *, sink: str) -> None:
        self.sink = sink
        super().__init__(f"sink {sink}: {message}")


class SinkUnavailableError(SinkError):
    """The sink may take the batch later: it is down, slow, or said 5xx, 408 or 429."""

    retryable = True


class SinkStorageError(SinkError):
    """A local file sink (or the dead-letter file) could not write: the disk is full, its folder
    was removed, an I/O error. Our side, and retryable: nothing past the last committed batch was
    kept, and the batch is written again once the message's advice is followed."""

    fault: Fault = "ours"
    retryable = True


class SinkRejectedError(SinkError):
    """The sink refused the batch in a way a retry will not change; someone must act."""

    fault: Fault = "config"


class InternalError(ConnectorError):
    """Something failed that has no error of its own here (a bug, or a local resource such as
    the disk): reported with its type, so that a stream records it instead of dying."""

    fault: Fault = "ours"
    retryable = True

    def __init__(self, cause: BaseException) -> None:
        self.cause_type = type(cause).__name__
        super().__init__(f"unexpected {self.cause_type}: {cause}")


class ApiError(ConnectorError):
    """A call to the Mimecast API did not give records.

    ``tenant`` is the configured tenant name, ``endpoint`` the API path, ``request_id`` the id
    Mimecast can look the call up by (API 1.0 ``x-mc-req-id``; for API 2.0 our own), and
    ``status`` the HTTP status when there was a response.
    """

    fault: Fault = "upstream"

    def __init__(
        self,
        message: str,
        *,
        tenant: str,
        endpoint: str,
        request_id: str | None = None,
        status: int | None = None,
    ) -> None:
        self.message = message
        self.tenant = tenant
        self.endpoint = endpoint
        self.request_id = request_id
        self.status = status
        super().__init__(message)

    def __str__(self) -> str:
        where = f"tenant {self.tenant!r}, {self.endpoint}"
        if self.status is not None:
            where += f", HTTP {self.status}"
        if self.request_id:
            where += f", request id {self.request_id}"
        return f"{self.message} ({where})"

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str(self)!r})"


class AuthError(ApiError):
    """Mimecast refused the credentials, even after a fresh token or signature."""

    fault: Fault = "config"


class ForbiddenError(ApiError):
    """The API user is authenticated but lacks the role that the endpoint needs."""

    fault: Fault = "config"


class BindingExpiredError(ApiError):
    """API 1.0 only: the access key / secret key binding has expired (HTTP 418)."""

    fault: Fault = "config"


class CertificateError(ApiError):
    """The API host's TLS certificate failed verification (self-signed, an intercepting proxy,
    the wrong host): not retried, since every retry meets the same certificate."""

    fault: Fault = "config"


class ApiFailure(ApiError):
    """HTTP 200 whose ``fail`` array is not empty: the function itself failed.

    ``failures`` holds ``(code, message)`` pairs; ``retryable`` is true only when Mimecast
    marked every failure retryable.
    """

    def __init__(
        self,
        message: str,
        *,
        failures: list[tuple[str, str]],
        retryable: bool,
        tenant: str,
        endpoint: str,
        request_id: str | None = None,
        status: int | None = None,
    ) -> None:
        super().__init__(
            message, tenant=tenant, endpoint=endpoint, request_id=request_id, status=status
        )
        self.failures = failures
        self.retryable = retryable


class RateLimitedError(ApiError):
    """Mimecast kept answering 429 for longer than the retry budget allows."""

    retryable = True


class UnavailableError(ApiError):
    """5xx, a timeout or a connection failure that outlasted the retry budget."""

    retryable = True


class UpstreamFormatError(ApiError):
    """The response body is not JSON, is truncated, has the wrong shape, or is too large."""

    retryable = True


class PaginationError(ApiError):
    """Paging did not end: a ``next`` token came back twice, or the page guard was reached."""

    retryable = True


class UnexpectedResponseError(ApiError):
    """A status the response table has no row for (400, 404, 405, 409, ...)."""
