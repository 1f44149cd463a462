"""The inbox's query string, parsed once: view, sort, filters, search text and page cursor.

Unknown views and sorts fall back to the defaults (a stale bookmark still opens the inbox); a
filter value that is not one of the choices is a 400 (`Invalid`), so a typo never silently
shows a different list. Nothing from here reaches SQL except through `ticketing.services.inbox`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ticketing.services import inbox as queries

MAX_QUERY_CHARS = 500


@dataclass(frozen=True, slots=True)
class InboxParams:
    view: queries.View = queries.View.OPEN
    sort: queries.Sort = queries.Sort.UPDATED
    filters: queries.Filters = field(default_factory=queries.Filters)
    q: str = ""
    cursor: str | None = None

    @classmethod
    def parse(cls, args: Mapping[str, Any]) -> InboxParams:
        try:
            view = queries.View(args.get("view") or queries.View.OPEN)
        except ValueError:
            view = queries.View.OPEN
        q = args.get("q") or ""
        return cls(
            view=view,
            sort=queries.Sort.parse(args.get("sort")),
            filters=queries.Filters.parse(args),
            q=" ".join(q[:MAX_QUERY_CHARS].split()),
            cursor=args.get("after") or None,
        )

    @property
    def title(self) -> str:
        """The page title: the search, or the view's name."""
        return f"Search: {self.q}" if self.q else self.view.label

    def link_args(self, *, search: bool = True) -> dict[str, str]:
        """Query arguments for a link that keeps this list's view, sort, filters (and search)."""
        args: dict[str, str] = {"view": self.view.value}
        if self.sort != queries.Sort.UPDATED:
            args["sort"] = self.sort.value
        args.update(self.filters.as_params())
        if self.q and search:
            args["q"] = self.q
        return args
