"""Pages of the collection lists (orgs, members, projects, providers, tokens).

Every list takes `?limit=` (1 to 1000, default 100) and `?cursor=`, and answers a JSON array in
name order, as before pagination. When more records follow, the answer carries
`Link: </api/v1/...?limit=N&cursor=C>; rel="next"` (RFC 8288; relative to the request's
address): request it as it is for the next page. The cursor is opaque, good for the same list.
"""

from __future__ import annotations

import base64
import binascii
from urllib.parse import urlencode

from flask import request
from marshmallow import Schema, ValidationError, fields, post_load, validate

from ..services.common import MAX_PAGE_LIMIT, PAGE_LIMIT, Page

CURSOR_ERROR = "not a cursor this list gave: follow its Link rel=next as it is"

LINK = {
    "Link": {
        "description": 'When more records follow: `<URL of the next page>; rel="next"` (the same list with'
        " `limit` and `cursor`). No such header: this page is the last.",
        "schema": {"type": "string"},
    }
}


def encode(name: str) -> str:
    return base64.urlsafe_b64encode(name.encode()).rstrip(b"=").decode("ascii")


def _decode(cursor: str) -> str:
    try:
        name = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode("ascii")
    except (binascii.Error, ValueError):
        raise ValidationError(CURSOR_ERROR, "cursor") from None
    if not name.isprintable() or encode(name) != cursor:
        raise ValidationError(CURSOR_ERROR, "cursor")
    return name


class PageArgs(Schema):
    limit = fields.Integer(
        load_default=PAGE_LIMIT,
        validate=validate.Range(min=1, max=MAX_PAGE_LIMIT),
        metadata={"description": f"Records per page (default {PAGE_LIMIT}, at most {MAX_PAGE_LIMIT})."},
    )
    cursor = fields.String(
        validate=validate.Length(min=1, max=400),
        metadata={"description": 'Where the page starts: from the `Link: rel="next"` of the page before.'},
    )

    @post_load
    def _after(self, data: dict, **_) -> dict:
        """The services' arguments: `limit` and `after` (the name the cursor stands for, or None)."""
        cursor = data.pop("cursor", None)
        return {**data, "after": None if cursor is None else _decode(cursor)}


def answer(page: Page, args: dict) -> tuple[list[dict], int, dict[str, str]]:
    """The view's answer: the page's records, and a `Link` to the next page if there is one."""
    if page.next is None:
        return page.items, 200, {}
    query = urlencode({"limit": args["limit"], "cursor": encode(page.next)})
    return page.items, 200, {"Link": f'<{request.script_root}{request.path}?{query}>; rel="next"'}
