"""Opaque tokens: the frozen query and the position of a paging session, sealed.

A :class:`Sealer` turns a small msgspec struct into a token: the payload is authenticated with
HMAC-SHA256 and masked with a keystream derived from the key and that tag, so a token is
``base64url(tag || masked payload)``: it reveals nothing and cannot be forged, edited or carried
to another simulator, tenant or endpoint; any of those reads as invalid.

:class:`PageTokens` seals the TTP log paging state (tenant, category, the frozen :class:`Query`,
the store snapshot and the record offset). Because the token holds the whole query, a client may
resend ``data`` with it or send the token alone (``shared/docs/mimecast-api.md`` §4.3). The SIEM
endpoints (``_siemapi.py``) seal their cursors and file keys with their own sealers.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
from typing import Generic, TypeVar

import msgspec

from mimecast_connector.simulator._store import Query

_TAG_SIZE = 16

S = TypeVar("S", bound=msgspec.Struct)


class PageState(msgspec.Struct, frozen=True, array_like=True):
    """Where a paging session stands."""

    tenant: str
    category: str
    query: Query
    snapshot: int
    offset: int
    hop: int = 0  # empty pages served so far: makes each EmptyPageWithNext token fresh


class Sealer(Generic[S]):
    """Issues and reads tokens holding one ``kind`` of struct, under one random secret key."""

    def __init__(self, kind: type[S]) -> None:
        self._key = secrets.token_bytes(32)
        self._decoder = msgspec.json.Decoder(kind)

    def issue(self, state: S) -> str:
        """The token for ``state``; the same state always gives the same token."""
        payload = msgspec.json.encode(state)
        tag = self._tag(payload)
        return base64.urlsafe_b64encode(tag + self._mask(tag, payload)).decode().rstrip("=")

    def read(self, token: str) -> S | None:
        """The state inside ``token``, or None if it was not issued here or was altered."""
        try:
            raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        except (binascii.Error, ValueError):
            return None
        tag, masked = raw[:_TAG_SIZE], raw[_TAG_SIZE:]
        payload = self._mask(tag, masked)
        if len(tag) < _TAG_SIZE or not hmac.compare_digest(tag, self._tag(payload)):
            return None
        return self._decoder.decode(payload)  # authenticated, so it is one of ours

    def _tag(self, payload: bytes) -> bytes:
        return hmac.new(self._key, payload, hashlib.sha256).digest()[:_TAG_SIZE]

    def _mask(self, tag: bytes, data: bytes) -> bytes:
        stream = hashlib.shake_256(self._key + tag).digest(len(data))
        return bytes(a ^ b for a, b in zip(data, stream, strict=True))


class PageTokens(Sealer[PageState]):
    """Issues and reads TTP log page tokens."""

    def __init__(self) -> None:
        super().__init__(PageState)
