"""The `change_gate:` settings: which deployments are gated, where their change requests live, and
the rules a decision applies.

Project and environment names are matched case-insensitively; the configured spelling is the one
used in summaries and posts. A project's connection (`instance`, `service_desk`, `request_type`)
defaults to the section's own.
"""

from __future__ import annotations

import hmac
import string
from collections.abc import Mapping
from datetime import tzinfo
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

from bot.gate_rules.model import GatePolicy, GateRequest, GateTarget
from bot.names import Role

DEFAULT_SUMMARY_TEMPLATE = 'Octopus: Deploy "{project}" version {version} to "{environment}"'
DEFAULT_DESCRIPTION_TEMPLATE = (
    'Deployment of "{project}" version {version} to "{environment}", raised by the change gate '
    "for the pipeline that requested it."
)
_TEMPLATE_FIELDS = frozenset({"project", "version", "environment"})
# Pipeline tokens are bearer secrets: short ones are guessable.
MIN_TOKEN_LENGTH = 16


class _Section(BaseModel):
    # Same conventions as bot.config's sections (unknown keys refused, immutable once loaded).
    model_config = ConfigDict(extra="forbid", frozen=True)


class PipelineToken(_Section):
    """A bearer token a pipeline presents, and the projects it may open gates for."""

    token: SecretStr
    projects: tuple[str, ...] = Field(min_length=1)  # "*" allows every project
    name: str = ""  # shown in logs and posts instead of the token

    @field_validator("token")
    @classmethod
    def _long_enough(cls, v: SecretStr) -> SecretStr:
        if len(v.get_secret_value().strip()) < MIN_TOKEN_LENGTH:
            raise ValueError(f"must be at least {MIN_TOKEN_LENGTH} characters")
        return v

    def allows(self, project: str) -> bool:
        wanted = project.strip().casefold()
        return any(p == "*" or p.strip().casefold() == wanted for p in self.projects)


class GateProjectSettings(_Section):
    change_controlled: bool = False
    # Per-project connection; each absent one falls back to the section's value.
    instance: str | None = None
    service_desk: str | None = None
    request_type: str | None = None


class GateEnvironmentSettings(_Section):
    change_controlled: bool = False


class ChangeGateSettings(_Section):
    # Alias or URL of a configured Jira instance whose service account acts; None: the only one.
    instance: str | None = None
    service_desk: str = Field(min_length=1)  # project key of the JSM service desk
    request_type: str = Field("Request a change", min_length=1)
    channel: str = Field(min_length=1)  # team/channel, or a channel id
    poll_interval_seconds: int = Field(30, ge=5, le=3600)
    max_wait_hours: float = Field(24.0, gt=0, le=24 * 30)
    proceed_statuses: tuple[str, ...] = Field(("Implementing",), min_length=1)
    wait_statuses: tuple[str, ...] = ("Preview", "Planning", "Authorize", "Awaiting Implementation")
    # A linked CR in one of these is done with: the next deployment looks up (or creates) another;
    # a supplied CR in one of these fails with cr_closed.
    closed_statuses: tuple[str, ...] = ("Closed", "Completed", "Canceled", "Cancelled", "Declined", "Done")
    summary_template: str = DEFAULT_SUMMARY_TEMPLATE
    description_template: str = DEFAULT_DESCRIPTION_TEMPLATE
    # Field names or ids (customfield_10042) of the CR's change window.
    planned_start_field: str = "Planned start"
    planned_end_field: str = "Planned end"
    # IANA zone in which date-only planned dates are read.
    date_only_timezone: str = "UTC"
    comment_on_cr: bool = True
    # Comments on the CR are internal (seen by agents, not by the requester) unless this is on.
    comments_public: bool = False
    pipeline_tokens: tuple[PipelineToken, ...] = ()
    projects: dict[str, GateProjectSettings] = {}
    environments: dict[str, GateEnvironmentSettings] = {}
    # Who may cancel a gate with /jira change cancel.
    cancel_role: Role = "channel_admin"

    @field_validator("date_only_timezone")
    @classmethod
    def _known_zone(cls, v: str) -> str:
        try:
            ZoneInfo(v)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {v!r} (use an IANA name such as Europe/Berlin)") from None
        return v

    @field_validator("summary_template", "description_template")
    @classmethod
    def _template_fields(cls, v: str) -> str:
        try:
            used = {name for _, name, _, _ in string.Formatter().parse(v) if name is not None}
        except ValueError as exc:
            raise ValueError(f"not a valid template: {exc}") from None
        unknown = used - _TEMPLATE_FIELDS
        if unknown:
            raise ValueError(
                f"unknown placeholder(s) {sorted(unknown)}; use {{project}}, {{version}}, {{environment}}"
            )
        return v

    @model_validator(mode="after")
    def _consistent(self) -> ChangeGateSettings:
        for kind, names in (("project", self.projects), ("environment", self.environments)):
            seen: set[str] = set()
            for name in names:
                folded = name.strip().casefold()
                if folded in seen:
                    raise ValueError(f"{kind} {name!r} is configured twice (names ignore case)")
                seen.add(folded)
        secrets = [t.token.get_secret_value() for t in self.pipeline_tokens]
        if len(set(secrets)) != len(secrets):
            raise ValueError("pipeline_tokens: the same token is listed twice")
        return self

    # -------------------------------------------------------------------------------- lookups

    @property
    def time_zone(self) -> tzinfo:
        return ZoneInfo(self.date_only_timezone)

    def policy(self) -> GatePolicy:
        return GatePolicy(
            proceed_statuses=self.proceed_statuses,
            wait_statuses=self.wait_statuses,
            max_wait_seconds=round(self.max_wait_hours * 3600),
            poll_interval_seconds=self.poll_interval_seconds,
            closed_statuses=self.closed_statuses,
        )

    def project_name(self, project: str) -> str:
        """The configured spelling of `project`, or the name as given when it is not configured."""
        return _configured_name(self.projects, project)

    def environment_name(self, environment: str) -> str:
        return _configured_name(self.environments, environment)

    def is_change_controlled(self, project: str, environment: str) -> bool:
        """Gated only when both the project and the environment are change controlled."""
        p = self.projects.get(self.project_name(project))
        e = self.environments.get(self.environment_name(environment))
        return bool(p and p.change_controlled and e and e.change_controlled)

    def target_for(self, project: str) -> GateTarget:
        """The connection and service desk the project's CRs live in."""
        p = self.projects.get(self.project_name(project)) or GateProjectSettings()
        return GateTarget(
            instance=p.instance or self.instance,
            service_desk=p.service_desk or self.service_desk,
            request_type=p.request_type or self.request_type,
        )

    def referenced_instances(self) -> set[str | None]:
        """Every instance name used (None: the default one), to check against jira.instances."""
        return {self.instance} | {p.instance for p in self.projects.values() if p.instance}

    def canonical(self, request: GateRequest) -> GateRequest:
        """`request` with configured spellings and surrounding spaces removed."""
        supplied = (request.change_request or "").strip() or None
        return GateRequest(
            project=self.project_name(request.project.strip()),
            environment=self.environment_name(request.environment.strip()),
            version=request.version.strip(),
            change_request=supplied.upper() if supplied else None,
        )

    def summary_for(self, request: GateRequest) -> str:
        return self.summary_template.format(
            project=request.project, version=request.version, environment=request.environment
        )

    def description_for(self, request: GateRequest) -> str:
        return self.description_template.format(
            project=request.project, version=request.version, environment=request.environment
        )

    def find_token(self, presented: str) -> PipelineToken | None:
        """The pipeline token equal to `presented` (compared in constant time), or None."""
        found: PipelineToken | None = None
        given = presented.strip().encode()
        for candidate in self.pipeline_tokens:
            # Every token is compared, so the time taken does not tell which one nearly matched.
            if hmac.compare_digest(candidate.token.get_secret_value().strip().encode(), given):
                found = candidate
        return found if given else None


def _configured_name(configured: Mapping[str, object], name: str) -> str:
    wanted = name.strip().casefold()
    for key in configured:
        if key.strip().casefold() == wanted:
            return key
    return name.strip()
