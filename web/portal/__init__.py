"""The customer portal: sign in by magic link, see your tickets, reply."""

from web.portal.routes import bp

__all__ = ["bp"]
