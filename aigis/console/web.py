"""The console's pages: FastAPI, rendered on the server by Jinja2 (autoescaped), one small
static script for the keyboard. Every input is hostile: forms are bounded and strict (an unknown
field is refused, so a request cannot name its reviewer), every post carries the session's CSRF
token, cookies are ``HttpOnly`` and ``SameSite=Strict``, and pages send a CSP that allows no
inline script."""

from __future__ import annotations

import re
import secrets
from collections.abc import Awaitable, Callable
from importlib.resources import files
from typing import Any

import structlog
from fastapi import FastAPI, HTTPException, Request, Response
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.staticfiles import StaticFiles
from jinja2 import Environment, FileSystemLoader
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from aigis.console import auth
from aigis.console.images import ImageSource
from aigis.console.metrics import ConsoleMetrics
from aigis.console.quality import quality_report
from aigis.console.queue import Answer, Filters, NotLeased, ReviewQueue
from aigis.review import generators_of
from schemas.codec import decode
from schemas.errors import AigisError
from schemas.labels import GENERATOR_DISPLAY
from schemas.messages import ReviewItem
from schemas.settings import Settings

log = structlog.get_logger(__name__)

SESSION_COOKIE = "aigis_session"
LOGIN_COOKIE = "aigis_login"
MAX_BODY = 16 * 1024
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")
_FILTER_VALUE = re.compile(r"^[A-Za-z0-9._:@/+=-]{1,256}$")
_SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; img-src 'self'; style-src 'self'; script-src 'self'; "
        "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


def inert(value: object) -> str:
    """``value`` as text with control characters (terminal escapes, bidi overrides) written as
    visible escapes; HTML is escaped by the template."""
    return _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", str(value))


def create_app(
    settings: Settings,
    queue: ReviewQueue,
    images: ImageSource,
    metrics: ConsoleMetrics,
    registry: CollectorRegistry,
) -> FastAPI:
    app = FastAPI(docs_url=None, redoc_url=None, openapi_url=None)
    root = files("aigis.console")
    env = Environment(loader=FileSystemLoader(str(root / "templates")), autoescape=True)
    env.filters["inert"] = inert
    app.mount("/static", StaticFiles(directory=str(root / "static")), name="static")
    engine = queue.engine
    secure = settings.review.secure_cookies

    def page(name: str, status: int = 200, **context: Any) -> HTMLResponse:
        return HTMLResponse(env.get_template(name).render(**context), status_code=status)

    @app.middleware("http")
    async def guard(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        if request.method not in {"GET", "HEAD", "POST"}:
            return Response("method not allowed", status_code=405)
        length = request.headers.get("content-length")
        if request.method == "POST" and (length is None or not length.isdigit()):
            return Response("a post needs a Content-Length", status_code=411)
        if length is not None and (not length.isdigit() or int(length) > MAX_BODY):
            return Response("request too large", status_code=413)
        origin = request.headers.get("origin")
        if request.method == "POST" and origin not in (None, "null", _own_origin(request)):
            return Response("cross-origin post refused", status_code=403)
        response = await call_next(request)
        for name, value in _SECURITY_HEADERS.items():
            response.headers.setdefault(name, value)
        return response

    def session(request: Request) -> auth.Session | None:
        return auth.session_of(engine, request.cookies.get(SESSION_COOKIE))

    async def form(request: Request, allowed: set[str]) -> dict[str, str]:
        data = await request.form(max_files=0, max_fields=len(allowed) + 1, max_part_size=MAX_BODY)
        fields = {k: v for k, v in data.multi_items() if isinstance(v, str)}
        if set(data.keys()) - allowed or len(fields) != len(data.multi_items()):
            raise HTTPException(400, "unexpected form fields")
        return fields

    async def posted(request: Request, allowed: set[str]) -> tuple[auth.Session, dict[str, str]]:
        who = session(request)
        if who is None:
            raise HTTPException(401, "log in first")
        fields = await form(request, allowed | {"csrf"})
        if not auth.same_token(fields.get("csrf"), who.csrf):
            raise HTTPException(403, "stale or forged form: reload the page")
        return who, fields

    def to_login() -> RedirectResponse:
        return RedirectResponse("/login", status_code=303)

    @app.get("/healthz")
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/metrics")
    def metrics_page() -> Response:
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    @app.get("/login")
    def login_page(request: Request) -> Response:
        token = secrets.token_urlsafe(24)
        response = page("login.html", csrf=token, error=request.query_params.get("failed"))
        response.set_cookie(
            LOGIN_COOKIE, token, httponly=True, samesite="strict", secure=secure, max_age=900
        )
        return response

    @app.post("/login")
    async def login(request: Request) -> Response:
        fields = await form(request, {"name", "password", "csrf"})
        if not auth.same_token(fields.get("csrf"), request.cookies.get(LOGIN_COOKIE) or "-"):
            raise HTTPException(403, "stale or forged form: reload the login page")
        name = fields.get("name", "")
        token = auth.login(engine, name, fields.get("password", ""), settings.review.session_hours)
        if token is None:
            log.warning("review_login_failed")
            return RedirectResponse("/login?failed=1", status_code=303)
        log.info("review_login", reviewer=name)
        response = RedirectResponse("/", status_code=303)
        response.set_cookie(
            SESSION_COOKIE,
            token,
            httponly=True,
            samesite="strict",
            secure=secure,
            max_age=int(settings.review.session_hours * 3600),
        )
        response.delete_cookie(LOGIN_COOKIE)
        return response

    @app.post("/logout")
    async def logout(request: Request) -> Response:
        await posted(request, set())
        auth.logout(engine, request.cookies.get(SESSION_COOKIE))
        response = to_login()
        response.delete_cookie(SESSION_COOKIE)
        return response

    @app.get("/")
    def next_item(request: Request) -> Response:
        who = session(request)
        if who is None:
            return to_login()
        if who.role != "reviewer":
            return RedirectResponse("/queue", status_code=303)
        row = queue.lease(who.reviewer)
        if row is None:
            return page("empty.html", who=who, counts=queue.counts())
        item = decode(ReviewItem, row.item_json.encode())
        generators = generators_of(item)
        return page(
            "item.html",
            who=who,
            row=row,
            item=item,
            verdict=item.verdict,
            generators=[(i, g, GENERATOR_DISPLAY.get(g, g)) for i, g in enumerate(generators)],
            probs=sorted(item.verdict.generator_probs.items(), key=lambda kv: -kv[1]),
            bands=item.verdict.bands or settings.worker,
            counts=queue.counts(),
        )

    @app.get("/items/{item_id}/image")
    def image(item_id: int, request: Request) -> Response:
        if session(request) is None:
            raise HTTPException(401, "log in first")
        row = queue.get(item_id) if 0 < item_id < 2**62 else None
        if row is None:
            raise HTTPException(404, "no such item")
        loaded = images.load(decode(ReviewItem, row.item_json.encode()))
        if loaded is None:
            raise HTTPException(404, "the image cannot be shown")
        data, kind = loaded
        return Response(data, media_type=kind, headers={"Content-Disposition": "inline"})

    @app.post("/items/{item_id}/answer")
    async def answer(item_id: int, request: Request) -> Response:
        who, fields = await posted(request, {"label"})
        if who.role != "reviewer":
            raise HTTPException(403, "auditors cannot decide")
        label = fields.get("label", "").strip().lower()
        try:
            if label in {"skip", "unsure"}:
                queue.skip(item_id, who.reviewer, unsure=label == "unsure")
            else:
                queue.decide(item_id, who.reviewer, Answer(label))
                row = queue.get(item_id)
                if row is not None:
                    metrics.decided(who.reviewer, Answer(label).label_a(), row.p_ai)
        except NotLeased as err:
            raise HTTPException(409, str(err)) from None
        except AigisError as err:
            raise HTTPException(400, str(err)) from None
        return RedirectResponse("/", status_code=303)

    @app.post("/undo")
    async def undo(request: Request) -> Response:
        who, _ = await posted(request, set())
        if who.role != "reviewer":
            raise HTTPException(403, "auditors cannot decide")
        queue.undo(who.reviewer)
        return RedirectResponse("/", status_code=303)

    @app.get("/queue")
    def queue_page(request: Request) -> Response:
        who = session(request)
        if who is None:
            return to_login()
        filters = _filters(dict(request.query_params))
        return page(
            "queue.html",
            who=who,
            rows=queue.waiting(filters),
            counts=queue.counts(filters),
            filters=filters,
        )

    @app.get("/quality")
    def quality_page(request: Request) -> Response:
        who = session(request)
        if who is None:
            return to_login()
        return page("quality.html", who=who, rows=quality_report(engine))

    return app


def _filters(params: dict[str, str]) -> Filters:
    def text(name: str) -> str | None:
        value = params.get(name, "").strip()
        if not value:
            return None
        if not _FILTER_VALUE.match(value):
            raise HTTPException(400, f"filter {name} has characters it cannot have")
        return value

    age = params.get("min_age_s", "").strip()
    if age and not age.isdigit():
        raise HTTPException(400, "min_age_s is a whole number of seconds")
    return Filters(
        source=text("source"),
        band=text("band"),
        generator=text("generator"),
        min_age_s=float(age) if age else None,
    )


def _own_origin(request: Request) -> str:
    return f"{request.url.scheme}://{request.headers.get('host', '')}"
