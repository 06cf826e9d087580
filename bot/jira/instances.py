"""Which Jira instance a webhook belongs to. Pure functions."""

from __future__ import annotations

import base64
import binascii
from collections.abc import Sequence


def encode_instance_id(url: str) -> str:
    """The instance id used in webhook paths: the Jira base URL in padded base64url, as the
    Mattermost Jira plugin builds it, so that a moved webhook keeps working."""
    return base64.urlsafe_b64encode(url.rstrip("/").encode()).decode()


def decode_instance_id(encoded: str) -> str | None:
    """The Jira base URL of a path instance id, or None when it is not valid base64url.
    Padding is optional, since some tools strip it."""
    padded = encoded + "=" * (-len(encoded) % 4)
    try:
        raw = base64.urlsafe_b64decode(padded.encode("ascii"))
        url = raw.decode("utf-8")
    except (binascii.Error, ValueError, UnicodeError):
        return None
    if not url.startswith(("http://", "https://")):
        return None
    return url.rstrip("/")


def resolve_instance(
    path_instance: str | None, payload_base_url: str, configured: Sequence[str]
) -> str | None:
    """The instance a webhook is for: the one in its path, else the one its `self` URLs point
    at, else the only configured one. With no instance configured, the payload's own base URL
    is trusted (a single-instance setup needs no instance list). None: cannot tell, or the
    webhook names an instance that is not configured."""
    if path_instance:
        if not configured or path_instance in configured:
            return path_instance
        return None
    if payload_base_url:
        base = payload_base_url.rstrip("/")
        if not configured or base in configured:
            return base
        # Jira behind a proxy may report another base URL than the one configured.
    if len(configured) == 1:
        return configured[0]
    return None
