"""How requests reach one Jira site: the `jira` library object built for a person's
credentials (basic, bearer, OAuth 1.0a signed with RSA-SHA1), the REST call through its
session, and the mapping of every library or `requests` failure to a `JiraError`.

All of it is synchronous and runs in the gateway's worker threads (bot/jira/client.py owns the
pool, the per-credentials cache and the retry on a short Retry-After).
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from typing import Any, ClassVar

import requests
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from jira import JIRA
from jira.exceptions import JIRAError
from jira.utils import json_loads
from oauthlib.oauth1 import SIGNATURE_RSA
from oauthlib.oauth1 import Client as OAuth1Client
from pydantic import ValidationError
from requests.adapters import HTTPAdapter
from requests_oauthlib import OAuth1

from bot.jira.credentials import ApiToken, Credentials, OAuth1Token, OAuth2Token, PersonalAccessToken
from bot.jira.errors import JiraError, error_for_status, jira_error_detail, parse_retry_after
from bot.security.http_guard import PublicOnlyAdapter

__all__ = ["Connection", "RsaSha1Client", "build_jira", "oauth1_auth", "to_jira_error"]


# -- OAuth 1.0a signing --------------------------------------------------------------------------


class RsaSha1Client(OAuth1Client):
    """OAuth 1.0a signer for Jira application links: RSA-SHA1 done with `cryptography`, so
    PyJWT (which oauthlib would otherwise import for RSA) is not needed. Its own method table
    keeps oauthlib's class-wide one untouched."""

    SIGNATURE_METHODS: ClassVar[dict[str, Any]] = {**OAuth1Client.SIGNATURE_METHODS}


def _sign_rsa_sha1(base_string: str | bytes, client: OAuth1Client) -> str:
    if isinstance(base_string, bytes):
        base_string = base_string.decode("ascii")
    pem = client.rsa_key
    key = serialization.load_pem_private_key(pem.encode() if isinstance(pem, str) else pem, password=None)
    if not isinstance(key, rsa.RSAPrivateKey):
        raise ValueError("the OAuth 1.0a private key must be an RSA key")
    signature = key.sign(base_string.encode("ascii"), padding.PKCS1v15(), hashes.SHA1())
    return base64.b64encode(signature).decode("ascii")


RsaSha1Client.SIGNATURE_METHODS[SIGNATURE_RSA] = _sign_rsa_sha1


def oauth1_auth(credentials: OAuth1Token) -> OAuth1:
    """requests auth signing each request with the application link's RSA key."""
    return OAuth1(
        credentials.consumer_key,
        signature_method=SIGNATURE_RSA,
        rsa_key=credentials.private_key_pem,
        resource_owner_key=credentials.token,
        resource_owner_secret=credentials.token_secret,
        client_class=RsaSha1Client,
    )


# -- errors ------------------------------------------------------------------------------------


def _response_detail(response: requests.Response | None) -> str:
    if response is None:
        return ""
    try:
        return jira_error_detail(response.json())
    except ValueError:
        return ""


def to_jira_error(exc: Exception) -> JiraError | None:
    """The JiraError for what the library and requests raise, None for anything else (a bug
    to surface as it is). Runs in the worker thread, so the original, with its URL and
    response, stays there."""
    if isinstance(exc, JiraError):
        return exc
    if isinstance(exc, JIRAError):
        response: requests.Response | None = getattr(exc, "response", None)
        status = exc.status_code or (response.status_code if response is not None else None)
        if not status:
            return JiraError("unavailable", detail="Jira sent no answer")
        retry_after = parse_retry_after(response.headers.get("Retry-After")) if response is not None else None
        return error_for_status(status, detail=_response_detail(response), retry_after=retry_after)
    if isinstance(exc, requests.Timeout):
        return JiraError("timeout")
    if isinstance(exc, requests.ConnectionError):
        return JiraError("unavailable", detail="cannot connect to Jira")
    if isinstance(exc, ValidationError | ValueError | requests.RequestException):
        # A 2xx answer that is not the JSON Jira documents (a proxy's HTML page, a truncated body).
        return JiraError("unavailable", detail="Jira sent an answer the bot cannot read")
    return None


# -- one connection ---------------------------------------------------------------------------


@dataclass(eq=False)
class Connection:
    """A JIRA object for one site and set of credentials, plus what was learned about it."""

    jira: JIRA
    site_url: str
    is_cloud: bool
    # Set once the per-project createmeta endpoints answered 404 (Jira before 9).
    legacy_createmeta: bool = False

    def url(self, path: str, *, api: str = "2") -> str:
        return f"{self.jira.server_url}/rest/api/{api}/{path}"

    def request(
        self,
        method: str,
        path: str,
        *,
        params: dict[str, Any] | None = None,
        body: Any = None,
        api: str = "2",
    ) -> Any:
        """One REST call through the library's session (auth, timeout, error parsing)."""
        data = json.dumps(body) if body is not None else None
        try:
            response = self.jira._session.request(method, self.url(path, api=api), params=params, data=data)
            return json_loads(response)
        except Exception as exc:
            # Mapped here already so that callers can branch on the kind (createmeta fallback).
            mapped = to_jira_error(exc)
            if mapped is None:
                raise
            raise mapped from None


def build_jira(
    rest_base: str, credentials: Credentials, *, timeout: float, pool_size: int, public_only: bool
) -> JIRA:
    """A JIRA object acting with `credentials` at `rest_base`; sends no request. `public_only`:
    its sockets may only reach public addresses (see bot/security/http_guard)."""
    auth: dict[str, Any] = {}
    if isinstance(credentials, ApiToken):
        auth["basic_auth"] = (credentials.email, credentials.token)
    elif isinstance(credentials, PersonalAccessToken):
        auth["token_auth"] = credentials.token  # sent as "Authorization: Bearer"
    elif isinstance(credentials, OAuth2Token):
        auth["token_auth"] = credentials.access_token  # a bearer token as well
    jira = JIRA(
        server=rest_base,
        get_server_info=False,  # no request at construction
        max_retries=0,  # retries happen in JiraGateway, not asleep in a worker thread
        timeout=timeout,
        logging=False,  # the library would log response headers and bodies
        **auth,
    )
    if isinstance(credentials, OAuth1Token):
        # Set directly: the library's oauth= option probes /myself with several signature
        # methods at construction.
        jira._session.auth = oauth1_auth(credentials)
    # As many pooled connections as workers, so none is thrown away under load.
    adapter_class = PublicOnlyAdapter if public_only else HTTPAdapter
    adapter = adapter_class(pool_connections=4, pool_maxsize=pool_size)
    jira._session.mount("https://", adapter)
    jira._session.mount("http://", adapter)
    return jira
