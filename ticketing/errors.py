"""One exception hierarchy for the domain; the web layer maps it to 4xx pages and JSON."""


class HandoffError(Exception):
    """Base of every domain error."""


class NotFound(HandoffError):
    """The object does not exist, or is outside the caller's reach (never a 403 oracle)."""


class PermissionDenied(HandoffError):
    """The actor may not do this."""


class Invalid(HandoffError):
    """Input that breaks a rule; the message is safe to show to the user."""


class Conflict(HandoffError):
    """The state changed underneath the caller (e.g. someone replied meanwhile)."""


class RateLimited(HandoffError):
    """Too many attempts; try again later."""

    def __init__(self, message: str, retry_after_seconds: int = 60) -> None:
        super().__init__(message)
        self.retry_after_seconds = retry_after_seconds
