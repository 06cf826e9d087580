"""The change gate's rules, pure: its vocabulary (model), its settings section and its decision.

The gate service that applies them to Jira Service Management lives in bot.gate.
"""
