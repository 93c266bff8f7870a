"""API 1.0 ``get-siem-logs`` against a server that sends too much: the file is spooled to disk
up to ``SIEM_FILE_CAP``, a JSON answer read into memory up to ``max_body_bytes``; past either
the call fails with a clear error instead of filling the disk or the memory (a stream that
never ends cannot do either)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from pydantic import SecretStr

from mimecast_connector import UpstreamFormatError
from mimecast_connector.client import ClientOptions, HmacSigner, MimecastClient, _siem
from mimecast_connector.client._siem import SIEM_LOGS_PATH, fetch_siem_file

MIB = 1024 * 1024


def client_of(answer: httpx.MockTransport, options: ClientOptions | None = None) -> MimecastClient:
    signer = HmacSigner(
        app_id="app-id-1",
        app_key=SecretStr("3f1a6c9e-2b7d-4e0a-9c55-7a1e2d4b8f60"),
        access_key=SecretStr("access-key-1"),
        secret_key=SecretStr("bWltZWNhc3QtdGVzdC1zZWNyZXQta2V5LTMyYnl0ZXM="),
    )
    return MimecastClient(
        tenant="acme",
        base_url="https://eu-api.mimecast.com",
        auth=signer,
        transport=answer,
        options=options,
    )


async def endless(chunk: bytes, sent: list[int]) -> AsyncIterator[bytes]:
    """A body far past any cap here (32 MiB: a regression fails the test instead of hanging
    it), counting what was taken from it."""
    while sum(sent) < 32 * MIB:
        sent.append(len(chunk))
        yield chunk


async def test_a_file_past_the_cap_is_refused_not_spooled_forever(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(_siem, "SIEM_FILE_CAP", 2 * MIB)
    sent: list[int] = []

    def answer(request: httpx.Request) -> httpx.Response:
        assert request.url.path == SIEM_LOGS_PATH
        headers = {
            "content-type": "application/octet-stream",
            "content-disposition": 'attachment; filename="receipt_1.zip"',
            "mc-siem-token": "next",
        }
        return httpx.Response(200, headers=headers, content=endless(b"x" * 65536, sent))

    async with client_of(httpx.MockTransport(answer)) as client:
        with pytest.raises(UpstreamFormatError, match="past 2 MiB, a safety limit") as caught:
            await fetch_siem_file(client, "token-1")
    assert "the file" in str(caught.value)
    assert sum(sent) <= 2 * MIB + 2 * 65536  # it stopped reading at the cap


async def test_a_json_answer_past_the_body_cap_is_refused_not_read_whole() -> None:
    sent: list[int] = []

    def answer(request: httpx.Request) -> httpx.Response:
        return httpx.Response(
            200,
            headers={"content-type": "application/json"},
            content=endless(b'{"meta": {"status": 200}, "pad": "' + b"y" * 65536, sent),
        )

    options = ClientOptions(max_body_bytes=1 * MIB)
    async with client_of(httpx.MockTransport(answer), options) as client:
        with pytest.raises(UpstreamFormatError, match="its JSON answer past 1 MiB"):
            await fetch_siem_file(client, None)
    assert sum(sent) <= 1 * MIB + 2 * 65536


async def test_within_the_caps_the_file_and_the_nothing_new_answer_are_read() -> None:
    """The caps change nothing for what fits: a file comes back whole, and the JSON answer
    that says nothing is new is None."""
    files = [b"PK\x03\x04 a small zip's bytes"]

    def answer(request: httpx.Request) -> httpx.Response:
        if files:
            headers = {
                "content-type": "application/octet-stream",
                "content-disposition": 'attachment; filename="receipt_2.zip"',
                "mc-siem-token": "next-2",
            }
            return httpx.Response(200, headers=headers, content=files.pop())
        return httpx.Response(
            200,
            headers={"content-type": "application/json"},
            content=b'{"meta":{"status":200},"data":[],"fail":[]}',
        )

    async with client_of(httpx.MockTransport(answer)) as client:
        got = await fetch_siem_file(client, None)
        assert got is not None
        try:
            assert (got.name, got.kind, got.next_token) == ("receipt_2.zip", "receipt", "next-2")
            assert got.body.read() == b"PK\x03\x04 a small zip's bytes"
        finally:
            got.body.close()
        assert await fetch_siem_file(client, "next-2") is None
