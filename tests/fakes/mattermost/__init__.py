"""An in-process Mattermost speaking the parts of REST API v4 the bot uses, over real HTTP.

Behaviour copied from the Mattermost server where tests depend on it:
- JSON answers carry `Content-Type: application/json` exactly, errors the AppError shape
  {"id", "message", "detailed_error", "request_id", "status_code"}.
- An unknown token gets 401 `api.context.session_expired.app_error` whose detailed_error holds
  "token=<the token>", as the server does: clients must not log error details.
- POST /posts answers 201. A post carrying a `pending_post_id` seen in the last 30 s is not created
  again: the earlier post comes back (server's seenPendingPostIdsCache). While the first request is
  still saving, a repeat gets 500 `api.post.deduplicate_create_post.pending`; a failed create forgets
  the pending id so the client may retry.
- Posting to a channel the user cannot post in (unknown, or private without membership) is 403 for
  ordinary users; a system admin passes the permission check and gets 400 for an unknown channel.
  Public channels are open to every user (team membership is not modelled). Archived: 400.
- A missing post on update/patch is 403 (the server reports a permission error), on GET 404.
- POST /posts/ephemeral needs the system_admin role (create_post_ephemeral).
- A rate-limited request gets 429 with body "limit exceeded" as text/plain and the headers of the
  server's limiter: X-Ratelimit-Limit, X-Ratelimit-Remaining, X-Ratelimit-Reset and Retry-After,
  in whole seconds.
- POST /actions/dialogs/open needs a trigger id the fake issued (`issue_trigger_id`) within the last
  `trigger_ttl` seconds (the server's OutgoingIntegrationRequestsTimeout, 30 s). Unlike recent
  servers, which only log an invalid dialog, the fake refuses it with 400, so tests catch it.
- GET /channels/{id}/members/{user} and /teams/{id}/members/{user} answer the membership with its
  `roles` ("channel_user channel_admin", "team_user team_admin"), 404 for a non-member.
- POST /hooks/commands/{id} is a slash command's response_url (no authentication: the id is the
  secret): at most 5 uses, a JSON CommandResponse when the Content-Type is application/json and
  plain text otherwise. In-channel answers become posts by the command's user, ephemeral ones are
  recorded in `ephemeral_posts`.
- `slash_form`, `action_request` and `dialog_submission` build requests as Mattermost sends them
  to an integration.
- Files: `add_post(..., files=...)` stores uploaded files with the post (`file_ids`, and FileInfos
  under `metadata.files`); GET /posts/{id}/files/info lists them, GET /files/{id}/info describes
  one and GET /files/{id} serves its bytes with its MIME type, for users who may read the channel.
- GET /api/v4/websocket upgrades to the websocket API. The connection is authenticated by an
  `Authorization: Bearer` header on the upgrade, or by an `authentication_challenge` action
  (answered {"status": "OK", "seq_reply": n}); a challenge with an unknown token closes the
  connection, and one on a connection already authenticated is ignored, as the server does.
  Once authenticated the connection gets `hello`, then a `posted` event (`data.post` a JSON
  string, `data.channel_type`, `broadcast.channel_id`) for every post in a channel its user is a
  member of, each event with the connection's next `seq`. `drop_websockets` cuts every connection.
- GET /api/v4/channels/{id}/posts?since=ms answers the posts updated after `since` (deleted ones
  included, as the server does), as a PostList {"order", "posts", ...}, at most 1000.
- GET /api/v4/users/{id}/channels lists the user's channels in every team, direct ones included.
- POST /api/v4/reactions adds a reaction of the session's user (recorded in `reactions`).

The fake is one class, `FakeMattermost` (server.py), assembled from one part per API area:
users.py, channels.py (teams, channels, memberships), posts.py (posts, files, reactions),
interactions.py (slash commands, actions, dialogs, response URLs), websocket.py; common.py holds
the error shape and helpers they share.
"""

from tests.fakes.mattermost.interactions import (
    COMMAND_WEBHOOK_MAX_USES,
    COMMAND_WEBHOOK_TTL,
    TRIGGER_ID_TTL,
    SlashForm,
)
from tests.fakes.mattermost.posts import MAX_MESSAGE_RUNES, MAX_PROPS_CHARS
from tests.fakes.mattermost.server import PENDING_POST_IDS_CACHE_TTL, FakeMattermost, RecordedRequest

__all__ = [
    "COMMAND_WEBHOOK_MAX_USES",
    "COMMAND_WEBHOOK_TTL",
    "MAX_MESSAGE_RUNES",
    "MAX_PROPS_CHARS",
    "PENDING_POST_IDS_CACHE_TTL",
    "TRIGGER_ID_TTL",
    "FakeMattermost",
    "RecordedRequest",
    "SlashForm",
]
