"""The audit API (for auditors: audit:read) and its review page.

GET /admin/audit                 records matching the filters, a page at a time (next_cursor)
GET /admin/audit/records/{id}    one record
GET /admin/audit/export          every matching record, as JSON lines or CSV
GET /admin/audit/verify          the chains checked end to end
GET /admin/audit/ui              the review page: static files, no data; it calls the API above
                                 with the caller's own bearer token, so it is authenticated and
                                 authorized exactly like the API
"""

from __future__ import annotations

from importlib import resources

from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from gateway.api.context import Context
from gateway.api.openai import error_response
from gateway.api.wire import caller_of, guarded_routes
from gateway.audit.export import Format, exported, matching
from gateway.audit.log import trusted_keys, witnesses
from gateway.audit.query import Query, QueryError, encode_cursor
from gateway.errors import BadRequest, GatewayError

_FILTERS = ("subject", "model", "decision", "action", "kind", "since", "until", "limit",
            "order", "cursor")
_PAGE = {  # the review page's files, and the headers that keep it to itself
    "index.html": "text/html; charset=utf-8",
    "app.js": "text/javascript; charset=utf-8",
    "app.css": "text/css; charset=utf-8",
}
_PAGE_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; "
                               "connect-src 'self'; img-src 'self' data:; form-action 'self'; "
                               "frame-ancestors 'none'; base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}


class AuditNotFound(GatewayError):
    status = 404
    code = "not_found"
    kind = "invalid_request_error"


def query_of(request: Request, limit: int | None = None) -> Query:
    params = {name: request.query_params.get(name) for name in _FILTERS}
    if limit is not None:
        params["limit"] = str(limit)
    try:
        return Query.parse(**params)
    except QueryError as exc:
        raise BadRequest(str(exc)) from None


class AuditAPI:
    def __init__(self, context: Context) -> None:
        self.context = context

    @property
    def routes(self) -> list[Route]:
        return [
            *guarded_routes(self.context.pipeline, error_response, "admin", [
                ("GET", "/admin/audit", self.search),
                ("GET", "/admin/audit/records/{id}", self.record),
                ("GET", "/admin/audit/export", self.export),
                ("GET", "/admin/audit/verify", self.verify),
            ]),
            Route("/admin/audit/ui", self.page, methods=["GET"]),
            Route("/admin/audit/ui/{name}", self.page, methods=["GET"]),
        ]

    async def search(self, request: Request) -> Response:
        caller_of(request).authorize("audit:read")
        query = query_of(request)
        records = await self.context.pipeline.audit.sink.search(query)
        last = (records[-1]["time"], records[-1]["id"]) if records else None
        return JSONResponse({
            "records": records,
            "next_cursor": encode_cursor(last) if last and len(records) == query.limit else None,
        })

    async def record(self, request: Request) -> Response:
        caller_of(request).authorize("audit:read")
        record = await self.context.pipeline.audit.sink.get(request.path_params["id"])
        if record is None:
            raise AuditNotFound("no audit record has this id")
        return JSONResponse(record)

    async def export(self, request: Request) -> Response:
        caller_of(request).authorize("audit:read")
        form: Format = "csv" if request.query_params.get("format") == "csv" else "jsonl"
        if request.query_params.get("format", form) != form:
            raise BadRequest("format must be jsonl or csv", param="format")
        query = query_of(request, limit=500)
        lines = exported(matching(self.context.pipeline.audit.sink, query), form)
        media = "application/x-ndjson" if form == "jsonl" else "text/csv; charset=utf-8"
        return StreamingResponse(lines, media_type=media, headers={
            "Content-Disposition": f'attachment; filename="vagt-audit.{form}"'})

    async def verify(self, request: Request) -> Response:
        caller_of(request).authorize("audit:read")
        audit, settings = self.context.pipeline.audit, self.context.settings
        await audit.flush()  # what has been answered so far is checked too
        reports = await audit.sink.verify(trusted_keys(settings), witnesses(settings))
        return JSONResponse({"ok": all(r.ok for r in reports),
                             "chains": [r.as_dict() for r in reports]})

    async def page(self, request: Request) -> Response:
        name = request.path_params.get("name", "index.html")
        if name not in _PAGE:
            return Response("not found", status_code=404, media_type="text/plain")
        body = resources.files("gateway.audit").joinpath("ui", name).read_bytes()
        return Response(body, media_type=_PAGE[name], headers=_PAGE_HEADERS)
