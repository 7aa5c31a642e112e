"""The login guard keys on the username auth will authenticate (issue 10, defect 2).

Unit tests of ``login_form`` against a FastAPI endpoint declared as auth's ``POST /token`` is
(the reference: what auth would read from the same bytes), then the guard over real HTTP.
"""

from __future__ import annotations

import base64
import random
from collections.abc import Callable, Sequence
from typing import Annotated, Any

import httpx
import pytest
from fastapi import FastAPI, Form
from gateway_service.login_form import MAX_LOGIN_FIELDS, BadLoginRequest, Login, login_username, read_login
from gateway_service.policies import Bucket, PolicySet, login_buckets, parse_policy, username_digest
from modelgate_shared.usernames import canonical_username

URLENCODED = b"application/x-www-form-urlencoded"
TRUST_LOCAL = '["127.0.0.1/32"]'


def full_width(text: str) -> str:
    return "".join(chr(ord(c) + 0xFEE0) if "!" <= c <= "~" else c for c in text)


def multipart(
    fields: Sequence[tuple[str, str]],
    *,
    boundary: str = "XyZ",
    charset: str = "utf-8",
    part_headers: str = "",
) -> bytes:
    """A multipart/form-data body with names and values in ``charset`` (Starlette decodes both so)."""
    out = []
    for name, value in fields:
        out.append(f"--{boundary}\r\n".encode())
        out.append(b'Content-Disposition: form-data; name="' + name.encode(charset) + b'"\r\n')
        out.append(part_headers.encode() + b"\r\n" + value.encode(charset) + b"\r\n")
    out.append(f"--{boundary}--\r\n".encode())
    return b"".join(out)


def mp_type(boundary: str = "XyZ", charset: str | None = None) -> bytes:
    return f"multipart/form-data; boundary={boundary}".encode() + (f"; charset={charset}".encode() if charset else b"")


# -- the reference: auth's endpoint signature, parsed by FastAPI -------------------------------------

OptionalForm = Annotated[str | None, Form()]


def auth_like_app() -> FastAPI:
    app = FastAPI()

    @app.post("/token")
    async def token(
        grant_type: OptionalForm = None,
        username: OptionalForm = None,
        password: OptionalForm = None,
        refresh_token: OptionalForm = None,
        scope: OptionalForm = None,
    ) -> dict[str, Any]:
        return {"username": username}

    return app


@pytest.fixture(scope="module")
def auth_reads() -> Callable[[bytes, bytes], Any]:
    """``(content_type, body) -> the username auth would look up`` (None when auth refuses the body)."""
    app = auth_like_app()

    async def read(content_type: bytes, body: bytes) -> str | None:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://auth.test") as client:
            response = await client.post("/token", content=body, headers={"content-type": content_type.decode()})
        if response.status_code != 200:
            return None
        return canonical_username(response.json()["username"] or "")

    return read


ACCEPTED = [
    (URLENCODED, b"grant_type=password&username=alice&password=x"),
    (URLENCODED, b"username=+Alice+&password=x"),
    (URLENCODED, b"user%6Eame=ALICE&password=x"),  # the name percent-encoded
    (URLENCODED, b"username=%EF%BC%A1lice"),  # full-width A, percent-encoded UTF-8
    (URLENCODED, ("username=" + full_width("alice")).encode()),  # raw UTF-8: auth reads it as latin-1
    (URLENCODED, ("username=" + full_width("Alice")).encode()),
    (URLENCODED, b"username=alice;username=mallory"),  # ';' is no separator: one value
    (URLENCODED, b"&&username=alice&"),
    (URLENCODED, b"username=al%ZZice"),  # a bad escape stays as it is
    (URLENCODED, b"username=&password=x"),  # empty: no username (RFC 6749 3.1, and FastAPI)
    (URLENCODED, b"password=x"),
    (URLENCODED, b""),
    (b"Application/X-WWW-Form-URLEncoded; charset=UTF-8", b"username=%C3%84NN"),
    (b"application/x-www-form-urlencoded;charset=latin-1", b"username=%C4"),
    (mp_type(), multipart([("grant_type", "password"), ("username", "Alice"), ("password", "x")])),
    (mp_type(), multipart([("username", full_width("alice"))])),
    (b'multipart/form-data; boundary="XyZ"', multipart([("username", "ALICE")])),
    (mp_type(charset="utf-16-le"), multipart([("username", full_width("alice"))], charset="utf-16-le")),
    (mp_type(charset="latin-1"), multipart([("username", "Ä")], charset="latin-1")),
    (mp_type(), multipart([("username", "alice")], part_headers="Content-Type: text/plain; charset=utf-16\r\n")),
    (mp_type(), multipart([("password", "x")])),
    (mp_type(), b"--XyZ\r\ngarbage"),  # cut short: no field, for auth too
]


@pytest.mark.parametrize(("content_type", "body"), ACCEPTED)
async def test_the_guard_reads_the_username_auth_reads(
    content_type: bytes, body: bytes, auth_reads: Callable[[bytes, bytes], Any]
) -> None:
    expected = await auth_reads(content_type, body)
    assert expected is not None, "auth takes this body"
    assert await login_username([content_type], body) == expected


def test_spellings_of_one_name_are_one_key() -> None:
    # Case, full width, other compatibility forms (mathematical bold a, circled a), ideographic space.
    names = ["alice", "ALICE", " Alice ", full_width("alice"), full_width("ALICE"), "\U0001d41alice", "\u24d0lice"]
    names += ["\u3000alice\u3000"]
    assert {canonical_username(n) for n in names} == {"alice"}


REFUSED = [
    # RFC 6749 3.2: a parameter twice, whichever copy each reader would take.
    (URLENCODED, b"username=decoy&username=alice&password=x", "'username' is repeated"),
    (URLENCODED, b"username=alice&user%6Eame=decoy", "'username' is repeated"),
    (URLENCODED, b"username=alice&password=a&password=b", "'password' is repeated"),
    (URLENCODED, b"grant_type=password&grant_type=refresh_token", "'grant_type' is repeated"),
    (mp_type(), multipart([("username", "decoy"), ("username", "alice")]), "'username' is repeated"),
    # More fields than any token request has: refused, never a crash (parse_qs raised here before).
    (URLENCODED, b"&".join(b"f%d=x" % n for n in range(MAX_LOGIN_FIELDS + 1)) + b"&username=alice", "Too many"),
    (mp_type(), multipart([(f"f{n}", "x") for n in range(MAX_LOGIN_FIELDS + 1)]), "Too many"),
    # Bodies that do not parse.
    (b"multipart/form-data", multipart([("username", "alice")]), "boundary"),
    (mp_type(), b"preamble\r\n" + multipart([("username", "alice")]), "malformed"),  # auth refuses it too
    (mp_type(), b"--XyZ\r\nContent-Disposition: form-data\r\n\r\nalice\r\n--XyZ--\r\n", "malformed"),
    (
        mp_type(),
        b'--XyZ\r\nContent-Disposition: form-data; name="username"; filename="u.txt"\r\n\r\nalice\r\n--XyZ--\r\n',
        "malformed",
    ),
    # Encodings auth does not read as a form: it would see no parameter at all.
    (b"application/json", b'{"username": "alice", "password": "x"}', "x-www-form-urlencoded or multipart"),
    (b"text/plain", b"username=alice&password=x", "x-www-form-urlencoded or multipart"),
    (b"application/x-www-form-urlencodedX", b"username=alice", "x-www-form-urlencoded or multipart"),
]


@pytest.mark.parametrize(("content_type", "body", "why"), REFUSED)
async def test_bodies_auth_could_read_otherwise_are_refused(content_type: bytes, body: bytes, why: str) -> None:
    with pytest.raises(BadLoginRequest) as refused:
        await login_username([content_type], body)
    assert why in refused.value.description


async def test_a_login_needs_exactly_one_content_type() -> None:
    body = b"username=alice"
    with pytest.raises(BadLoginRequest, match="x-www-form-urlencoded or multipart"):
        await login_username([], body)
    with pytest.raises(BadLoginRequest, match="exactly one Content-Type"):
        await login_username([URLENCODED, URLENCODED], body)


async def test_any_body_the_guard_takes_it_reads_as_auth_does(auth_reads: Callable[[bytes, bytes], Any]) -> None:
    """Seeded mutations of both encodings: whatever the guard does not refuse, it keys on auth's name."""
    rng = random.Random(10)
    seeds = [(content_type, body) for content_type, body in ACCEPTED if body]
    alphabet = b"=&;%+ \r\n\t-\"'\x00\xff\xc3\x84usernamXyZ0A"
    agreed = refused = 0
    for _ in range(400):
        content_type, body = rng.choice(seeds)
        data = bytearray(body)
        for _ in range(rng.randint(1, 4)):
            at = rng.randrange(len(data) + 1)
            if rng.random() < 0.5 and data:
                del data[at : at + rng.randint(1, 3)]
            else:
                data[at:at] = bytes(rng.choice(alphabet) for _ in range(rng.randint(1, 3)))
        try:
            ours = await login_username([content_type], bytes(data))
        except BadLoginRequest:
            refused += 1
            continue
        theirs = await auth_reads(content_type, bytes(data))
        if theirs is not None:
            assert ours == theirs, (content_type, bytes(data))
            agreed += 1
    assert agreed > 100 and refused > 10  # both branches exercised


def test_login_buckets_key_the_hashed_normal_form() -> None:
    policies = PolicySet(
        key_prefix="gw:",
        default=parse_policy("10/minute", "default"),
        login_ip=parse_policy("5/minute", "login_ip"),
        login_username=parse_policy("2/minute", "login_username"),
        overrides={},
        own=parse_policy("20/minute", "own"),
    )
    by_ip = Bucket("gw:login:ip:1.2.3.4", policies.login_ip)
    buckets = login_buckets(policies, "1.2.3.4", "alice")
    assert buckets == [by_ip, Bucket(f"gw:login:user:{username_digest('alice')}", policies.login_username)]
    assert "alice" not in buckets[1].key and len(buckets[1].key) == len("gw:login:user:") + 32
    assert login_buckets(policies, "1.2.3.4", "") == [by_ip]


def basic(client_id: str, secret: str = "x") -> bytes:  # noqa: S107 - a test value
    return b"Basic " + base64.b64encode(f"{client_id}:{secret}".encode())


CLIENT_LOGINS = [
    # (Authorization, body, what auth authenticates)
    (basic("mgc_abc"), b"grant_type=client_credentials", Login("", "mgc_abc")),
    (None, b"grant_type=client_credentials&client_id=mgc_abc&client_secret=x", Login("", "mgc_abc")),
    # RFC 6749 2.3.1: the id is form-urlencoded inside Basic ("%6D" is "m").
    (basic("%6Dgc_abc"), b"grant_type=client_credentials", Login("", "mgc_abc")),
    # Any id is authenticated for client_credentials.
    (basic("app"), b"grant_type=client_credentials", Login("", "app")),
    # Basic wins (auth refuses a second, different form id as invalid_request).
    (basic("mgc_abc"), b"grant_type=client_credentials&client_id=mgc_other", Login("", "mgc_abc")),
    # An empty Basic id (Swagger UI's) presents nothing: the form's id is the one.
    (basic("", ""), b"grant_type=client_credentials&client_id=mgc_abc&client_secret=x", Login("", "mgc_abc")),
    # A service account's id with another grant is authenticated too (then unauthorized_client).
    (basic("mgc_abc"), b"grant_type=password&username=Alice&password=x", Login("alice", "mgc_abc")),
    # A public client naming itself with the password grant is not: no bucket of its own to fill.
    (basic("modelgate-docs", ""), b"grant_type=password&username=alice&password=x", Login("alice", "")),
    (None, b"grant_type=password&username=alice&password=x&client_id=modelgate-docs", Login("alice", "")),
    # A Basic header auth cannot decode: auth authenticates nobody (invalid_client).
    (b"Basic !!!", b"grant_type=client_credentials&client_id=mgc_abc", Login("", "")),
    (b"Bearer abc.def.ghi", b"grant_type=client_credentials", Login("", "")),
]


@pytest.mark.parametrize(("authorization", "body", "expected"), CLIENT_LOGINS)
async def test_the_guard_finds_the_client_auth_authenticates(
    authorization: bytes | None, body: bytes, expected: Login
) -> None:
    assert await read_login([URLENCODED], authorization, body) == expected


def test_client_buckets_are_keyed_on_the_hashed_client_id() -> None:
    policies = PolicySet(
        key_prefix="gw:",
        default=parse_policy("10/minute", "default"),
        login_ip=parse_policy("5/minute", "login_ip"),
        login_username=parse_policy("2/minute", "login_username"),
        overrides={},
        own=parse_policy("20/minute", "own"),
    )
    buckets = login_buckets(policies, "1.2.3.4", "", "mgc_abc")
    assert buckets[1:] == [Bucket(f"gw:login:client:{username_digest('mgc_abc')}", policies.login_username)]
    assert "mgc_abc" not in buckets[1].key
    # A username and a client id of the same text are two buckets.
    assert len({b.key for b in login_buckets(policies, "1.2.3.4", "abc", "abc")}) == 3


# -- over HTTP: the gateway in front of a stand-in auth ---------------------------------------------


def _login(client: httpx.Client, content_type: str, body: bytes, ip: str) -> httpx.Response:
    return client.post("/auth/token", content=body, headers={"Content-Type": content_type, "X-Forwarded-For": ip})


def test_every_encoding_and_spelling_of_a_name_fills_one_bucket(make_gateway: Callable[..., str]) -> None:
    gateway = make_gateway(
        MODELGATE_GATEWAY_RATE_LIMIT_LOGIN_USERNAME="10/hour:4",
        MODELGATE_GATEWAY_RATE_LIMIT_LOGIN_IP="100/hour",
        MODELGATE_GATEWAY_TRUSTED_PROXIES=TRUST_LOCAL,
    )
    attempts = [
        ("application/x-www-form-urlencoded", b"grant_type=password&username=carol&password=x"),
        ("multipart/form-data; boundary=XyZ", multipart([("username", "CAROL"), ("password", "x")])),
        # Full-width, percent-encoded as UTF-8 (what httpx and browsers send).
        ("application/x-www-form-urlencoded", b"username=%EF%BD%83arol&password=x"),
        (
            "multipart/form-data; boundary=XyZ; charset=utf-16-le",
            multipart([("username", full_width("Carol")), ("password", "x")], charset="utf-16-le"),
        ),
    ]
    with httpx.Client(base_url=gateway) as client:
        for n, (content_type, body) in enumerate(attempts):
            answer = _login(client, content_type, body, f"192.0.2.{40 + n}")
            assert answer.status_code == 200, answer.text
            assert answer.json()["upstream"] == "auth"
        # The bucket is empty: each encoding and spelling, from yet another address, waits.
        for n, (content_type, body) in enumerate(attempts):
            blocked = _login(client, content_type, body, f"192.0.2.{50 + n}")
            assert blocked.status_code == 429, blocked.text
            assert "rate_limit_login_username" in blocked.json()["detail"]
        # Another name is not held up.
        assert _login(client, attempts[1][0], multipart([("username", "dave")]), "192.0.2.60").status_code == 200


@pytest.mark.parametrize(
    ("content_type", "body"),
    [
        ("application/x-www-form-urlencoded", b"username=decoy&username=erin&password=x"),
        ("multipart/form-data; boundary=XyZ", multipart([("username", "decoy"), ("username", "erin")])),
        ("application/x-www-form-urlencoded", b"&".join(b"f%d=x" % n for n in range(60)) + b"&username=erin"),
        ("multipart/form-data; boundary=XyZ", b"--XyZ\r\nnot a part"),
        ("application/json", b'{"username": "erin", "password": "x"}'),
        ("text/plain", b"username=erin&password=x"),
    ],
)
def test_an_ambiguous_login_is_refused_before_auth(
    make_gateway: Callable[..., str], content_type: str, body: bytes
) -> None:
    gateway = make_gateway()
    with httpx.Client(base_url=gateway) as client:
        answer = client.post("/auth/token", content=body, headers={"Content-Type": content_type})
    assert answer.status_code == 400, answer.text
    # RFC 6749 5.2, as auth answers; the stand-in auth would have answered 200 with "upstream".
    assert set(answer.json()) == {"error", "error_description"}
    assert answer.json()["error"] == "invalid_request"
    assert answer.headers["cache-control"] == "no-store"
    assert answer.headers["content-type"] == "application/json"
    assert answer.headers["x-request-id"]


def test_a_login_without_content_type_is_refused(make_gateway: Callable[..., str]) -> None:
    gateway = make_gateway()
    with httpx.Client(base_url=gateway) as client:
        answer = client.post("/auth/token", content=b"username=erin&password=x")
    assert answer.status_code == 400
    assert answer.json()["error"] == "invalid_request"


def test_client_authentications_fill_the_clients_bucket(make_gateway: Callable[..., str]) -> None:
    gateway = make_gateway(
        MODELGATE_GATEWAY_RATE_LIMIT_LOGIN_USERNAME="10/hour:4",
        MODELGATE_GATEWAY_RATE_LIMIT_LOGIN_IP="100/hour",
        MODELGATE_GATEWAY_TRUSTED_PROXIES=TRUST_LOCAL,
    )
    form = "application/x-www-form-urlencoded"

    def attempt(n: int, how: str, client_id: str = "mgc_guarded") -> httpx.Response:
        headers = {"Content-Type": form, "X-Forwarded-For": f"192.0.2.{100 + n}"}
        body = b"grant_type=client_credentials"
        if how == "basic":
            headers["Authorization"] = basic(client_id, f"guess-{n}").decode()
        else:
            body += f"&client_id={client_id}&client_secret=guess-{n}".encode()
        return client.post("/auth/token", content=body, headers=headers)

    with httpx.Client(base_url=gateway) as client:
        # Basic and form alike, each from an address of its own: one bucket, the client's.
        for n, how in enumerate(["basic", "form", "basic", "form"]):
            answer = attempt(n, how)
            assert answer.status_code == 200, answer.text
            assert answer.json()["upstream"] == "auth"
        for n, how in enumerate(["basic", "form"], start=10):
            blocked = attempt(n, how)
            assert blocked.status_code == 429, blocked.text
            assert "rate_limit_login_username" in blocked.json()["detail"]
        # Another client is not held up, nor are Swagger UI's password logins naming a public client.
        assert attempt(20, "basic", "mgc_other").status_code == 200
        for n in range(6):
            docs = client.post(
                "/auth/token",
                content=f"grant_type=password&username=user{n}&password=x".encode(),
                headers={
                    "Content-Type": form,
                    "Authorization": basic("modelgate-docs", "").decode(),
                    "X-Forwarded-For": f"192.0.2.{30 + n}",
                },
            )
            assert docs.status_code == 200, docs.text
