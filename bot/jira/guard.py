"""A Jira call through its site's circuit breaker, for both Jira clients (the gateway of
bot.jira.client and the JSM client of bot.gate.jsm): refused at once while the breaker is open;
an outage (bot.jira.errors.is_outage) opens it, any answer from Jira closes it."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TypeVar

from bot.breakers import Breaker
from bot.jira.errors import JiraError, is_outage

T = TypeVar("T")


async def through_breaker(
    breaker: Breaker, call: Callable[[], Awaitable[T]], *, stopping: Callable[[], bool] = lambda: False
) -> T:
    """Run `call` if the breaker lets it go. `stopping`: the client is closing, so a failure is
    its own doing and says nothing about the site."""
    if not breaker.acquire():
        wait = breaker.delay()
        raise JiraError(
            "rate_limited" if wait > 0 else "unavailable",
            retry_after=wait or None,
            detail="Jira is failing; the bot waits before asking again",
        )
    try:
        result = await call()
    except JiraError as e:
        if is_outage(e) and not stopping():
            breaker.failure(retry_after=e.retry_after)
        else:  # Jira answered (a refusal of this request): the site is up
            breaker.success()
        raise
    except BaseException:
        breaker.release()
        raise
    breaker.success()
    return result
