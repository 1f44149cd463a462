"""The agent JSON API under `/api/v1`: tickets listed, read, answered and changed by scripts.

Authenticated by personal API tokens only (`Authorization: Bearer hof_…`, see `web.api.auth`),
never by the browser session, so it needs no CSRF token. Ticket shapes are the export's
(`ticketing.services.export`); `/api/v1/openapi.json` describes every route, and a test keeps
that document and the real routes identical. Routes and shapes are a stable contract.
"""

from web.api import accounts as _accounts  # noqa: F401  (registers its route)
from web.api import articles as _articles  # noqa: F401 (registers its routes on bp)
from web.api.routes import bp

__all__ = ["bp"]
