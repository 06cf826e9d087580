"""The deployment change gate on Jira Service Management change requests."""
