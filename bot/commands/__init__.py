"""The `/jira` slash commands: the command registry and the pure resolvers of their arguments."""
