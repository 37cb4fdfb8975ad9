"""The JSON API (CONTRACT §8, more in docs/web.md). The pages use it for every change."""

import os

from flask import Response, current_app, g, jsonify, make_response, request, send_file

from linebox.voicemail.pins import valid_pin, verify_pin
from linebox.wavfile import WavError
from linebox.web import media
from linebox.web.actions import ActionError
from linebox.web.auth import ADMIN, admin_hash, verify_password
from linebox.web.portal import (
    BOX_NUMBER,
    COOKIE,
    Refusal,
    admin_only,
    checked_box,
    checked_message,
    portal,
    session,
)

MESSAGE_FIELDS = ("id", "box", "state", "caller_number", "caller_name", "received", "seconds", "line",
                  "transcript")
CALL_FIELDS = ("t", "line", "extension", "caller_number", "caller_name", "outcome", "box", "message",
               "seconds")


def _json_body() -> dict:
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        raise Refusal(400, "the body must be a JSON object")
    return body


def _ok(**fields):
    return jsonify({"ok": True, **fields})


def _acting(fn, *args, **kw):
    try:
        return fn(*args, g.who, **kw)
    except ActionError as e:
        raise Refusal(e.status, str(e)) from None


# Asterisk's three kinds, as the phone's mailbox options and `linebox greeting --kind` have them.
GREETING_WORDS = {"unavailable": "greeting", "temporary": "temporary greeting", "name": "name recording"}


def _greeting_kind() -> str:
    kind = request.args.get("kind", "unavailable")
    if kind not in GREETING_WORDS:
        raise Refusal(400, "kind is unavailable, temporary or name")
    return kind


def visible_calls(p, s) -> list[dict]:
    """The call log of the boxes and lines this session may see, newest first: an owner
    sees the calls that reached the box, and the others on lines routed to it."""
    routes = {ln.id: ln.route for ln in p.config.lines}
    out = []
    for c in p.calls():
        if s.admin or c.get("box") == s.box or (c.get("box") is None and routes.get(c.get("line")) == s.box):
            out.append({k: c.get(k) for k in CALL_FIELDS})
    return out


def register(app) -> None:
    ext = app.extensions

    # ------------------------------------------------------------ login / logout

    @app.post("/api/v1/login")
    def login():
        addr = request.remote_addr or "?"
        if not ext["logins"].allow(addr):
            raise Refusal(429, "rate_limited")
        body = _json_body()
        p = portal()
        if "user" in body:
            user, password = body.get("user"), body.get("password")
            lockout = ext["admin_lock"]
            if user == ADMIN and lockout.locked_until() is not None:
                raise Refusal(429, "locked")
            if user != ADMIN or not isinstance(password, str) or \
                    not verify_password(password, admin_hash(p.data_dir)):
                g.who = f"{user!r} ({addr})"
                import logging
                logging.getLogger("linebox.web.audit").warning(
                    "web: failed administrator login from %s", addr)
                if user == ADMIN:
                    lockout.failed(addr)      # the failure that locks still answers 401
                raise Refusal(401, "wrong user or password")
            lockout.ok()
            s = ext["sessions"].create(ADMIN, None)
        else:
            box, pin = body.get("box"), body.get("pin")
            if not isinstance(box, str) or not BOX_NUMBER.fullmatch(box):
                raise Refusal(400, "box must be a box number (2 to 8 digits, as a string)")
            if box not in p.config.boxes:
                raise Refusal(401, "wrong box or PIN")
            if p.is_locked(box):
                raise Refusal(429, "locked")
            pin_hash = p.pin_hash(box)
            # A box without a PIN (pin_required = false) is still not open to the web.
            if not (isinstance(pin, str) and valid_pin(pin) and pin_hash and verify_pin(pin, pin_hash)):
                p.login_failed(box, addr)
                raise Refusal(401, "wrong box or PIN")
            p.login_ok(box, addr)
            s = ext["sessions"].create(f"box {box}", box)
        resp = make_response(_ok(csrf=s.csrf, user=s.user, box=s.box))
        resp.set_cookie(COOKIE, s.id, httponly=True, samesite="Strict", secure=ext["tls"], path="/")
        return resp

    @app.post("/api/v1/logout")
    def logout():
        s = session()
        ext["sessions"].end(s.id)
        resp = make_response(_ok())
        resp.delete_cookie(COOKIE, path="/")
        return resp

    @app.get("/api/v1/session")
    def whoami():
        s = session()
        return _ok(user=s.user, box=s.box, admin=s.admin, csrf=s.csrf)

    # ------------------------------------------------------------ boxes and messages

    @app.get("/api/v1/boxes")
    def boxes():
        s = session()
        p = portal()
        return jsonify([p.box_summary(b) for b in p.box_numbers() if s.may_see(b)])

    @app.get("/api/v1/boxes/<number>/messages")
    def box_messages(number):
        box = checked_box(number)
        return jsonify([{k: m.get(k) for k in MESSAGE_FIELDS} for m in portal().messages(box)])

    @app.get("/api/v1/messages/<message_id>")
    def message(message_id):
        m = checked_message(message_id)
        return jsonify({k: m.get(k) for k in MESSAGE_FIELDS})

    @app.get("/api/v1/messages/<message_id>/audio")
    def audio(message_id):
        m = checked_message(message_id)
        download = request.args.get("download") == "1"
        try:
            resp = send_file(m["file"], mimetype="audio/wav", conditional=True,
                             as_attachment=download,
                             download_name=media.download_name(m) if download else None,
                             max_age=0)
        except FileNotFoundError:
            raise Refusal(404, f"message {message_id} has no audio file") from None
        resp.headers["Content-Type"] = "audio/wav"
        resp.headers["Cache-Control"] = "private, no-cache"
        if not download:
            resp.headers.pop("Content-Disposition", None)
        return resp

    @app.get("/api/v1/messages/<message_id>/waveform.svg")
    def waveform(message_id):
        m = checked_message(message_id)
        try:
            st = os.stat(m["file"])
        except FileNotFoundError:
            raise Refusal(404, f"message {message_id} has no audio file") from None
        svg = media.waveform_svg(m["file"], st.st_mtime_ns, st.st_size)
        return Response(svg, mimetype="image/svg+xml", headers={"Cache-Control": "private, max-age=3600"})

    # A message's state changes: (method, path suffix, portal action, state it reports;
    # None: the state the action returns). Each checks the message, then acts.
    def _message_action(name, method, suffix, action, state=None):
        def handler(message_id):
            m = checked_message(message_id)
            out = _acting(getattr(portal(), action), m["id"])
            return _ok(state=state or out["state"])
        handler.__name__ = name
        app.route(f"/api/v1/messages/<message_id>{suffix}", methods=[method])(handler)

    for name, method, suffix, action, state in (
            ("delete", "DELETE", "", "delete", None),
            ("undelete", "POST", "/undelete", "undelete", None),
            ("heard", "POST", "/heard", "mark_heard", None),
            ("save", "POST", "/save", "save", None),
            ("purge", "POST", "/purge", "purge", "deleted")):
        _message_action(name, method, suffix, action, state)

    # ------------------------------------------------------------ greetings

    @app.get("/api/v1/boxes/<number>/greeting")
    def greeting(number):
        box = checked_box(number)
        kind = _greeting_kind()
        p = portal()
        path = p.greeting_file(box, kind)
        if path is not None:
            try:
                resp = send_file(path, mimetype="audio/wav", conditional=True, max_age=0)
                resp.headers["X-Linebox-Greeting"] = "own"
                return resp
            except FileNotFoundError:
                pass
        if kind != "unavailable":            # no system stand-in for these two
            raise Refusal(404, f"box {box} has no {GREETING_WORDS[kind]}")
        resp = Response(media.wav_bytes(p.system_greeting(box)), mimetype="audio/wav")
        resp.headers["X-Linebox-Greeting"] = "system"
        return resp

    @app.route("/api/v1/boxes/<number>/greeting", methods=["PUT", "POST"])
    def upload_greeting(number):
        box = checked_box(number)
        kind = _greeting_kind()
        if request.mimetype == "multipart/form-data":
            f = request.files.get("file")
            blob = f.read() if f is not None else b""
        else:                    # the WAV as the body, whatever the browser calls it
            blob = request.get_data(cache=False, parse_form_data=False)
        try:
            samples = media.read_upload(blob)
        except WavError as e:
            raise Refusal(400, f"{GREETING_WORDS[kind]}: {e}") from None
        _acting(portal().set_greeting, box, samples, kind=kind)
        return _ok(seconds=round(len(samples) / 8000, 2), kind=kind)

    @app.delete("/api/v1/boxes/<number>/greeting")
    def clear_greeting(number):
        box = checked_box(number)
        kind = _greeting_kind()
        _acting(portal().clear_greeting, box, kind=kind)
        return _ok(kind=kind)

    # ------------------------------------------------------------ lines, calls, live

    @app.get("/api/v1/lines")
    def lines():
        s = session()
        return jsonify([ln for ln in portal().lines() if s.admin or ln["route"] == s.box])

    @app.get("/api/v1/calls")
    def calls():
        return jsonify(visible_calls(portal(), session()))

    @app.get("/api/v1/events")
    def events():
        s = session()
        return Response(ext["live"].stream(s), mimetype="text/event-stream",
                        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})

    # ------------------------------------------------------------ settings

    from linebox.web import settings

    @app.get("/api/v1/settings")
    def get_settings():
        s = session()
        return jsonify(settings.view(portal(), s))

    @app.post("/api/v1/boxes/<number>/settings")
    def box_settings(number):
        s = session()
        box = checked_box(number)
        return _ok(**settings.change_box(portal(), s, box, _json_body(), g.who, current_app))

    @app.post("/api/v1/boxes")
    def add_box():
        admin_only()
        return _ok(**settings.add_box(portal(), _json_body(), g.who))

    @app.delete("/api/v1/boxes/<number>")
    def remove_box(number):
        admin_only()
        box = checked_box(number)
        return _ok(**settings.remove_box(portal(), box, g.who))

    @app.post("/api/v1/lines/<line_id>/settings")
    def line_settings(line_id):
        admin_only()
        if not line_id.isdigit() or len(line_id) > 6:
            raise Refusal(400, "a line id is a number")
        return _ok(**settings.change_line(portal(), int(line_id), _json_body(), g.who))

    @app.post("/api/v1/attendant")
    def attendant():
        admin_only()
        return _ok(**settings.change_attendant(portal(), _json_body(), g.who))
