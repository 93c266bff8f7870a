"""A secret is redacted in every encoding it can take in a message, not only as typed.

The canaries hold the characters that encodings change (``/ + = & % " \\`` and non-ASCII). A
message may carry one percent-encoded (a token request's form body echoed back), JSON-escaped
(an error body quoting our request), base64-encoded, or as the per-request API 1.0 signature.
"""

from __future__ import annotations

import base64
import json
import time
import traceback
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal
from urllib.parse import quote, quote_plus

import httpx
import pytest
import structlog
from click.testing import CliRunner
from pydantic import SecretStr

from mimecast_connector import Category, ConnectorError
from mimecast_connector._cli import main
from mimecast_connector._logging import Redactor, redact, redactor, redactor_of
from mimecast_connector.client import (
    Auth,
    ClientOptions,
    HmacSigner,
    MimecastClient,
    OAuth2ClientCredentials,
    RetryPolicy,
)
from mimecast_connector.simulator import Simulator, faults
from tests.fakes import FakeClock

CANARIES = [
    "CANARY/SECRET+2.0=x&yz",
    'CANARY"quote\\back%25slash',
    "CANARY-ünïcødé/€+Ω=",
]
# An API 1.0 secret key whose bytes are not text and whose base64 holds + and /.
V1_KEY_BYTES = b"CANARY\xfb\xff\xbf-v1-key\xfe\xfa"
V1_SECRET_KEY = base64.b64encode(V1_KEY_BYTES).decode()
V1_APP_KEY = "CANARY-app/key+1=&"
V1_ACCESS_KEY = "CANARY-access-key/+=&%"  # header values are ASCII


def lower_hex(text: str) -> str:
    out, i = [], 0
    while i < len(text):
        if text[i] == "%":
            out.append(text[i : i + 3].lower())
            i += 3
        else:
            out.append(text[i])
            i += 1
    return "".join(out)


def b64(raw: bytes) -> list[str]:
    std = base64.b64encode(raw).decode()
    return [std, base64.urlsafe_b64encode(raw).decode()]


ENCODINGS: dict[str, Callable[[str], list[str]]] = {
    "as-is": lambda s: [s],
    "quote": lambda s: [quote(s, safe=""), quote(s)],
    "quote_plus": lambda s: [quote_plus(s), quote_plus(s, safe="/")],
    "lower-hex": lambda s: [lower_hex(quote(s, safe="")), lower_hex(quote_plus(s))],
    "json-ascii": lambda s: [json.dumps(s)[1:-1]],
    "json-utf8": lambda s: [json.dumps(s, ensure_ascii=False)[1:-1]],
    "base64": lambda s: b64(s.encode()),
}


def forms(secret: str) -> list[str]:
    """Every encoding of ``secret`` this suite checks for."""
    return [form for encode in ENCODINGS.values() for form in encode(secret)]


def every_form() -> list[str]:
    out = [f for s in (*CANARIES, V1_APP_KEY, V1_ACCESS_KEY, V1_SECRET_KEY) for f in forms(s)]
    return out + b64(V1_KEY_BYTES)  # the 1.0 key's decoded bytes, base64 std and urlsafe


def assert_clean(text: str, extra: tuple[str, ...] = ()) -> None:
    for form in (*every_form(), *extra):
        assert form not in text, f"{form!r} leaked"


@pytest.mark.parametrize("secret", CANARIES)
@pytest.mark.parametrize("encoding", list(ENCODINGS))
def test_redact_removes_every_encoding(secret: str, encoding: str) -> None:
    """redact() replaces the secret in each encoding: form/URL, both hex cases, JSON, base64."""
    for form in ENCODINGS[encoding](secret):
        assert form in f"<{form}>"
        out = redact(f"before <{form}> after", [secret])
        assert form not in out
        assert out.startswith("before <")
        assert out.endswith("> after")
        assert "***" in out


def test_the_v1_secret_keys_decoded_bytes_are_redacted_in_base64_forms() -> None:
    """Given the base64 Secret Key, its bytes re-encoded (standard or URL-safe) are redacted too."""
    std, urlsafe = b64(V1_KEY_BYTES)
    assert std != urlsafe  # the premise: the two forms differ
    out = redact(f"a {std} b {urlsafe} c {std.rstrip('=')} d", [V1_SECRET_KEY])
    for form in (std, urlsafe, std.rstrip("=")):
        assert form not in out


@pytest.mark.parametrize("secret", CANARIES)
def test_the_log_processor_redacts_every_encoding(secret: str) -> None:
    """The structlog processor removes every form, in nested values and exceptions too."""
    process = redactor([secret])
    event: dict[str, Any] = {
        "event": " ".join(forms(secret)),
        "nested": {"list": forms(secret), "tuple": tuple(forms(secret))},
        "exc": ValueError(" ".join(forms(secret))),
    }
    text = repr(process(None, "info", event))
    for form in forms(secret):
        assert form not in text, form


def test_one_implementation_behind_both_entry_points() -> None:
    """redact(), the processor and the Redactor give the same text for the same secrets."""
    text = " | ".join(every_form())
    secrets = [*CANARIES, V1_SECRET_KEY]
    once = Redactor(secrets)
    assert redact(text, secrets) == once(text)
    assert redactor(secrets)(None, "info", {"event": text}) == {"event": once(text)}


def test_many_secrets_use_the_index_and_still_redact_every_form() -> None:
    """With 3,000 secrets the redactor takes its indexed path and still finds every encoding."""
    many = [f"filler-{i:05d}-secret/+=" for i in range(3000)] + CANARIES
    process = redactor(many)
    text = " ".join(f for s in CANARIES for f in forms(s)) + " " + quote_plus(many[1234])
    out = str(process(None, "info", {"event": text}))
    for form in [*(f for s in CANARIES for f in forms(s)), quote_plus(many[1234])]:
        assert form not in out


# --- through the client -----------------------------------------------------------------------

Api = Literal["1.0", "2.0"]


class EchoServer:
    """An httpx transport that answers with the request quoted back, as a careless server would.

    ``status`` answers every log request (200 means a ``fail`` entry); ``token_status`` the
    token request. Every Authorization value sent is kept, to search for later.
    """

    def __init__(self, status: int, token_status: int = 200) -> None:
        self.status = status
        self.token_status = token_status
        self.authorizations: list[str] = []

    def quote(self, request: httpx.Request) -> str:
        body = request.content.decode("utf-8")
        headers = dict(request.headers)
        return (
            f"you sent {body} headers {json.dumps(headers)} {json.dumps(headers, ensure_ascii=False)}"
            f" body {json.dumps(body)} {json.dumps(body, ensure_ascii=False)}"
            f" b64 {base64.b64encode(request.content).decode()}"
        )

    def __call__(self, request: httpx.Request) -> httpx.Response:
        if "authorization" in request.headers:
            self.authorizations.append(request.headers["authorization"])
        if request.url.path == "/oauth/token":
            if self.token_status == 200:
                return httpx.Response(200, json={"access_token": "T0KEN/+=ab", "expires_in": 1800})
            fail = [{"code": "InvalidClientIdentifier", "message": self.quote(request)}]
            return httpx.Response(self.token_status, json={"fail": fail})
        if self.status == 200:
            errors = [{"code": "echo", "message": self.quote(request), "retryable": False}]
            body = {"meta": {"status": 200}, "data": [], "fail": [{"errors": errors}]}
            return httpx.Response(200, json=body)
        return httpx.Response(
            self.status, json={"fail": [{"code": "echo", "message": self.quote(request)}]}
        )


def make_auth(api: Api, clock: FakeClock) -> Auth:
    if api == "2.0":
        return OAuth2ClientCredentials("cid", SecretStr(CANARIES[0]), clock=clock)
    return HmacSigner(
        app_id="app-id",
        app_key=SecretStr(V1_APP_KEY),
        access_key=SecretStr(V1_ACCESS_KEY),
        secret_key=SecretStr(V1_SECRET_KEY),
        clock=clock,
    )


async def fail_through_client(api: Api, server: EchoServer) -> str:
    """Read one window against ``server``; every text the failure produced, joined."""
    clock = FakeClock(start=time.time())
    client = MimecastClient(
        tenant="acme",
        base_url="https://api.example.test",
        auth=make_auth(api, clock),
        options=ClientOptions(retry=RetryPolicy(attempts=3)),
        transport=httpx.MockTransport(server),
        clock=clock,
        secrets=CANARIES,
    )
    end = datetime.now(UTC)
    with structlog.testing.capture_logs() as logs, pytest.raises(ConnectorError) as caught:
        async for _ in client.pages(Category.URL, end - timedelta(hours=1), end):
            pass
    await client.aclose()
    return "\n".join(
        [
            str(caught.value),
            repr(caught.value),
            "".join(traceback.format_exception(caught.value)),
            repr(getattr(caught.value, "failures", None)),
            repr(logs),
        ]
    )


def signatures(server: EchoServer) -> tuple[str, ...]:
    """Each Authorization value sent and its credential part (token, or access key and signature)."""
    out: list[str] = []
    for value in server.authorizations:
        credential = value.partition(" ")[2]
        out += [value, credential, credential.rpartition(":")[2]]
    return tuple(f for s in out for f in forms(s) if len(s) >= 8)


@pytest.mark.parametrize("api", ["2.0", "1.0"])
@pytest.mark.parametrize("status", [400, 401, 500, 200])
async def test_an_echoing_server_gets_no_encoding_of_a_secret_into_messages(
    api: Api, status: int
) -> None:
    """Log-request answers quoting headers and body (JSON-escaped, base64) leak no secret, no signature."""
    server = EchoServer(status)
    text = await fail_through_client(api, server)
    assert "you sent" in text  # the server's words did reach the message
    assert server.authorizations  # the premise: credentials were sent and echoed
    assert_clean(text, signatures(server))


@pytest.mark.parametrize("token_status", [400, 401])
async def test_a_token_endpoint_echoing_the_form_leaks_no_secret(token_status: int) -> None:
    """The 2.0 token request's form (client_secret percent-encoded) quoted back leaks nothing."""
    text = await fail_through_client("2.0", EchoServer(500, token_status=token_status))
    assert "client_secret=" in text  # the form did reach the message
    assert quote_plus(CANARIES[0]) not in text
    assert lower_hex(quote_plus(CANARIES[0])) not in text
    assert_clean(text)


# --- through the command line: check, run, status, the state database --------------------------


@pytest.fixture
def echoing_setup(tmp_path: Path) -> Iterator[tuple[Path, Simulator]]:
    secret = CANARIES[0]
    with Simulator(seed=4) as sim:
        tenant = sim.add_tenant("acme", client_secret=secret)
        sim.inject(faults.Echo(401), tenant="acme", token_endpoint=True, times=None)
        config = tmp_path / "config.toml"
        config.write_text(
            f'state = "state/connector.db"\n\n[[tenants]]\nname = "acme"\n'
            f'base_url = "{sim.url}"\nclient_id = "{tenant.client_id}"\n'
            f"client_secret = {json.dumps(secret)}\n\n"
            '[[sinks]]\ntype = "jsonl"\npath = "out/alerts.jsonl"\n',
            "utf-8",
        )
        try:
            yield config, sim
        finally:
            structlog.reset_defaults()  # the CLI pointed structlog at CliRunner's stream


def test_check_run_and_status_leak_no_encoding_of_the_secret(
    echoing_setup: tuple[Path, Simulator],
) -> None:
    """check, run --once and status against a token endpoint echoing the form: no form of the secret anywhere."""
    config, sim = echoing_setup
    texts = []
    for args in (
        ["check", "--config", str(config)],
        ["run", "--config", str(config), "--once", "--log-level", "debug"],
        ["status", "--config", str(config)],
    ):
        result = CliRunner().invoke(main, args, catch_exceptions=True)
        texts.append(result.output + result.stderr)
        if result.exc_info is not None and not isinstance(result.exception, SystemExit):
            texts.append("".join(traceback.format_exception(*result.exc_info)))
    text = "\n".join(texts)
    assert "client_secret=" in text  # the echo reached the output
    assert any(r.path == "/oauth/token" for r in sim.requests)
    assert_clean(text)
    written = [p for p in config.parent.rglob("*") if p.is_file() and p != config]
    assert any(p.name == "connector.db" for p in written)
    for path in written:
        data = path.read_bytes()
        for form in every_form():
            assert form.encode() not in data, f"{form!r} in {path}"


def test_a_webhook_urls_token_path_is_redacted_but_short_words_are_not() -> None:
    """A URL secret's long path segment (a token) is redacted alone; short segments stay readable."""
    token = "T0K3N-in-the-path-0123456789"
    url = f"https://hooks.example.test/api/hook/{token}"
    out = redact(f"posting to /api/ttp/url/get-logs failed; hook {token}", [url])
    assert token not in out
    assert "/api/ttp/url/get-logs" in out


async def test_a_secret_straddling_the_quote_cut_leaves_no_prefix() -> None:
    """Mimecast's words are redacted before they are cut to 500 characters: no half secret survives."""
    secret = CANARIES[0]

    def handle(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/oauth/token":
            message = "x" * 490 + secret  # the cut at 500 would fall inside the secret
            return httpx.Response(401, json={"fail": [{"code": "e", "message": message}]})
        return httpx.Response(500)

    clock = FakeClock(start=time.time())
    client = MimecastClient(
        tenant="acme",
        base_url="https://api.example.test",
        auth=OAuth2ClientCredentials("cid", SecretStr(secret), clock=clock),
        transport=httpx.MockTransport(handle),
        clock=clock,
    )
    with pytest.raises(ConnectorError) as caught:
        await client.check()
    await client.aclose()
    assert secret[:7] not in str(caught.value)


def test_a_fleets_clients_share_one_redactor_for_the_configured_secrets() -> None:
    """Every client given the same configured secrets reuses one Redactor: the forms are built once."""
    fleet = [f"tenant-{i:04d}-secret/+=" for i in range(3000)]
    clients = [
        MimecastClient(
            tenant=f"t{i}",
            base_url="https://api.example.test",
            auth=OAuth2ClientCredentials("cid", SecretStr(fleet[i])),
            secrets=list(fleet),
        )
        for i in range(3)
    ]
    first = clients[0]._static_redactor
    assert all(c._static_redactor is first for c in clients)
    assert redactor_of(fleet) is first


def test_a_list_of_secrets_changed_in_place_is_read_again() -> None:
    """The redactor of the tuple asked for last is handed back without hashing it again (a
    run asks once per client); a list is always read afresh, since it can change in place."""
    secrets = ("first-secret-1234", "second-secret-5678")
    assert redactor_of(secrets) is redactor_of(secrets)
    assert redactor_of(secrets)("a second-secret-5678 b") == "a *** b"
    changing = ["first-secret-1234"]
    assert redactor_of(changing)("x third-secret-9012") == "x third-secret-9012"
    changing.append("third-secret-9012")
    assert redactor_of(changing)("x third-secret-9012") == "x ***"
