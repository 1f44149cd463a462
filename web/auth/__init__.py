"""Agent sign-in and sign-out."""

from web.auth.routes import bp

__all__ = ["bp"]
