"""The domain: customers, agents, tickets and their timelines, attachments, mailboxes.

Imports SQLAlchemy, Jinja2 and the standard library only; never Flask, `mail` or `web`.
Services take the acting agent, the clock and settings as parameters; the caller commits.
"""
