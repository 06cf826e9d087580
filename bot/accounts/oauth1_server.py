"""Jira Server/Data Center OAuth 1.0a (RSA-SHA1) through an application link.

The three legs Jira's "OAuth authentication" REST example describes: a signed POST for a request
token ({jira}/plugins/servlet/oauth/request-token, carrying our callback), the user's approval at
{jira}/plugins/servlet/oauth/authorize?oauth_token=..., and a signed POST trading the approved
token and the verifier Jira appended to our callback for an access token
({jira}/plugins/servlet/oauth/access-token). Jira answers form-encoded bodies; a refusal is a 401
whose body (or WWW-Authenticate header) names an `oauth_problem`.

Signing uses oauthlib's RSA-SHA1, which needs the PyJWT package at run time.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import parse_qsl, urlencode

import aiohttp
from oauthlib.oauth1 import SIGNATURE_RSA, Client

from bot.accounts.http import LazySession
from bot.config import Settings
from bot.instances import Instance
from bot.jira.transport import RsaSha1Client

REQUEST_TOKEN_PATH = "/plugins/servlet/oauth/request-token"
AUTHORIZE_PATH = "/plugins/servlet/oauth/authorize"
ACCESS_TOKEN_PATH = "/plugins/servlet/oauth/access-token"
CALLBACK_PATH = "/oauth1/jira/callback"


class OAuth1Error(Exception):
    """Jira refused a leg of the dance (`problem` is its oauth_problem when it named one), or
    could not be reached."""

    def __init__(self, message: str, *, problem: str = "", status: int = 0) -> None:
        super().__init__(message)
        self.problem = problem
        self.status = status


@dataclass(frozen=True, slots=True)
class TokenPair:
    """An OAuth 1.0a token and its secret (temporary or access)."""

    token: str
    secret: str

    def __repr__(self) -> str:
        return "TokenPair(***)"


class ServerOAuth1(LazySession):
    def __init__(
        self,
        *,
        public_url: str,
        timeout_seconds: float = 10.0,
        session: aiohttp.ClientSession | None = None,
    ) -> None:
        self.callback_uri = public_url.rstrip("/") + CALLBACK_PATH
        super().__init__(timeout_seconds, session)

    @classmethod
    def from_settings(cls, settings: Settings, session: aiohttp.ClientSession | None = None) -> ServerOAuth1:
        return cls(
            public_url=settings.server.public_url,
            timeout_seconds=settings.jira.request_timeout_seconds,
            session=session,
        )

    @staticmethod
    def _signer(instance: Instance, **kwargs: str) -> Client:
        if instance.oauth1 is None:
            raise OAuth1Error(f"{instance.url} has no application link configured (jira.instances[].oauth1)")
        return RsaSha1Client(
            instance.oauth1.consumer_key,
            signature_method=SIGNATURE_RSA,
            rsa_key=instance.oauth1.private_key.get_secret_value(),
            **kwargs,
        )

    async def _post(self, url: str, signer: Client) -> dict[str, str]:
        _, headers, _ = signer.sign(url, http_method="POST")
        try:
            async with self._http().post(url, headers=headers, timeout=self._timeout) as resp:
                text = await resp.text()
                status = resp.status
                www_auth = resp.headers.get("WWW-Authenticate", "")
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise OAuth1Error(f"Jira did not answer: {type(exc).__name__}") from None
        fields = dict(parse_qsl(text.strip(), keep_blank_values=True)) if "=" in text else {}
        if status != 200 or not fields.get("oauth_token") or "oauth_token_secret" not in fields:
            problem = fields.get("oauth_problem") or _problem_in_header(www_auth)
            raise OAuth1Error(
                f"Jira refused the OAuth request ({status}{', ' + problem if problem else ''})",
                problem=problem,
                status=status,
            )
        return fields

    async def request_token(self, instance: Instance) -> TokenPair:
        signer = self._signer(instance, callback_uri=self.callback_uri)
        fields = await self._post(instance.url + REQUEST_TOKEN_PATH, signer)
        return TokenPair(fields["oauth_token"], fields["oauth_token_secret"])

    @staticmethod
    def authorize_url(instance: Instance, request_token: str) -> str:
        return f"{instance.url}{AUTHORIZE_PATH}?{urlencode({'oauth_token': request_token})}"

    async def access_token(self, instance: Instance, request: TokenPair, verifier: str) -> TokenPair:
        signer = self._signer(
            instance,
            resource_owner_key=request.token,
            resource_owner_secret=request.secret,
            verifier=verifier,
        )
        fields = await self._post(instance.url + ACCESS_TOKEN_PATH, signer)
        return TokenPair(fields["oauth_token"], fields["oauth_token_secret"])


def _problem_in_header(header: str) -> str:
    # WWW-Authenticate: OAuth realm="...", oauth_problem="token_rejected"
    for part in header.split(","):
        name, _, value = part.strip().partition("=")
        if name.strip().endswith("oauth_problem"):
            return value.strip().strip('"')
    return ""
