"""Connected Jira accounts: encrypted storage, OAuth flows and the service the commands use."""
