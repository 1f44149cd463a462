"""The agent workspace: inbox views, ticket pages, replies and notes."""
