"""Personal direct messages about Jira events: who is told what (pure rules) and the delivery."""
