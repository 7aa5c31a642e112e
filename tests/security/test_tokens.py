"""The token matrix (RFC 8725): every forged, malformed or misused bearer token is a 401.

Each case is sent to a route of every service through the gateway (inference V1 and V2, auth,
the gateway's own admin API) and directly to inference and auth, which verify tokens themselves.
Expected: 401 with an RFC 6750 challenge, never 200, never 5xx, and no body that echoes the token.
A valid token without the route's scope is a 403 ``insufficient_scope``.

Forgeries are signed with the stack's own private key (tests may read the state folder), so a
token that is refused is refused for the one flaw the case put in it: the controls show the same
token without the flaw is accepted everywhere. The gateway requests of each case come from an
address of their own (``own_ip_client``), so the anonymous buckets they fill are the case's own.
"""

from __future__ import annotations

import asyncio
import base64
import datetime
import hashlib
import hmac
import json
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.x509.oid import NameOID
from modelgate_shared.keys import PrivateKey, load_private_key_pem, public_jwk
from modelgate_shared.stack import Stack
from modelgate_shared.tokens import REQUIRED_CLAIMS

from ..conftest import (
    PREDICT_LIMIT_PER_MINUTE,
    PROXY_ADDRESS,
    RECORD_SECRETS,
    SECRETS,
    bearer,
    fresh_client_ip,
    password_login,
    sign_up,
)
from .conftest import SecurityReport

PIMA_ROW = {"preg": 6, "plas": 148, "pres": 72, "skin": 35, "test": 0, "mass": 33.6, "pedi": 0.627, "age": 50}
ALL_SCOPES = "predict models:read admin"


@dataclass(frozen=True)
class Route:
    name: str
    client: str  # "gateway" (through the public URL), "inference" or "auth" (directly)
    method: str
    path: str
    scope: str | None  # the scope the route requires; None: any valid token of an existing user
    body: dict[str, Any] | None = None


ROUTES = (
    Route("gateway>inference POST /v1/models/diabetes/predict", "gateway", "POST", "/v1/models/diabetes/predict",
          "predict", {"instances": [PIMA_ROW]}),
    Route("gateway>inference GET /v2/models/diabetes", "gateway", "GET", "/v2/models/diabetes", "models:read"),
    Route("gateway>auth GET /auth/users/me", "gateway", "GET", "/auth/users/me", None),
    Route("gateway GET /admin/usage", "gateway", "GET", "/admin/usage", "admin"),
    Route("inference POST /v1/models/diabetes/predict", "inference", "POST", "/v1/models/diabetes/predict",
          "predict", {"instances": [PIMA_ROW]}),
    Route("inference GET /v2/models/diabetes", "inference", "GET", "/v2/models/diabetes", "models:read"),
    Route("auth GET /users/me", "auth", "GET", "/users/me", None),
)  # fmt: skip


# -- forging -------------------------------------------------------------------------------------


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def segment(value: Any) -> str:
    """A JOSE segment: bytes as they are, anything else as compact JSON."""
    raw = value if isinstance(value, bytes) else json.dumps(value, separators=(",", ":")).encode()
    return b64url(raw)


def rs256(key: PrivateKey, signing_input: bytes) -> bytes:
    if isinstance(key, rsa.RSAPrivateKey):
        return key.sign(signing_input, padding.PKCS1v15(), hashes.SHA256())
    der = key.sign(signing_input, ec.ECDSA(hashes.SHA256()))
    # JWS wants r || s, 32 bytes each, not DER.
    from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

    r, s = decode_dss_signature(der)
    return r.to_bytes(32, "big") + s.to_bytes(32, "big")


def jws(header: Any, claims: Any, key: PrivateKey | None = None, *, hmac_secret: bytes | None = None) -> str:
    """A compact JWS over exactly this header and payload: signed with ``key`` (RS256/ES256), with
    HMAC-SHA256 over ``hmac_secret``, or unsigned (empty signature) when neither is given."""
    signing_input = f"{segment(header)}.{segment(claims)}".encode()
    if key is not None:
        signature = rs256(key, signing_input)
    elif hmac_secret is not None:
        signature = hmac.new(hmac_secret, signing_input, hashlib.sha256).digest()
    else:
        signature = b""
    return f"{signing_input.decode()}.{b64url(signature)}"


def unverified(token: str) -> tuple[dict[str, Any], dict[str, Any]]:
    header, payload, _ = token.split(".")
    pad = lambda s: s + "=" * (-len(s) % 4)  # noqa: E731
    return json.loads(base64.urlsafe_b64decode(pad(header))), json.loads(base64.urlsafe_b64decode(pad(payload)))


def self_signed_certificate(key: rsa.RSAPrivateKey) -> bytes:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "attacker")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.DER)


class KeyUrlListener:
    """An HTTP server a ``jku``/``x5u`` header points at; it serves the attacker's keys and
    records every connection, so a verifier that fetches one is caught."""

    def __init__(self, document: bytes) -> None:
        self.document = document
        self.connections: list[bytes] = []
        self.url = ""
        self._server: asyncio.Server | None = None

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        port = self._server.sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            self.connections.append(await asyncio.wait_for(reader.read(65536), 5))
        except TimeoutError:
            self.connections.append(b"(connected, sent nothing)")
        head = f"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {len(self.document)}\r\n"
        writer.write(head.encode() + b"Connection: close\r\n\r\n" + self.document)
        await writer.drain()
        writer.close()

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()


@dataclass
class Kit:
    """What the cases forge from: the stack's key, a real user and their real tokens, an attacker."""

    key: PrivateKey
    kid: str
    public_pem: bytes
    jwks_text: bytes
    base_header: dict[str, Any]
    base_claims: dict[str, Any]
    access_token: str
    refresh_token: str
    attacker: rsa.RSAPrivateKey
    attacker_jwk: dict[str, str]
    attacker_ec: ec.EllipticCurvePrivateKey
    listener: KeyUrlListener

    def claims(self, **changes: Any) -> dict[str, Any]:
        """The real token's claims, fresh, with every scope; a change of ``...`` drops that claim."""
        now = int(time.time())
        claims = {**self.base_claims, "scope": ALL_SCOPES, "iat": now, "nbf": now, "exp": now + 600}
        claims["jti"] = uuid.uuid4().hex
        claims.update(changes)
        return {name: value for name, value in claims.items() if value is not ...}

    def header(self, **changes: Any) -> dict[str, Any]:
        header = {**self.base_header, **changes}
        return {name: value for name, value in header.items() if value is not ...}

    def sign(self, header: Any = None, claims: Any = None) -> str:
        """Signed with the stack's key: only the changed field is wrong."""
        return jws(self.header() if header is None else header, self.claims() if claims is None else claims, self.key)


@dataclass(frozen=True)
class Attack:
    """How the token travels: an Authorization header value, or the ``access_token`` query parameter."""

    authorization: str | None = None
    query_token: str | None = None
    token: str = ""
    # The RFC 6750 error code the challenge must carry; None when no bearer token was presented.
    error: str | None = None


def as_bearer(token: str) -> Attack:
    return Attack(authorization=f"Bearer {token}", token=token, error="invalid_token")


@dataclass(frozen=True)
class Case:
    attack_class: str
    build: Callable[[Kit], Attack]


def hs256_public_key(secret: Callable[[Kit], bytes]) -> Case:
    return Case(
        "HMAC (HS256) keyed with the public key",
        lambda k: as_bearer(jws(k.header(alg="HS256"), k.claims(), hmac_secret=secret(k))),
    )


def signed(
    attack_class: str, header: Callable[[Kit], Any] | None = None, claims: Callable[[Kit], Any] | None = None
) -> Case:
    return Case(
        attack_class,
        lambda k: as_bearer(k.sign(header(k) if header else None, claims(k) if claims else None)),
    )


def tampered_payload(k: Kit) -> Attack:
    header, _, signature = k.access_token.split(".")
    _, claims = unverified(k.access_token)
    escalated = segment({**claims, "scope": ALL_SCOPES})
    return as_bearer(f"{header}.{escalated}.{signature}")


def flipped_signature(k: Kit) -> Attack:
    header, payload, signature = k.access_token.split(".")
    middle = len(signature) // 2
    flipped = signature[:middle] + ("A" if signature[middle] != "A" else "B") + signature[middle + 1 :]
    return as_bearer(f"{header}.{payload}.{flipped}")


def now_plus(seconds: int) -> int:
    return int(time.time()) + seconds


def nan_exp(k: Kit) -> bytes:
    claims = k.claims(exp=0)
    return json.dumps(claims).replace('"exp": 0', '"exp": NaN').encode()


CASES: dict[str, Case] = {
    # alg none, in the spellings libraries have accepted, with and without a signature
    **{
        f"alg-{alg}": Case("alg none", lambda k, alg=alg: as_bearer(jws(k.header(alg=alg), k.claims())))
        for alg in ("none", "None", "NONE", "nOnE")
    },
    "alg-none-with-signature": Case("alg none", lambda k: as_bearer(k.sign(k.header(alg="none")))),
    # HMAC with the public key as the secret, in every form a verifier might hold it
    "hs256-public-pem": hs256_public_key(lambda k: k.public_pem),
    "hs256-public-pem-stripped": hs256_public_key(lambda k: k.public_pem.strip()),
    "hs256-jwks-document": hs256_public_key(lambda k: k.jwks_text),
    "hs256-jwk-n": hs256_public_key(lambda k: public_jwk(k.key.public_key())["n"].encode()),
    "hs256-empty-secret": hs256_public_key(lambda k: b""),
    # algorithms outside the allow-list, and one that does not match the key
    **{
        f"alg-{alg}": signed("algorithm not allowed", lambda k, alg=alg: k.header(alg=alg))
        for alg in ("RS512", "PS256", "ES256", "EdDSA", "")
    },
    # a key of the attacker's own
    "foreign-key-own-kid": Case(
        "foreign key",
        lambda k: as_bearer(jws(k.header(kid=k.attacker_jwk["kid"]), k.claims(), k.attacker)),
    ),
    "foreign-key-real-kid": Case("foreign key", lambda k: as_bearer(jws(k.header(), k.claims(), k.attacker))),
    "foreign-ec-key-real-kid": Case(
        "foreign key", lambda k: as_bearer(jws(k.header(alg="ES256"), k.claims(), k.attacker_ec))
    ),
    # unknown kid, and kids that are paths, SQL, or oversized
    "kid-unknown": signed("unknown kid", lambda k: k.header(kid=b64url(uuid.uuid4().bytes + uuid.uuid4().bytes))),
    "kid-missing": signed("unknown kid", lambda k: k.header(kid=...)),
    "kid-empty": signed("unknown kid", lambda k: k.header(kid="")),
    "kid-too-long": signed("unknown kid", lambda k: k.header(kid="k" * 129)),
    **{
        f"kid-{name}": signed("kid injection (path, SQL)", lambda k, kid=kid: k.header(kid=kid))
        for name, kid in {
            "traversal": "../../../../../../../../etc/passwd",
            "dev-null": "/dev/null",
            "private-key-dir": "../private/../../keys/private",
            "sql-or": "' OR '1'='1",
            "sql-union": "x' UNION SELECT 'secret' --",
            "sql-drop": "1; DROP TABLE users; --",
            "nul": "kid\u0000",
            "jndi": "${jndi:ldap://127.0.0.1:1/x}",
            "url": "http://127.0.0.1:1/jwks.json",
        }.items()
    },
    "kid-dev-null-hs256-empty": Case(
        "kid injection (path, SQL)",
        lambda k: as_bearer(jws(k.header(alg="HS256", kid="/dev/null"), k.claims(), hmac_secret=b"")),
    ),
    # keys the token brings along or points at: never fetched, never trusted
    "jku-attacker-kid": Case(
        "jku / x5u / jwk / x5c",
        lambda k: as_bearer(
            jws(k.header(kid=k.attacker_jwk["kid"], jku=f"{k.listener.url}/jwks.json"), k.claims(), k.attacker)
        ),
    ),
    "jku-real-kid": Case(
        "jku / x5u / jwk / x5c",
        lambda k: as_bearer(jws(k.header(jku=f"{k.listener.url}/jwks.json"), k.claims(), k.attacker)),
    ),
    "x5u-attacker": Case(
        "jku / x5u / jwk / x5c",
        lambda k: as_bearer(
            jws(k.header(kid=k.attacker_jwk["kid"], x5u=f"{k.listener.url}/cert.pem"), k.claims(), k.attacker)
        ),
    ),
    "x5u-no-kid": Case(
        "jku / x5u / jwk / x5c",
        lambda k: as_bearer(jws(k.header(kid=..., x5u=f"{k.listener.url}/cert.pem"), k.claims(), k.attacker)),
    ),
    "jwk-embedded": Case(
        "jku / x5u / jwk / x5c",
        lambda k: as_bearer(jws(k.header(kid=k.attacker_jwk["kid"], jwk=k.attacker_jwk), k.claims(), k.attacker)),
    ),
    "jwk-embedded-no-kid": Case(
        "jku / x5u / jwk / x5c", lambda k: as_bearer(jws(k.header(kid=..., jwk=k.attacker_jwk), k.claims(), k.attacker))
    ),
    "x5c-embedded": Case(
        "jku / x5u / jwk / x5c",
        lambda k: as_bearer(
            jws(
                k.header(kid=..., x5c=[base64.b64encode(self_signed_certificate(k.attacker)).decode()]),
                k.claims(),
                k.attacker,
            )
        ),
    ),
    "crit-unknown": signed("crit header", lambda k: k.header(crit=["exp"], exp=1)),
    # times beyond the 30 s leeway
    "expired-an-hour-ago": signed(
        "expired", claims=lambda k: k.claims(iat=now_plus(-4200), nbf=now_plus(-4200), exp=now_plus(-3600))
    ),
    "expired-beyond-leeway": signed("expired", claims=lambda k: k.claims(exp=now_plus(-120))),
    "nbf-an-hour-ahead": signed("nbf ahead", claims=lambda k: k.claims(nbf=now_plus(3600))),
    "nbf-beyond-leeway": signed("nbf ahead", claims=lambda k: k.claims(nbf=now_plus(120))),
    # issuer and audience
    "iss-attacker": signed("wrong iss", claims=lambda k: k.claims(iss="https://attacker.example/auth")),
    "iss-trailing-slash": signed("wrong iss", claims=lambda k: k.claims(iss=k.base_claims["iss"] + "/")),
    "iss-empty": signed("wrong iss", claims=lambda k: k.claims(iss="")),
    "aud-other": signed("wrong aud", claims=lambda k: k.claims(aud="other-api")),
    "aud-other-list": signed("wrong aud", claims=lambda k: k.claims(aud=["other-api", "third-api"])),
    "aud-empty-list": signed("wrong aud", claims=lambda k: k.claims(aud=[])),
    "aud-case": signed("wrong aud", claims=lambda k: k.claims(aud=k.base_claims["aud"].upper())),
    # each required claim missing, and an empty subject
    **{
        f"missing-{claim}": signed("missing required claim", claims=lambda k, claim=claim: k.claims(**{claim: ...}))
        for claim in REQUIRED_CLAIMS
    },
    "sub-empty": signed("missing required claim", claims=lambda k: k.claims(sub="")),
    # a real token changed after signing
    "tampered-payload-scope": Case("tampered token", tampered_payload),
    "tampered-signature": Case("tampered token", flipped_signature),
    "signature-stripped": Case("tampered token", lambda k: as_bearer(k.access_token.rsplit(".", 1)[0] + ".")),
    # not a JWS at all, or one whose parts are not what they claim
    **{
        f"malformed-{name}": Case("malformed token", lambda k, make=make: as_bearer(make(k)))
        for name, make in {
            "garbage": lambda k: "not-a-token",
            "dots": lambda k: "..",
            "two-segments": lambda k: k.access_token.rsplit(".", 1)[0],
            "four-segments": lambda k: k.access_token + ".e30",
            "jwe-shaped": lambda k: ".".join(
                [segment({"alg": "RSA-OAEP", "enc": "A256GCM", "kid": k.kid})] + ["e30"] * 4
            ),
            "header-not-base64": lambda k: "%%%." + k.access_token.split(".", 1)[1],
            "header-not-json": lambda k: segment(b"{alg") + "." + k.access_token.split(".", 1)[1],
            "header-json-list": lambda k: segment(["RS256"]) + "." + k.access_token.split(".", 1)[1],
            "payload-not-json": lambda k: jws(k.header(), b"not json", k.key),
            "payload-json-list": lambda k: jws(k.header(), [k.claims()], k.key),
            "payload-json-string": lambda k: jws(k.header(), "claims", k.key),
            "payload-nan-exp": lambda k: jws(k.header(), nan_exp(k), k.key),
            "payload-deeply-nested": lambda k: jws(k.header(), (b'{"x":' * 5000) + b"1" + (b"}" * 5000), k.key),
        }.items()
    },
    # far beyond any token auth issues (about 1 KB)
    "oversized-9kb": signed("oversized token", claims=lambda k: k.claims(pad="p" * 9000)),
    "oversized-15kb": signed("oversized token", claims=lambda k: k.claims(pad="p" * 15000)),
    # a valid token in the wrong place, or the wrong token
    "token-in-query-string": Case(
        "token in the query string", lambda k: Attack(query_token=k.access_token, token=k.access_token)
    ),
    "forged-valid-token-in-query-string": Case(
        "token in the query string", lambda k: Attack(query_token=k.sign(), token="")
    ),
    "refresh-token-as-bearer": Case("refresh token as a bearer token", lambda k: as_bearer(k.refresh_token)),
    "basic-scheme": Case(
        "refresh token as a bearer token",
        lambda k: Attack(authorization=f"Basic {k.access_token}", token=k.access_token),
    ),
}

# Every field auth puts in a token, header and claims alike, given each wrong JSON type.
HEADER_FIELDS = ("alg", "kid", "typ")
STRING_CLAIMS = ("iss", "aud", "sub", "preferred_username", "scope", "jti", "sid")
TIME_CLAIMS = ("iat", "nbf", "exp")
OPTIONAL_CLAIMS = ("preferred_username", "sid")


def wrong_types(value: Any, *, numeric: bool, audience: bool = False) -> dict[str, Any]:
    return {
        # A list is the right type for aud, so the list is one of numbers there.
        "list": [7] if audience else [value],
        "object": {"value": value},
        # A number is the right type for a time claim, so it gets the number as a string instead.
        "string" if numeric else "number": str(value) if numeric else 7,
        "null": None,
        "bool": True,
    }


def type_cases() -> list[Any]:
    params = []
    for name in HEADER_FIELDS:
        for kind in wrong_types("x", numeric=False):
            params.append(pytest.param(name, kind, "header", id=f"header-{name}-{kind}"))
    for name in (*STRING_CLAIMS, *TIME_CLAIMS):
        for kind in wrong_types(0, numeric=name in TIME_CLAIMS):
            params.append(pytest.param(name, kind, "claims", id=f"claim-{name}-{kind}"))
    return params


# -- fixtures ------------------------------------------------------------------------------------


@dataclass
class Clients:
    gateway: httpx.AsyncClient
    inference: httpx.AsyncClient
    auth: httpx.AsyncClient

    def for_route(self, route: Route) -> httpx.AsyncClient:
        client: httpx.AsyncClient = getattr(self, route.client)
        return client


@pytest.fixture(scope="module")
async def direct(stack: Stack) -> AsyncIterator[tuple[httpx.AsyncClient, httpx.AsyncClient]]:
    async with (
        httpx.AsyncClient(base_url=stack.url("inference"), timeout=30, event_hooks=RECORD_SECRETS) as inference,
        httpx.AsyncClient(base_url=stack.url("auth"), timeout=30, event_hooks=RECORD_SECRETS) as auth,
    ):
        yield inference, auth


@pytest.fixture
def clients(own_ip_client: httpx.AsyncClient, direct: tuple[httpx.AsyncClient, httpx.AsyncClient]) -> Clients:
    return Clients(own_ip_client, *direct)


def stack_signing_key(stack: Stack, kid: str) -> PrivateKey:
    for path in sorted(stack.private_keys_dir.glob("*.pem")):
        key = load_private_key_pem(path.read_bytes(), str(path))
        if public_jwk(key.public_key())["kid"] == kid:
            return key
    raise AssertionError(f"no private key with kid {kid} in {stack.private_keys_dir}")


@pytest.fixture(scope="module")
async def kit(stack: Stack) -> AsyncIterator[Kit]:
    async with httpx.AsyncClient(
        base_url=stack.gateway_url,
        transport=httpx.AsyncHTTPTransport(local_address=PROXY_ADDRESS),
        headers={"X-Forwarded-For": fresh_client_ip()},
        event_hooks=RECORD_SECRETS,
    ) as client:
        username, password, _ = await sign_up(client)
        tokens = await password_login(client, username, password)
    header, claims = unverified(tokens["access_token"])
    key = stack_signing_key(stack, header["kid"])
    attacker = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    attacker_jwk = public_jwk(attacker.public_key())
    listener = KeyUrlListener(json.dumps({"keys": [attacker_jwk]}).encode())
    await listener.start()
    try:
        yield Kit(
            key=key,
            kid=header["kid"],
            public_pem=key.public_key().public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            ),
            jwks_text=stack.public_jwks.read_bytes(),
            base_header=header,
            base_claims=claims,
            access_token=tokens["access_token"],
            refresh_token=tokens["refresh_token"],
            attacker=attacker,
            attacker_jwk=attacker_jwk,
            attacker_ec=ec.generate_private_key(ec.SECP256R1()),
            listener=listener,
        )
    finally:
        await listener.stop()


async def send(clients: Clients, route: Route, attack: Attack) -> httpx.Response:
    headers = {"Authorization": attack.authorization} if attack.authorization is not None else {}
    params = {"access_token": attack.query_token} if attack.query_token is not None else {}
    return await clients.for_route(route).request(
        route.method, route.path, json=route.body, headers=headers, params=params
    )


def describe(route: Route, response: httpx.Response) -> str:
    return (
        f"{route.name}: {response.status_code} {response.text[:300]!r} "
        f"www-authenticate={response.headers.get('www-authenticate')!r}"
    )


async def assert_refused(
    clients: Clients, attack: Attack, attack_class: str, report: SecurityReport, routes: tuple[Route, ...] = ROUTES
) -> None:
    SECRETS.add_token("bearer token", attack.token)
    outcomes = [(route, await send(clients, route, attack)) for route in routes]
    wrong = []
    for route, response in outcomes:
        report.saw(f"tokens: {attack_class}", response.status_code)
        challenge = response.headers.get("www-authenticate", "")
        if (
            response.status_code != 401
            or not challenge.startswith("Bearer")
            or (attack.error is not None and f'error="{attack.error}"' not in challenge)
            or (attack.token and attack.token in response.text)
        ):
            wrong.append(describe(route, response))
    assert not wrong, "expected 401 with a Bearer challenge everywhere; got:\n" + "\n".join(wrong)


# -- the matrix ----------------------------------------------------------------------------------


async def test_controls_the_unflawed_tokens_are_accepted(clients: Clients, kit: Kit, report: SecurityReport) -> None:
    """Without these the 401s below would prove nothing: the forged token with no flaw in it
    works on every route, and the real token everywhere its scopes allow."""
    forged = kit.sign()
    for route in ROUTES:
        response = await send(clients, route, as_bearer(forged))
        report.saw("tokens: controls (valid tokens)", response.status_code)
        assert response.status_code == 200, describe(route, response)
        real = await send(clients, route, as_bearer(kit.access_token))
        report.saw("tokens: controls (valid tokens)", real.status_code)
        assert real.status_code == (403 if route.scope == "admin" else 200), describe(route, real)


@pytest.mark.parametrize("case_id", list(CASES))
async def test_forged_or_misused_token_is_401(case_id: str, clients: Clients, kit: Kit, report: SecurityReport) -> None:
    case = CASES[case_id]
    connections_before = len(kit.listener.connections)
    await assert_refused(clients, case.build(kit), case.attack_class, report)
    assert len(kit.listener.connections) == connections_before, (
        f"a verifier fetched a key URL from the token: {kit.listener.connections[connections_before:]}"
    )


@pytest.mark.parametrize(("name", "kind", "part"), type_cases())
async def test_every_field_of_the_wrong_json_type_is_401(
    name: str, kind: str, part: str, clients: Clients, kit: Kit, report: SecurityReport
) -> None:
    if part == "claims" and name in OPTIONAL_CLAIMS and name not in kit.base_claims:
        pytest.skip(f"auth does not issue {name!r}")
    if part == "header":
        value = wrong_types(kit.base_header.get(name, "x"), numeric=False)[kind]
        token = kit.sign(header=kit.header(**{name: value}))
    else:
        value = wrong_types(kit.base_claims[name], numeric=name in TIME_CLAIMS, audience=name == "aud")[kind]
        token = kit.sign(claims=kit.claims(**{name: value}))
    await assert_refused(clients, as_bearer(token), f"wrong JSON type ({part})", report)


async def test_the_matrix_covers_every_field_auth_issues(kit: Kit) -> None:
    """A field auth starts issuing must join the wrong-type matrix above."""
    assert set(kit.base_header) <= set(HEADER_FIELDS), sorted(kit.base_header)
    assert set(kit.base_claims) <= {*STRING_CLAIMS, *TIME_CLAIMS}, sorted(kit.base_claims)


@pytest.mark.parametrize("route", [r for r in ROUTES if r.scope], ids=lambda r: r.name)
async def test_a_valid_token_without_the_scope_is_403_insufficient_scope(
    route: Route, clients: Clients, kit: Kit, report: SecurityReport
) -> None:
    others = " ".join(s for s in ALL_SCOPES.split() if s != route.scope)
    for scope in (others, ""):
        response = await send(clients, route, as_bearer(kit.sign(claims=kit.claims(scope=scope))))
        report.saw("tokens: valid token without the scope", response.status_code)
        assert response.status_code == 403, describe(route, response)
        challenge = response.headers.get("www-authenticate", "")
        assert 'error="insufficient_scope"' in challenge, describe(route, response)
        assert f'scope="{route.scope}"' in challenge, describe(route, response)


async def test_no_verifier_ever_fetched_a_key_url(kit: Kit) -> None:
    # Anything started in the background by a jku/x5u case would have connected by now.
    await asyncio.sleep(0.5)
    assert kit.listener.connections == []


# -- malformed tokens are counted against the client like any anonymous request ---------------------


@pytest.mark.parametrize(
    ("header_change", "path"),
    [
        pytest.param({"alg": ["RS256"]}, "/v2/models/diabetes", id="alg-list"),
        pytest.param({"alg": {"RS256": True}}, "/v2/models/diabetes", id="alg-object"),
        pytest.param({"kid": ["x"]}, "/v2/models/diabetes", id="kid-list"),
        pytest.param({"alg": None}, "/v2/models/diabetes", id="alg-null"),
    ],
)
async def test_malformed_tokens_are_rate_limited_per_client(
    header_change: dict[str, Any], path: str, own_ip_client: httpx.AsyncClient, kit: Kit, report: SecurityReport
) -> None:
    """Issue 10's first defect: a token whose alg was a list skipped the limiter. Now it is an
    anonymous request, keyed on the client's address, and the address's bucket runs out."""
    token = kit.sign(header=kit.header(**header_change))
    SECRETS.add_token("bearer token", token)
    statuses = []
    for _ in range(PREDICT_LIMIT_PER_MINUTE + 10):
        response = await own_ip_client.get(path, headers=bearer(token))
        statuses.append(response.status_code)
        report.saw(f"tokens: malformed token floods from one address, GET {path}", response.status_code)
        assert response.status_code in (401, 429), response.text
        assert "ratelimit-limit" in response.headers, dict(response.headers)
        if response.status_code == 429:
            assert int(response.headers["retry-after"]) >= 1
            break
    assert statuses[-1] == 429, f"no 429 after {len(statuses)} malformed tokens from one address"
    assert len(statuses) >= PREDICT_LIMIT_PER_MINUTE, statuses


# The gateway's own endpoints, one of each class, and what a client gets there until its bucket is
# empty: the admin API (a malformed token: anonymous, 401), the docs page, its Swagger UI bundle,
# the merged spec, the probes, and /metrics from an address outside METRICS_ALLOW (401).
OWN_ENDPOINTS = [
    pytest.param("/admin/usage", 401, id="admin"),
    pytest.param("/docs", 200, id="docs"),
    pytest.param("/docs/assets/swagger-ui-bundle.js", 200, id="docs-assets"),
    pytest.param("/openapi.json", 200, id="openapi"),
    pytest.param("/healthz", 200, id="healthz"),
    pytest.param("/readyz", 200, id="readyz"),
    pytest.param("/metrics", 401, id="metrics-public"),
]


@pytest.mark.parametrize(("path", "status"), OWN_ENDPOINTS)
async def test_the_gateways_own_endpoints_are_rate_limited_per_client(
    path: str, status: int, own_ip_client: httpx.AsyncClient, kit: Kit, report: SecurityReport
) -> None:
    """Issue 10: the gateway's own endpoints were outside the limiter, whatever the token. Now a
    client (here anonymous: its token is malformed) floods its own bucket and gets the proxy's 429."""
    token = kit.sign(header=kit.header(alg=["RS256"]))
    SECRETS.add_token("bearer token", token)
    headers = bearer(token)
    first = await own_ip_client.get(path, headers=headers)
    assert first.status_code == status, first.text[:300]
    burst = int(first.headers["ratelimit-limit"])
    if "etag" in first.headers:
        headers["If-None-Match"] = first.headers["etag"]  # the 1.7 MB bundle once; 304s after
    statuses = [first.status_code]
    # The bucket refills while the flood runs: a slow machine needs more than the burst to empty it.
    for _ in range(3 * burst):
        response = await own_ip_client.get(path, headers=headers)
        statuses.append(response.status_code)
        report.saw(f"tokens: own-endpoint floods from one address, GET {path}", response.status_code)
        assert response.status_code in (status, 304, 429), response.text[:300]
        assert "ratelimit-limit" in response.headers, dict(response.headers)
        if response.status_code == 429:
            assert int(response.headers["retry-after"]) >= 1
            assert response.json()["error"] == "rate_limited"
            assert response.headers["ratelimit-remaining"] == "0"
            break
    assert statuses[-1] == 429, f"no 429 after {len(statuses)} requests from one address"
    assert len(statuses) > burst, statuses
