"""The names a subscription may use (events, field filter keys and values, inclusions, project
keys, subscription names, Jira instances), and the one check of each that every entry point
shares (the config file, the environment, the dialog, the one-line form, a command's
`--instance`), with the same sentence and did-you-mean. Pure: no I/O. The checks live in
bot.names (which the config can import, and which spells the event vocabulary of bot.jira.events
out; a test keeps the two equal) and are re-exported here, for the chat forms."""

from __future__ import annotations

from bot.names import CUSTOM_FIELD_EVENT as CUSTOM_FIELD_EVENT
from bot.names import CUSTOM_FIELD_EVENT_HINT as CUSTOM_FIELD_EVENT_HINT
from bot.names import CUSTOM_FIELD_KEY_HINT as CUSTOM_FIELD_KEY_HINT
from bot.names import EVENT_CHOICES as EVENT_CHOICES
from bot.names import FIELD_KEY_CHOICES as FIELD_KEY_CHOICES
from bot.names import INCLUSION_CHOICES as INCLUSION_CHOICES
from bot.names import SUBSCRIPTION_NAME_MAX_CHARS as SUBSCRIPTION_NAME_MAX_CHARS
from bot.names import KnownInstance as KnownInstance
from bot.names import bad_project_keys as bad_project_keys
from bot.names import bad_subscription_name as bad_subscription_name
from bot.names import canonical_events as canonical_events
from bot.names import canonical_field_key as canonical_field_key
from bot.names import canonical_inclusion as canonical_inclusion
from bot.names import canonical_subscription_name as canonical_subscription_name
from bot.names import field_filter_values_problem as field_filter_values_problem
from bot.names import find_known_instance as find_known_instance
from bot.names import suggest_event as suggest_event
from bot.names import unknown_events as unknown_events
from bot.names import unknown_field_keys as unknown_field_keys
from bot.names import unknown_inclusion as unknown_inclusion
from bot.names import unknown_instance as unknown_instance
