"""In-process stand-ins, over real HTTP, for Atlassian's OAuth 2.0 (3LO) authorization server and
API gateway, and for Jira Server's OAuth 1.0a endpoints.

FakeAtlassianAuth (auth.atlassian.com + api.atlassian.com, one server):
- GET /authorize records the request, checks the client and redirect URI (an unknown one gets an
  error page, no redirect, as Atlassian does), then "the signed-in user consents" and is redirected
  to redirect_uri with `code` and `state` (or `error=access_denied` when `decline` is set).
- POST /oauth/token (JSON or form body): `authorization_code` checks the client secret, the
  one-time code, the redirect URI and, when the authorization carried a code_challenge, the PKCE
  verifier (S256); `refresh_token` ROTATES: a new refresh token every time, the used one disabled;
  a reused, unknown or revoked one gets 403 {"error": "invalid_grant"}, as Atlassian documents.
- GET /oauth/token/accessible-resources lists the sites for a valid bearer token.
JSON answers carry Content-Type exactly `application/json`.

FakeJiraOAuth1 (Jira Server's /plugins/servlet/oauth/*): request token and access token are
signed POSTs whose RSA-SHA1 signature is verified against the application link's public key;
a refusal is a 401 with an `oauth_problem` body, as Jira answers.

FakeVerify plays Jira's GET /myself for the account service: it asks the two fakes above (and a
table of personal access tokens) whose token it was given.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

import aiohttp
from aiohttp import web
from aiohttp.test_utils import TestServer
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from oauthlib.oauth1.rfc5849 import signature as oauth_signature

from bot.accounts.models import JiraIdentity, TokenRejected
from bot.jira.credentials import Credentials, OAuth1Token, OAuth2Token, PersonalAccessToken


def _json(status: int, body: Any) -> web.Response:
    return web.Response(
        status=status, body=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
    )


@dataclass(frozen=True)
class AtlassianAccount:
    account_id: str
    display_name: str
    email: str


@dataclass(frozen=True)
class Site:
    cloud_id: str
    url: str
    name: str = "Site"


@dataclass
class _Code:
    client_id: str
    redirect_uri: str
    challenge: str | None
    account: AtlassianAccount
    scope: str


@dataclass
class _Grant:
    account: AtlassianAccount
    scope: str
    revoked: bool = False


class _Server:
    def __init__(self) -> None:
        self._server: TestServer | None = None
        self._released = asyncio.Event()  # lets held requests end when the fake stops

    def app(self) -> web.Application:
        raise NotImplementedError

    async def start(self) -> str:
        self._server = TestServer(self.app(), host="127.0.0.1")
        await self._server.start_server()
        return self.url

    @property
    def url(self) -> str:
        assert self._server is not None, "start() first"
        return str(self._server.make_url("")).rstrip("/")

    async def close(self) -> None:
        self._released.set()
        if self._server is not None:
            await self._server.close()


@dataclass
class FakeAtlassianAuth(_Server):
    client_id: str
    client_secret: str
    sites: list[Site]
    account: AtlassianAccount
    redirect_uris: set[str] = field(default_factory=set)  # empty: any
    access_ttl: int = 3600
    decline: bool = False
    authorize_requests: list[dict[str, str]] = field(default_factory=list)
    token_requests: list[str] = field(default_factory=list)  # grant types, in order
    # Refresh requests left unanswered, as by a sign-in service that never processed them; the
    # refresh token they carry stays valid. Counted down by each request held.
    hold_refreshes: int = 0
    refreshes_done: int = 0  # refresh grants answered with new tokens
    # Called with each access token issued, so that a fake Jira can accept it.
    on_issue: Callable[[str, AtlassianAccount], None] | None = None
    _codes: dict[str, _Code] = field(default_factory=dict)
    _access: dict[str, _Grant] = field(default_factory=dict)
    _refresh: dict[str, _Grant] = field(default_factory=dict)

    def __post_init__(self) -> None:
        _Server.__init__(self)

    def app(self) -> web.Application:
        app = web.Application()
        app.add_routes(
            [
                web.get("/authorize", self._authorize),
                web.post("/oauth/token", self._token),
                web.get("/oauth/token/accessible-resources", self._resources),
            ]
        )
        return app

    # -------------------------------------------------------------------------- test helpers

    def identity_for(self, access_token: str) -> AtlassianAccount | None:
        grant = self._access.get(access_token)
        return grant.account if grant and not grant.revoked else None

    def live_refresh_tokens(self) -> list[str]:
        return [t for t, g in self._refresh.items() if not g.revoked]

    def revoke(self, account_id: str) -> None:
        """The user revoked the app in their Atlassian profile: every token of theirs stops working."""
        for grant in [*self._access.values(), *self._refresh.values()]:
            if grant.account.account_id == account_id:
                grant.revoked = True

    # ----------------------------------------------------------------------------- endpoints

    async def _authorize(self, request: web.Request) -> web.StreamResponse:
        q = dict(request.query)
        self.authorize_requests.append(q)
        redirect_uri = q.get("redirect_uri", "")
        if q.get("client_id") != self.client_id or (
            self.redirect_uris and redirect_uri not in self.redirect_uris
        ):
            return web.Response(status=400, text="Something went wrong: invalid client or redirect_uri")
        if q.get("response_type") != "code" or q.get("audience") != "api.atlassian.com":
            return web.Response(status=400, text="Something went wrong: bad request")
        challenge = q.get("code_challenge")
        if challenge is not None and q.get("code_challenge_method") != "S256":
            return web.Response(status=400, text="Something went wrong: unsupported code_challenge_method")
        sep = "&" if "?" in redirect_uri else "?"
        if self.decline:
            params = {
                "error": "access_denied",
                "error_description": "The user declined",
                "state": q.get("state", ""),
            }
            raise web.HTTPFound(redirect_uri + sep + urlencode(params))
        code = secrets.token_urlsafe(16)
        self._codes[code] = _Code(self.client_id, redirect_uri, challenge, self.account, q.get("scope", ""))
        raise web.HTTPFound(redirect_uri + sep + urlencode({"code": code, "state": q.get("state", "")}))

    async def _token(self, request: web.Request) -> web.Response:
        if request.content_type == "application/json":
            body = await request.json()
        else:
            body = dict(await request.post())
        grant_type = body.get("grant_type")
        self.token_requests.append(str(grant_type))
        if body.get("client_id") != self.client_id or body.get("client_secret") != self.client_secret:
            return _json(401, {"error": "access_denied", "error_description": "Unauthorized"})
        if grant_type == "authorization_code":
            return self._exchange_code(body)
        if grant_type == "refresh_token":
            if self.hold_refreshes > 0:
                self.hold_refreshes -= 1
                await self._released.wait()  # until the fake stops
                return _json(503, {"error": "temporarily_unavailable"})
            grant = self._refresh.pop(str(body.get("refresh_token", "")), None)
            if grant is None or grant.revoked:
                return _json(
                    403, {"error": "invalid_grant", "error_description": "Unknown or invalid refresh token."}
                )
            self.refreshes_done += 1
            return self._issue(grant.account, grant.scope)
        return _json(400, {"error": "unsupported_grant_type"})

    def _exchange_code(self, body: dict[str, Any]) -> web.Response:
        invalid = _json(403, {"error": "invalid_grant", "error_description": "Invalid authorization code"})
        code = self._codes.pop(str(body.get("code", "")), None)  # one-time, even when refused below
        if code is None or code.redirect_uri != body.get("redirect_uri"):
            return invalid
        if code.challenge is not None:
            verifier = str(body.get("code_verifier", ""))
            digest = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).decode().rstrip("=")
            if not verifier or digest != code.challenge:
                return invalid
        return self._issue(code.account, code.scope)

    def grant(self, account: AtlassianAccount, scope: str) -> tuple[str, str]:
        """An access and a refresh token as a finished consent would have issued them."""
        access, refresh = secrets.token_urlsafe(24), secrets.token_urlsafe(24)
        self._access[access] = _Grant(account, scope)
        if "offline_access" in scope.split():
            self._refresh[refresh] = _Grant(account, scope)
        if self.on_issue is not None:
            self.on_issue(access, account)
        return access, refresh

    def _issue(self, account: AtlassianAccount, scope: str) -> web.Response:
        access, refresh = self.grant(account, scope)
        body: dict[str, Any] = {
            "access_token": access,
            "expires_in": self.access_ttl,
            "scope": scope,
            "token_type": "Bearer",
        }
        if "offline_access" in scope.split():
            body["refresh_token"] = refresh
        return _json(200, body)

    async def _resources(self, request: web.Request) -> web.Response:
        auth = request.headers.get("Authorization", "")
        token = auth[len("Bearer ") :] if auth.startswith("Bearer ") else ""
        grant = self._access.get(token)
        if grant is None or grant.revoked:
            return _json(401, {"code": 401, "message": "Unauthorized"})
        return _json(
            200,
            [
                {
                    "id": s.cloud_id,
                    "name": s.name,
                    "url": s.url,
                    "scopes": grant.scope.split(),
                    "avatarUrl": "https://site-admin-avatar-cdn.example/avatars/240/flag.png",
                }
                for s in self.sites
            ],
        )


# ------------------------------------------------------------------------------ OAuth 1.0a


def new_rsa_key_pair() -> tuple[str, str]:
    """(private PEM, public PEM) for an application link."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    public = (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    return private, public


@dataclass(frozen=True)
class JiraServerUser:
    name: str
    display_name: str
    email: str


@dataclass
class _RequestToken:
    secret: str
    callback: str
    verifier: str | None = None


@dataclass
class FakeJiraOAuth1(_Server):
    consumer_key: str
    public_key_pem: str
    user: JiraServerUser
    approve: bool = True
    _requests: dict[str, _RequestToken] = field(default_factory=dict)
    _access: dict[str, JiraServerUser] = field(default_factory=dict)
    _nonces: set[str] = field(default_factory=set)

    def __post_init__(self) -> None:
        _Server.__init__(self)
        key = serialization.load_pem_public_key(self.public_key_pem.encode())
        assert isinstance(key, rsa.RSAPublicKey), "an application link uses an RSA key"
        self._public_key = key

    def app(self) -> web.Application:
        app = web.Application()
        app.add_routes(
            [
                web.post("/plugins/servlet/oauth/request-token", self._request_token),
                web.get("/plugins/servlet/oauth/authorize", self._authorize),
                web.post("/plugins/servlet/oauth/access-token", self._access_token),
            ]
        )
        return app

    def identity_for(self, access_token: str) -> JiraServerUser | None:
        return self._access.get(access_token)

    @staticmethod
    def _problem(problem: str) -> web.Response:
        return web.Response(
            status=401,
            text=f"oauth_problem={problem}",
            headers={"WWW-Authenticate": f'OAuth realm="jira", oauth_problem="{problem}"'},
        )

    async def _verified(self, request: web.Request) -> dict[str, str] | web.Response:
        body = await request.text()
        header = request.headers.get("Authorization", "")
        params = oauth_signature.collect_parameters(
            uri_query=request.query_string,
            body=body or None,
            headers={"Authorization": header},
            exclude_oauth_signature=False,
        )
        oauth = dict(params)
        if oauth.get("oauth_consumer_key") != self.consumer_key:
            return self._problem("consumer_key_unknown")
        if oauth.get("oauth_signature_method") != "RSA-SHA1":
            return self._problem("signature_method_rejected")
        nonce = oauth.get("oauth_nonce", "")
        if not nonce or nonce in self._nonces:
            return self._problem("nonce_used")
        self._nonces.add(nonce)
        signed = [(k, v) for k, v in params if k != "oauth_signature"]
        base = oauth_signature.signature_base_string(
            request.method,
            oauth_signature.base_string_uri(str(request.url)),
            oauth_signature.normalize_parameters(signed),
        )
        try:
            self._public_key.verify(
                base64.b64decode(oauth.get("oauth_signature", "")),
                base.encode(),
                padding.PKCS1v15(),
                hashes.SHA1(),
            )
        except (InvalidSignature, ValueError):
            return self._problem("signature_invalid")
        return oauth

    async def _request_token(self, request: web.Request) -> web.Response:
        oauth = await self._verified(request)
        if isinstance(oauth, web.Response):
            return oauth
        callback = oauth.get("oauth_callback", "")
        if not callback:
            return self._problem("parameter_absent")
        token, secret = secrets.token_urlsafe(16), secrets.token_urlsafe(16)
        self._requests[token] = _RequestToken(secret, callback)
        return web.Response(
            text=urlencode(
                {"oauth_token": token, "oauth_token_secret": secret, "oauth_callback_confirmed": "true"}
            )
        )

    async def _authorize(self, request: web.Request) -> web.StreamResponse:
        token = request.query.get("oauth_token", "")
        pending = self._requests.get(token)
        if pending is None:
            return web.Response(status=400, text="The request token is unknown or expired.")
        pending.verifier = secrets.token_urlsafe(8) if self.approve else "denied"
        sep = "&" if "?" in pending.callback else "?"
        raise web.HTTPFound(
            pending.callback + sep + urlencode({"oauth_token": token, "oauth_verifier": pending.verifier})
        )

    async def _access_token(self, request: web.Request) -> web.Response:
        oauth = await self._verified(request)
        if isinstance(oauth, web.Response):
            return oauth
        pending = self._requests.pop(oauth.get("oauth_token", ""), None)
        if pending is None or pending.verifier in (None, "denied"):
            return self._problem("token_rejected")
        if oauth.get("oauth_verifier") != pending.verifier:
            return self._problem("parameter_rejected")
        token, secret = secrets.token_urlsafe(16), secrets.token_urlsafe(16)
        self._access[token] = self.user
        return web.Response(
            text=urlencode(
                {"oauth_token": token, "oauth_token_secret": secret, "oauth_expires_in": "157680000"}
            )
        )


@dataclass
class FakeVerify:
    """Plays Jira's GET /myself: asks the fake servers whose token it is."""

    auth: FakeAtlassianAuth | None = None
    jira_oauth1: FakeJiraOAuth1 | None = None
    pats: dict[str, JiraIdentity] = field(default_factory=dict)
    unreachable: bool = False
    calls: list[tuple[str, Credentials]] = field(default_factory=list)

    async def __call__(self, base_url: str, credentials: Credentials) -> JiraIdentity:
        self.calls.append((base_url, credentials))
        if self.unreachable:
            raise aiohttp.ClientConnectionError("connection refused")
        if isinstance(credentials, OAuth2Token) and self.auth is not None:
            account = self.auth.identity_for(credentials.access_token)
            if account is not None:
                return JiraIdentity(
                    account_id=account.account_id, display_name=account.display_name, email=account.email
                )
        if isinstance(credentials, PersonalAccessToken) and credentials.token in self.pats:
            return self.pats[credentials.token]
        if isinstance(credentials, OAuth1Token) and self.jira_oauth1 is not None:
            user = self.jira_oauth1.identity_for(credentials.token)
            if user is not None:
                return JiraIdentity(name=user.name, display_name=user.display_name, email=user.email)
        raise TokenRejected("401 from /myself")


__all__ = [
    "AtlassianAccount",
    "FakeAtlassianAuth",
    "FakeJiraOAuth1",
    "FakeVerify",
    "JiraServerUser",
    "Site",
    "new_rsa_key_pair",
]
