"""Pure builders of what the issue commands show: the issue card, issue links, and the link to
Jira's own create screen.

Every text that comes from Jira is defused before it reaches Mattermost, so an issue whose
summary or description says "@channel" notifies nobody. Users' plain text reads as typed: escaped
where Mattermost renders Markdown, left as is where it does not (the card's title, which has a
link, and its fallback); see bot.render.plain.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from urllib.parse import urlencode

from bot.jira.rest_models import IssueCard
from bot.mattermost.payloads import Attachment, AttachmentField, PostAction
from bot.render.markup import neutralise_mentions, render_jira_text
from bot.render.plain import code_span, cut, link_text, markdown_text, plain_text

# Jira's blue: the card looks like the issue it stands for.
CARD_COLOR = "#0052CC"
DESCRIPTION_LIMIT = 500
SUMMARY_LIMIT = 250


def _no_mentions(_jira_user: str) -> str | None:
    # A card is shown to whoever views or shares it: a Jira mention in it must ping nobody.
    return None


def inline_text(text: str, limit: int = SUMMARY_LIMIT) -> str:
    """Jira text for one line of Markdown: one line, cut, no mentions, escaped to read as typed."""
    return markdown_text(text, limit)


def code_text(text: str, limit: int = 120) -> str:
    """Jira text as a code span (the plugin quotes names and states so), backticks included."""
    return code_span(cut(text, limit))


def issue_link(key: str, url: str, summary: str = "") -> str:
    """`[KEY](url)`, or `[KEY: summary](url)` with the summary defused and escaped."""
    label = link_text(f"{key}: {cut(summary, SUMMARY_LIMIT)}") if summary.strip() else link_text(key)
    return f"[{label}]({url})"


def user_mention(username: str) -> str:
    """`@username` as readable text that does not notify the user (a bot post naming someone
    for what they did should not ping them)."""
    return neutralise_mentions("@" + username) if username else "Someone"


def issue_card(
    card: IssueCard,
    *,
    actions: Sequence[PostAction] = (),
    pretext: str = "",
    description_limit: int = DESCRIPTION_LIMIT,
) -> Attachment:
    """The card of `card`: key and summary linked to the issue, its state and people, the start
    of its description (wiki markup converted), and `actions` (buttons and menus)."""
    # The title has a link, so Mattermost shows it as plain text: the summary is not escaped.
    title = f"{card.key}: {plain_text(card.summary, SUMMARY_LIMIT)}" if card.summary else card.key
    fields = [
        AttachmentField(title="Status", value=inline_text(card.status) or "—", short=True),
        AttachmentField(title="Type", value=inline_text(card.issue_type) or "—", short=True),
        AttachmentField(title="Priority", value=inline_text(card.priority) or "—", short=True),
        AttachmentField(
            title="Assignee",
            value=inline_text(card.assignee_name) if card.is_assigned else "Unassigned",
            short=True,
        ),
        AttachmentField(title="Reporter", value=inline_text(card.reporter_name) or "—", short=True),
    ]
    if card.security_level:
        fields.append(AttachmentField(title="Security", value=inline_text(card.security_level), short=True))
    description = render_jira_text(card.description, description_limit, _no_mentions)
    return Attachment(
        fallback=title,
        color=CARD_COLOR,
        pretext=pretext or None,
        title=title,
        title_link=card.browse_url,
        text=description or None,
        fields=fields,
        actions=list(actions) or None,
    )


def create_screen_url(
    site_url: str,
    project_id: str,
    issue_type_id: str,
    values: Mapping[str, str | Sequence[str]] | None = None,
) -> str:
    """Jira's own create screen with the project, the issue type and what was entered already
    filled in (`summary`, `description`, `priority` id, `labels`...); empty values are left out."""
    params: list[tuple[str, str]] = [("pid", project_id), ("issuetype", issue_type_id)]
    for name, value in (values or {}).items():
        if isinstance(value, str):
            if value.strip():
                params.append((name, value))
        else:
            params.extend((name, v) for v in value if v.strip())
    return f"{site_url.rstrip('/')}/secure/CreateIssueDetails!init.jspa?{urlencode(params)}"
