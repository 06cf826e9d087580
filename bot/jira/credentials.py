"""How the bot authenticates to Jira: always as a person (a connected user) or, for its own
reads, as a configured service account. Never the bot's account on a user's behalf."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class ApiToken:
    """Jira Cloud basic auth: account e-mail and API token (service accounts)."""

    email: str
    token: str

    def __repr__(self) -> str:
        return f"ApiToken(email={self.email!r}, token=***)"


@dataclass(frozen=True, slots=True)
class PersonalAccessToken:
    """Jira Server/Data Center personal access token, sent as a bearer token."""

    token: str

    def __repr__(self) -> str:
        return "PersonalAccessToken(***)"


@dataclass(frozen=True, slots=True)
class OAuth2Token:
    """Jira Cloud OAuth 2.0 (3LO): requests go through the Atlassian API gateway
    ({api_url}/ex/jira/{cloud_id}), not the site URL."""

    access_token: str
    cloud_id: str
    api_url: str = "https://api.atlassian.com"

    @property
    def base_url(self) -> str:
        return f"{self.api_url.rstrip('/')}/ex/jira/{self.cloud_id}"

    def __repr__(self) -> str:
        return f"OAuth2Token(cloud_id={self.cloud_id!r}, access_token=***)"


@dataclass(frozen=True, slots=True)
class OAuth1Token:
    """Jira Server/Data Center OAuth 1.0a through an application link (RSA-SHA1)."""

    consumer_key: str
    private_key_pem: str
    token: str
    token_secret: str

    def __repr__(self) -> str:
        return f"OAuth1Token(consumer_key={self.consumer_key!r}, token=***)"


Credentials = ApiToken | PersonalAccessToken | OAuth2Token | OAuth1Token
