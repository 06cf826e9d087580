"""Partial matching of what users type to Jira transitions and Jira users.

Pure functions: the caller fetches the transitions of an issue or the assignable users, and
gets back one choice to apply, several to offer as buttons, or none with a sentence to show.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from itertools import permutations
from typing import Generic, Literal, TypeVar

from bot.jira.rest_models import JiraUserCandidate, Transition, compact_name

T = TypeVar("T")

ResolveKind = Literal["one", "several", "none"]

EXACT, PREFIX, SUBSTRING = 0, 1, 2
MAX_USER_CANDIDATES = 5
# A display name with more words than this is matched word by word without trying every order.
_MAX_PERMUTED_WORDS = 6


@dataclass(frozen=True)
class ResolveResult(Generic[T]):
    """`one`: apply `chosen`; `several`: offer `candidates` (there were `total` matches);
    `none`: show `message`. `message` is also a ready sentence to head a `several` choice."""

    kind: ResolveKind
    candidates: tuple[T, ...] = ()
    message: str = ""
    total: int = 0

    @property
    def chosen(self) -> T | None:
        return self.candidates[0] if self.kind == "one" else None


_compact = compact_name


def _tier(query: str, texts: Iterable[str]) -> int | None:
    best: int | None = None
    for text in texts:
        value = _compact(text)
        if not value:
            continue
        if value == query:
            return EXACT
        if value.startswith(query):
            best = PREFIX
        elif query in value and best is None:
            best = SUBSTRING
    return best


def _listing(items: Iterable[str]) -> str:
    return ", ".join(items)


# -- transitions ------------------------------------------------------------------------------


def match_transitions(
    query: str, transitions: Sequence[Transition], *, issue_key: str = ""
) -> ResolveResult[Transition]:
    """Match `query` against each transition's target status and name. Exact beats prefix
    beats substring; only the best tier found counts. An empty query applies nothing and
    offers every transition."""
    of_issue = f" of {issue_key}" if issue_key else ""
    states = list(dict.fromkeys(t.to_status for t in transitions if t.to_status))
    if not transitions:
        return ResolveResult("none", message=f"No transitions{of_issue} are available to you.")
    q = _compact(query)
    if not q:
        return ResolveResult(
            "several",
            tuple(transitions),
            f"Which state should {issue_key or 'the issue'} move to? Valid states: {_listing(states)}.",
            len(transitions),
        )
    tiers: dict[int, list[Transition]] = {}
    for t in transitions:
        tier = _tier(q, (t.to_status, t.name))
        if tier is not None:
            tiers.setdefault(tier, []).append(t)
    if not tiers:
        return ResolveResult(
            "none",
            message=f'No transition{of_issue} matches "{query}". Valid states: {_listing(states)}.',
        )
    best = tiers[min(tiers)]
    if len(best) == 1:
        return ResolveResult("one", (best[0],), "", 1)
    return ResolveResult(
        "several",
        tuple(best),
        f'Please be more specific: "{query}" matches several transitions{of_issue}: '
        f"{_listing(t.label for t in best)}.",
        len(best),
    )


# -- users ------------------------------------------------------------------------------------


def _words(text: str) -> list[str]:
    return text.casefold().split()


def _prefixes_distinct_words(query_words: Sequence[str], name_words: Sequence[str]) -> bool:
    """Each query word starts a different word of the name, in any order ("smi jo" finds
    "John Smith")."""
    if len(query_words) > len(name_words):
        return False
    if len(name_words) > _MAX_PERMUTED_WORDS:
        remaining = list(name_words)
        for q in query_words:
            hit = next((w for w in remaining if w.startswith(q)), None)
            if hit is None:
                return False
            remaining.remove(hit)
        return True
    return any(
        all(w.startswith(q) for q, w in zip(query_words, chosen, strict=True))
        for chosen in permutations(name_words, len(query_words))
    )


def _user_tier(query_words: Sequence[str], user: JiraUserCandidate) -> int | None:
    spaced = " ".join(query_words)
    display = " ".join(_words(user.display_name))
    if spaced in {display, user.name.casefold(), user.email.casefold()} - {""}:
        return EXACT
    if _prefixes_distinct_words(query_words, _words(user.display_name)):
        return PREFIX
    compact = "".join(query_words)
    haystacks = ("".join(display.split()), user.name.casefold(), user.email.casefold())
    if any(compact in h for h in haystacks if h) or all(q in display for q in query_words):
        return SUBSTRING
    return None


def _user_sort_key(user: JiraUserCandidate) -> tuple[str, str, str]:
    return (user.display_name.casefold(), user.email.casefold(), user.identifier)


def rank_users(
    query: str,
    users: Sequence[JiraUserCandidate],
    *,
    issue_key: str = "",
    limit: int = MAX_USER_CANDIDATES,
) -> ResolveResult[JiraUserCandidate]:
    """Rank Jira's assignable users for `query`: exact username, email or display name >
    every query word starting a first or last name > substring. Only the best tier found
    counts; several matches are sorted by name and capped at `limit`."""
    query_words = _words(query)
    if not query_words:
        return ResolveResult(
            "none", message="Please name the assignee: a Jira user, `me` or `@mattermost-user`."
        )
    unique = list({(u.identifier or u.email or u.display_name): u for u in users}.values())
    tiers: dict[int, list[JiraUserCandidate]] = {}
    for user in unique:
        tier = _user_tier(query_words, user)
        if tier is not None:
            tiers.setdefault(tier, []).append(user)
    if not tiers:
        for_issue = f" to {issue_key}" if issue_key else ""
        message = f'No Jira user who can be assigned{for_issue} matches "{query}".'
        if unique:
            shown = sorted(unique, key=_user_sort_key)[:limit]
            message += f" Jira suggested: {_listing(u.label for u in shown)}."
        return ResolveResult("none", message=message + " Try a full name, username or email address.")
    best = sorted(tiers[min(tiers)], key=_user_sort_key)
    if len(best) == 1:
        return ResolveResult("one", (best[0],), "", 1)
    if len(best) > limit:
        message = (
            f'"{query}" matches {len(best)} users; here are the first {limit}. '
            "Pick one, or type more of the name."
        )
    else:
        message = f'"{query}" matches {len(best)} users. Pick one:'
    return ResolveResult("several", tuple(best[:limit]), message, len(best))


# -- the assign argument ----------------------------------------------------------------------

AssigneeKind = Literal["me", "mattermost_user", "search", "missing"]


@dataclass(frozen=True, slots=True)
class AssigneeQuery:
    """`me`: the requesting user; `mattermost_user`: the Jira account connected to the
    Mattermost user named `text`; `search`: `text` to search Jira for; `missing`: nothing given."""

    kind: AssigneeKind
    text: str = ""


def parse_assignee_argument(words: Sequence[str]) -> AssigneeQuery:
    parts = [w.strip() for w in words if w.strip()]
    text = " ".join(parts)
    if not text:
        return AssigneeQuery("missing")
    if len(parts) == 1 and text.casefold() == "me":
        return AssigneeQuery("me")
    if len(parts) == 1 and text.startswith("@") and len(text) > 1:
        # Mattermost usernames are lowercase; the caller maps the user to a connected account.
        return AssigneeQuery("mattermost_user", text[1:].lower())
    return AssigneeQuery("search", text)
