"""Jira Cloud OAuth 2.0 (3LO) with PKCE, against Atlassian's authorization server.

Endpoints (developer.atlassian.com, "OAuth 2.0 (3LO) apps" and "Implementing the refresh token
flow"): the user consents at {auth}/authorize; the app exchanges the code at {auth}/oauth/token;
refresh tokens rotate (each refresh returns a new one and disables the one used; a disabled or
expired one answers 403 `invalid_grant`); {api}/oauth/token/accessible-resources lists the sites
(cloud ids) a token may reach, and API calls go through {api}/ex/jira/{cloud id}.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlencode, urlsplit

import aiohttp

from bot.accounts.http import LazySession
from bot.config import Settings
from bot.instances import Instance

SCOPES = ("read:jira-work", "write:jira-work", "read:jira-user", "offline_access")
AUDIENCE = "api.atlassian.com"
CALLBACK_PATH = "/oauth/jira/callback"


class OAuthError(Exception):
    """The authorization server refused or failed; `error` is its OAuth error code if it gave one."""

    def __init__(self, message: str, *, error: str = "", status: int = 0) -> None:
        super().__init__(message)
        self.error = error
        self.status = status


class InvalidGrantError(OAuthError):
    """The code or refresh token is unknown, used, expired or revoked: the user must connect again."""


@dataclass(frozen=True, slots=True)
class TokenGrant:
    access_token: str
    refresh_token: str | None
    expires_in: int
    scope: str = ""

    def __repr__(self) -> str:
        return f"TokenGrant(expires_in={self.expires_in}, scope={self.scope!r}, ***)"


@dataclass(frozen=True, slots=True)
class AccessibleResource:
    id: str  # the cloud id
    url: str
    name: str = ""
    scopes: tuple[str, ...] = ()


def new_pkce_pair() -> tuple[str, str]:
    """(verifier, S256 challenge) as RFC 7636 defines them."""
    verifier = secrets.token_urlsafe(64)  # 86 characters, within the 43..128 allowed
    return verifier, pkce_challenge(verifier)


def pkce_challenge(verifier: str) -> str:
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).decode("ascii").rstrip("=")


def same_site(a: str, b: str) -> bool:
    """Whether two site URLs name the same Jira (scheme and host case-insensitive, no trailing /)."""
    pa, pb = urlsplit(a.strip().rstrip("/")), urlsplit(b.strip().rstrip("/"))
    return (pa.scheme.lower(), pa.netloc.lower(), pa.path) == (pb.scheme.lower(), pb.netloc.lower(), pb.path)


class CloudOAuth(LazySession):
    """The client side of 3LO. One instance serves every configured Cloud instance (each has its
    own client id and secret in `Instance.oauth`)."""

    def __init__(
        self,
        *,
        public_url: str,
        auth_url: str = "https://auth.atlassian.com",
        api_url: str = "https://api.atlassian.com",
        timeout_seconds: float = 10.0,
        session: aiohttp.ClientSession | None = None,
    ) -> None:
        self.redirect_uri = public_url.rstrip("/") + CALLBACK_PATH
        self.auth_url = auth_url.rstrip("/")
        self.api_url = api_url.rstrip("/")
        super().__init__(timeout_seconds, session)

    @classmethod
    def from_settings(cls, settings: Settings, session: aiohttp.ClientSession | None = None) -> CloudOAuth:
        return cls(
            public_url=settings.server.public_url,
            auth_url=settings.jira.atlassian_auth_url,
            api_url=settings.jira.atlassian_api_url,
            timeout_seconds=settings.jira.request_timeout_seconds,
            session=session,
        )

    @staticmethod
    def _client(instance: Instance) -> tuple[str, str]:
        if instance.oauth is None:
            raise OAuthError(f"{instance.url} has no OAuth app configured (jira.instances[].oauth)")
        return instance.oauth.client_id, instance.oauth.client_secret.get_secret_value()

    def authorization_url(self, instance: Instance, state: str, code_challenge: str) -> str:
        client_id, _ = self._client(instance)
        query = {
            "audience": AUDIENCE,
            "client_id": client_id,
            "scope": " ".join(SCOPES),
            "redirect_uri": self.redirect_uri,
            "state": state,
            "response_type": "code",
            "prompt": "consent",
            "code_challenge": code_challenge,
            "code_challenge_method": "S256",
        }
        # quote_via keeps spaces as %20 in the scope, as Atlassian's examples write it.
        return f"{self.auth_url}/authorize?{urlencode(query, quote_via=quote)}"

    async def exchange_code(self, instance: Instance, code: str, verifier: str) -> TokenGrant:
        client_id, client_secret = self._client(instance)
        return await self._token(
            {
                "grant_type": "authorization_code",
                "client_id": client_id,
                "client_secret": client_secret,
                "code": code,
                "redirect_uri": self.redirect_uri,
                "code_verifier": verifier,
            }
        )

    async def refresh(self, instance: Instance, refresh_token: str) -> TokenGrant:
        """A new access token AND a new refresh token: the one given is disabled from now on."""
        client_id, client_secret = self._client(instance)
        return await self._token(
            {
                "grant_type": "refresh_token",
                "client_id": client_id,
                "client_secret": client_secret,
                "refresh_token": refresh_token,
            }
        )

    async def _token(self, body: dict[str, str]) -> TokenGrant:
        try:
            async with self._http().post(
                f"{self.auth_url}/oauth/token",
                json=body,
                headers={"Accept": "application/json"},
                timeout=self._timeout,
            ) as resp:
                data = await _json_or_none(resp)
                status = resp.status
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise OAuthError(
                f"Atlassian's authorization server did not answer: {type(exc).__name__}"
            ) from None
        if status != 200 or not isinstance(data, dict) or not data.get("access_token"):
            error = str(data.get("error", "")) if isinstance(data, dict) else ""
            description = str(data.get("error_description", "")) if isinstance(data, dict) else ""
            message = f"token request failed ({status} {error or 'no error code'})"
            if description:
                message += f": {description}"
            if error == "invalid_grant":
                raise InvalidGrantError(message, error=error, status=status)
            raise OAuthError(message, error=error, status=status)
        return TokenGrant(
            access_token=str(data["access_token"]),
            refresh_token=str(data["refresh_token"]) if data.get("refresh_token") else None,
            expires_in=int(data.get("expires_in") or 3600),
            scope=str(data.get("scope", "")),
        )

    async def accessible_resources(self, access_token: str) -> list[AccessibleResource]:
        try:
            async with self._http().get(
                f"{self.api_url}/oauth/token/accessible-resources",
                headers={"Authorization": f"Bearer {access_token}", "Accept": "application/json"},
                timeout=self._timeout,
            ) as resp:
                data = await _json_or_none(resp)
                status = resp.status
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise OAuthError(f"Atlassian's API gateway did not answer: {type(exc).__name__}") from None
        if status != 200 or not isinstance(data, list):
            raise OAuthError(f"accessible resources request failed ({status})", status=status)
        return [
            AccessibleResource(
                id=str(item["id"]),
                url=str(item["url"]),
                name=str(item.get("name", "")),
                scopes=tuple(str(s) for s in item.get("scopes", ())),
            )
            for item in data
            if isinstance(item, dict) and item.get("id") and item.get("url")
        ]

    async def cloud_id_for(self, access_token: str, site_url: str) -> str | None:
        """The cloud id of `site_url` among the sites the token reaches (None: not among them)."""
        for resource in await self.accessible_resources(access_token):
            if same_site(resource.url, site_url):
                return resource.id
        return None


async def _json_or_none(resp: aiohttp.ClientResponse) -> Any:
    try:
        return await resp.json(content_type=None)
    except ValueError:
        return None
