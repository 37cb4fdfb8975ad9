"""The Flask application of the portal: sessions, CSRF, security headers, errors.

The routes live in ``api.py`` (the JSON API of CONTRACT §8, which the pages use too) and
``pages.py`` (server-rendered HTML). Nothing here builds a path from a request: message
ids and box numbers are checked against a pattern (400), then looked up in the store
(404), and files come from the store's records.
"""

import re
from pathlib import Path

from flask import Flask, g, jsonify, request
from werkzeug.exceptions import HTTPException

from linebox.web.actions import ActionError
from linebox.web.auth import SESSIONS_FILE, AdminLockout, RateLimit, Sessions, csrf_ok
from linebox.web.live import Live
from linebox.web.media import MAX_UPLOAD_BYTES

COOKIE = "linebox_sid"
BOX_NUMBER = re.compile(r"[0-9]{2,8}")
MESSAGE_ID = re.compile(r"[0-9]{1,12}")
SAFE_METHODS = ("GET", "HEAD", "OPTIONS")
HERE = Path(__file__).parent


class Refusal(Exception):
    """An HTTP refusal with a JSON body ``{"ok": false, "error": ...}``."""

    def __init__(self, status: int, error: str) -> None:
        super().__init__(error)
        self.status = status
        self.error = error


def create_app(portal, web_cfg, tls: bool = False) -> Flask:
    """The WSGI application over a ``web.actions.Portal``."""
    app = Flask("linebox.web", template_folder=str(HERE / "templates"),
                static_folder=str(HERE / "static"), static_url_path="/static")
    app.config.update(MAX_CONTENT_LENGTH=MAX_UPLOAD_BYTES, JSON_SORT_KEYS=False,
                      TEMPLATES_AUTO_RELOAD=False)
    app.jinja_env.autoescape = True
    ext = app.extensions
    ext["portal"] = portal
    data_dir = Path(portal.data_dir)
    ext["sessions"] = Sessions(idle=web_cfg.session_idle_minutes * 60,
                               path=data_dir / SESSIONS_FILE if data_dir.is_dir() else None)
    ext["logins"] = RateLimit()
    ext["admin_lock"] = AdminLockout(data_dir)
    ext["tls"] = tls
    ext["live"] = Live(portal.bus, lambda line: _route_of(portal, line))
    csp = ("default-src 'self'; img-src 'self' data:; media-src 'self' blob:; style-src 'self'; "
           "script-src 'self'; connect-src 'self'; object-src 'none'; base-uri 'none'; "
           f"form-action 'self'; frame-ancestors {web_cfg.frame_ancestors}")

    @app.before_request
    def _session():
        g.session = ext["sessions"].get(request.cookies.get(COOKIE))
        g.who = f"{g.session.user if g.session else 'anonymous'} ({request.remote_addr})"
        if request.method not in SAFE_METHODS and request.path != "/api/v1/login":
            if g.session is None:
                raise Refusal(401, "not logged in")
            if not csrf_ok(g.session, request.headers.get("X-CSRF-Token")):
                raise Refusal(403, "missing or wrong X-CSRF-Token")

    @app.after_request
    def _headers(resp):
        h = resp.headers
        h["Content-Security-Policy"] = csp
        h["X-Content-Type-Options"] = "nosniff"
        h["Referrer-Policy"] = "same-origin"
        h["Cross-Origin-Opener-Policy"] = "same-origin"
        if request.path.startswith("/api/") or "text/html" in resp.content_type:
            h.setdefault("Cache-Control", "no-store")
        return resp

    @app.errorhandler(Refusal)
    def _refusal(e: Refusal):
        return jsonify({"ok": False, "error": e.error}), e.status

    @app.errorhandler(ActionError)
    def _action(e: ActionError):
        # A read the daemon could not answer (it is stopping; 503), outside the routes'
        # own handling: a short refusal, no traceback.
        return jsonify({"ok": False, "error": str(e)}), e.status

    @app.errorhandler(HTTPException)
    def _http(e: HTTPException):
        if e.code == 413:
            msg = f"the upload is larger than {MAX_UPLOAD_BYTES // (1024 * 1024)} MB"
        else:
            msg = e.name.lower()
        if request.path.startswith("/api/") or e.code == 413:
            return jsonify({"ok": False, "error": msg}), e.code
        return e

    from linebox.web import api, pages
    api.register(app)
    pages.register(app)
    return app


def _route_of(portal, line):
    try:
        return portal.config.line(line).route
    except (KeyError, TypeError):
        return None


# ---------------------------------------------------------------- helpers for the routes

def portal():
    from flask import current_app
    return current_app.extensions["portal"]


def session():
    """The session of this request, or 401."""
    if g.session is None:
        raise Refusal(401, "not logged in")
    return g.session


def checked_box(number: str) -> str:
    """A box number this session may see: 400 malformed, 404 unknown, 403 another's."""
    s = session()
    if not BOX_NUMBER.fullmatch(number or ""):
        raise Refusal(400, "a box number is 2 to 8 digits")
    if number not in portal().config.boxes:
        raise Refusal(404, f"no box {number}")
    if not s.may_see(number):
        raise Refusal(403, f"box {number} is not yours")
    return number


def checked_message(message_id: str) -> dict:
    """A message this session may see: 400 malformed, 404 unknown or not visible."""
    s = session()
    if not MESSAGE_ID.fullmatch(message_id or ""):
        raise Refusal(400, "a message id is digits")
    m = portal().message(message_id)
    if m is None or not s.may_see(m["box"]):
        raise Refusal(404, f"no message {message_id}")
    return m


def admin_only():
    s = session()
    if not s.admin:
        raise Refusal(403, "only the administrator may do this")
    return s
