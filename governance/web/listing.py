"""Paginated, sortable lists: the sort key comes from a whitelist, never from raw request text."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from flask import request, url_for
from sqlalchemy import func, select
from sqlalchemy.sql import Select

PER_PAGE = 25


@dataclass
class Page:
    rows: list[Any]
    page: int
    pages: int
    total: int
    sort: str
    direction: str

    def url(self, **changes: Any) -> str:
        args = {**request.view_args, **request.args.to_dict(), "page": self.page, "sort": self.sort,
                "dir": self.direction, **changes}
        return url_for(request.endpoint, **args)

    def sort_url(self, key: str) -> str:
        direction = "asc" if self.sort == key and self.direction == "desc" else "desc"
        return self.url(sort=key, dir=direction, page=1)


def paginate(session, query: Select, sorts: dict[str, Any], default: str, *, per_page: int = PER_PAGE,
             count_query: Select | None = None) -> Page:
    sort = request.args.get("sort", default)
    if sort not in sorts:
        sort = default
    direction = "asc" if request.args.get("dir") == "asc" else "desc"
    column = sorts[sort]
    total = session.execute(count_query if count_query is not None else
                            select(func.count()).select_from(query.order_by(None).subquery())).scalar_one()
    pages = max(1, -(-total // per_page))
    page = min(max(1, request.args.get("page", 1, type=int)), pages)
    ordered = query.order_by(column.asc() if direction == "asc" else column.desc())
    rows = session.execute(ordered.limit(per_page).offset((page - 1) * per_page)).all()
    return Page(rows, page, pages, total, sort, direction)
