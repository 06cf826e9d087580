"""Shared test helpers: the real Jira payloads in ../shared/fixtures.

A user's fresh clone may not have the shared folder: tests that need it skip with a reason.
Under CI (CI=true) the folder must be there, so its absence fails instead of skipping.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

SHARED_FIXTURES = Path(__file__).resolve().parent.parent.parent / "shared" / "fixtures"
WEBHOOKS_DIR = SHARED_FIXTURES / "jira-webhooks"
JIRA_REST_DIR = SHARED_FIXTURES / "jira-rest"
LOCAL_FIXTURES = Path(__file__).resolve().parent / "fixtures"


def require_shared_fixtures() -> Path:
    """Skip (or, under CI, fail) when ../shared/fixtures is absent."""
    if WEBHOOKS_DIR.is_dir():
        return SHARED_FIXTURES
    reason = f"shared Jira fixtures not found at {SHARED_FIXTURES}"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(reason + " (required under CI)")
    pytest.skip(reason)


def shared_webhook_names() -> list[str]:
    """File names of the shared webhook payloads; empty when the folder is absent."""
    if not WEBHOOKS_DIR.is_dir():
        return []
    return sorted(p.name for p in WEBHOOKS_DIR.glob("*.json"))


def load_shared_webhook(name: str) -> dict[str, Any]:
    require_shared_fixtures()
    with (WEBHOOKS_DIR / name).open(encoding="utf-8") as f:
        return json.load(f)


def load_shared_webhook_bytes(name: str) -> bytes:
    require_shared_fixtures()
    return (WEBHOOKS_DIR / name).read_bytes()


@pytest.fixture
def shared_fixtures() -> Path:
    return require_shared_fixtures()
