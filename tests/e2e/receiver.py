"""The sinks suite's scripted receiver, grown two things the end-to-end tests need.

* a *policy*: a function that answers every request while it is set (a receiver that stays down,
  slow or flapping for as long as the test says, however many requests the connector sends);
* a fixed port, so that a receiver can come back where a stopped one listened, and a connector
  that found the port closed reaches the new one at the same URL.

Every answer is recorded with its request, so a test can tell which alerts were acknowledged.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from typing import Any

from tests.sinks import receiver as scripted
from tests.sinks.receiver import Answer, Request

__all__ = ["Answer", "Receiver", "Request"]


class Receiver(scripted.Receiver):
    """A :class:`tests.sinks.receiver.Receiver` with a standing policy, on ``port`` (0: any)."""

    def __init__(self, port: int = 0) -> None:
        super().__init__()
        self.policy: Callable[[Request], Answer] | None = None
        self.answered: list[tuple[Request, Answer]] = []
        if port:
            self._server.server_close()
            self._server = scripted._Server(("127.0.0.1", port), scripted._Handler)
            self._server.receiver = self
            self._thread = threading.Thread(
                target=self._server.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True
            )

    def _record(self, request: Request) -> Answer:
        answer = super()._record(request)
        policy = self.policy
        if policy is not None:
            answer = policy(request)
        with self._lock:
            self.answered.append((request, answer))
        return answer

    def acknowledged(self) -> list[dict[str, Any]]:
        """Every alert in a request answered 2xx at once (a late answer is no acknowledgement)."""
        with self._lock:
            answered = list(self.answered)
        return [
            alert
            for request, answer in answered
            if 200 <= answer.status < 300 and not answer.delay and not answer.close
            for alert in json.loads(request.body)
        ]
