"""An in-process Jira speaking the parts of REST API v2/v3 the bot uses, over real HTTP.

Two flavours, as the bot meets them:
- "cloud": users are identified by `accountId` (no name/key); basic auth is email + API token;
  OAuth 2.0 bearer tokens are accepted only under the API gateway prefix
  `/ex/jira/{cloud_id}/rest/...` (the same app plays api.atlassian.com for `cloud_id`);
  search is `/rest/api/3/search/jql` (also `/rest/api/2/search/jql`) paged by `nextPageToken`,
  and the removed `/rest/api/2/search` and `/rest/api/3/search` answer 410 Gone.
  Assignable-user search takes `query`; `username` is refused (GDPR strict mode).
- "server" (Data Center): users have `name` and `key`; personal access tokens as bearer,
  basic auth with username + password, OAuth 1.0a RSA-SHA1 (application links, signatures
  verified with the consumer's public key); search is `/rest/api/2/search` paged by `startAt`.
  Assignable-user search takes `username`. `version="8.x"` has only the old
  `/issue/createmeta?projectKeys=…&expand=projects.issuetypes.fields`; 9+ (the default) and
  Cloud only the per-project `/issue/createmeta/{project}/issuetypes[/{id}]`, paged under
  `issueTypes`/`fields` on Cloud and `values` + `isLast` on Server.

Behaviour copied from Jira where tests depend on it:
- JSON answers carry `Content-Type: application/json` exactly; errors have Jira's shape
  `{"errorMessages": [...], "errors": {...}}`.
- A user without browse permission on a project, or outside an issue's security level, gets
  404 "Issue does not exist or you do not have permission to see it." as if it did not exist.
  Users outside a project's `editors` may browse but get 403 on changes, and no transitions.
- Assignable users are the active users who may edit the project.
- GET /rest/api/2/issue/{id or key}?fields=… answers as Jira does (`*navigable`, names, `-name`
  to leave one out), the security level object included; GET /rest/api/2/user takes
  `accountId` on Cloud (`username` refused, GDPR strict mode) and `username` on Server, 404
  for no such user.
- Unknown credentials get 401; transitions, assignment and comments answer 204/201 like Jira.
- Attachments (POST /issue/{key}/attachments) need `X-Atlassian-Token: no-check` (else 403 "XSRF
  check failed") and the edit permission; each multipart `file` part is stored in `attachments`
  and answered as a list of attachment objects. `attachments_enabled = False` answers 403 as a
  site with attachments switched off does.
- Searches understand a JQL subset (`field =, !=, in, not in, is [not] EMPTY` joined by AND/OR,
  parentheses, `currentUser()`, ORDER BY ignored) and cap page sizes at `max_results_cap`; JQL
  beyond it is answered from `jql_answers` (canned issue keys per JQL) when asked as
  `(<JQL>) AND issue = <id or key>`, as subscriptions checked by Jira ask it.
- GET /rest/api/2/field lists a few system fields and `custom_fields`; GET /rest/api/2/priority
  lists `priorities` from the highest to the lowest.
- Injected failures (`fail_next`) answer before authentication, 429/503 with `Retry-After`
  when given; `latency` delays every answer; `hold(path)` keeps requests to a path waiting
  until the event it returns is set. `max_in_flight` records peak concurrency.

The fake is one class, `FakeJira` (server.py: state, setup, serving, authentication), assembled
from one part per API area: users.py (users, server info), metadata.py (projects, createmeta),
issues.py (read, transition, assign, comment, attach, create), search.py (search and the JQL
subset); views.py holds the representations and permission checks they share, common.py the
records, defaults and answer shapes.
"""

from tests.fakes.jira.common import (
    DEFAULT_ISSUE_TYPES,
    DEFAULT_WORKFLOW,
    ISSUE_NOT_FOUND,
    PRIORITIES,
    STATUS_CATEGORIES,
    FakeProject,
    FakeUser,
    Flavour,
    JiraRequest,
)
from tests.fakes.jira.server import FakeJira

__all__ = [
    "DEFAULT_ISSUE_TYPES",
    "DEFAULT_WORKFLOW",
    "ISSUE_NOT_FOUND",
    "PRIORITIES",
    "STATUS_CATEGORIES",
    "FakeJira",
    "FakeProject",
    "FakeUser",
    "Flavour",
    "JiraRequest",
]
