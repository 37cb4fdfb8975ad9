"""Serving the portal for `linebox run` (or `linebox sim --web`): by default in a
process of its own (``web/child.py``, over the channel of ``web/ipc.py``), so that its
Python work never holds the interpreter lock the line loops need; in the daemon's own
process, on a thread, with ``separate=False`` (tests that look inside, and the
benchmark's comparison).

Plain HTTP is served by waitress (pure Python, a production server with a bounded
worker pool: fine on a Pi Zero 2 W). waitress has no TLS; with ``tls_cert``/``tls_key``
the portal is served by werkzeug's threaded server over an ``ssl`` context instead.
"""

import json
import logging
import socket
import subprocess
import sys
import threading

from linebox.errors import LineboxError
from linebox.web.actions import Portal
from linebox.web.portal import create_app

log = logging.getLogger(__name__)
THREADS = 12                 # event streams hold a worker each (for at most 25 s)
MAX_BODY = 20 * 1024 * 1024
# In the daemon's process (separate=False) every runnable Python thread competes with the
# line loops for the GIL, so the portal gets one request at a time there, and the
# interpreter switches threads more often (1 ms, not 5 ms). In a process of its own it
# serves a few at once.
CONCURRENT = 1
CONCURRENT_SEPARATE = 4
SWITCH_INTERVAL = 0.001
START_TIMEOUT = 60.0         # the portal process imports Flask and binds (a loaded Pi is slow)
CHILD_NICE = 10              # the portal process yields the CPU to the line loops


class _OneAtATime:
    """WSGI middleware: at most ``n`` requests inside the application at once."""

    def __init__(self, app, n: int) -> None:
        self.app = app
        self.gate = threading.BoundedSemaphore(n)

    def __call__(self, environ, start_response):
        with self.gate:
            return self.app(environ, start_response)


class Serving:
    """The WSGI server over one portal facade (``actions.Portal`` or ``ipc.RemotePortal``),
    on a thread of the process it runs in."""

    def __init__(self, portal, web_cfg, host, port, concurrent: int) -> None:
        self.web_cfg = web_cfg
        self.host, self.port = host, port
        self.tls = web_cfg.tls_cert is not None
        self.portal = portal
        self.wsgi = create_app(portal, web_cfg, tls=self.tls)
        self._served = _OneAtATime(self.wsgi, concurrent)
        self._server = None
        self._thread = None
        self._stopping = False

    def start(self) -> None:
        try:
            if self.tls:
                self._server = self._werkzeug()
                target = self._server.serve_forever
            else:
                from waitress import create_server
                self._server = create_server(
                    self._served, host=self.host, port=self.port, threads=THREADS,
                    max_request_body_size=MAX_BODY, channel_timeout=60, ident="linebox",
                    clear_untrusted_proxy_headers=True)
                target = self._run_waitress
        except OSError as e:
            raise LineboxError(f"web: cannot listen on {self.host}:{self.port}: {e.strerror or e}") from None
        if not self.tls:
            self.port = self._server.effective_port
        self._thread = threading.Thread(target=target, name="web", daemon=True)
        self._thread.start()

    def _run_waitress(self) -> None:
        try:
            self._server.run()
        except (OSError, ValueError):
            if not self._stopping:
                raise                 # closed under the loop by stop(): the end, not a failure

    def _werkzeug(self):
        import ssl

        from werkzeug.serving import make_server
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        try:
            ctx.load_cert_chain(str(self.web_cfg.tls_cert), str(self.web_cfg.tls_key))
        except (OSError, ssl.SSLError) as e:
            raise LineboxError(f"web: tls_cert/tls_key: {e}") from None
        srv = make_server(self.host, self.port, self._served, threaded=True, ssl_context=ctx)
        self.port = srv.server_port
        return srv

    def stop(self) -> None:
        if self._server is None:
            return
        if self.tls:
            self._server.shutdown()
        else:
            self._stopping = True
            srv = self._server
            srv.task_dispatcher.shutdown(timeout=2)
            # Close the listener and every open connection (event streams too): the
            # loop thread then ends.
            for channel in list(srv._map.values()):
                try:
                    channel.close()
                except OSError:
                    pass
        if self._thread is not None:
            self._thread.join(timeout=3)
        self._server = None
        self.wsgi.extensions["sessions"].flush()     # the last-use times, for the next start


class WebServer:
    """The portal over one appliance; ``start()`` binds and serves, ``stop()`` ends it.

    ``separate`` (the default): the portal runs in a child process that the daemon
    starts and stops, and the daemon answers its calls (``ipc.HostedPortal``)."""

    def __init__(self, app, lock, web_cfg, calllog=None, host=None, port=None, separate: bool = True) -> None:
        self.web_cfg = web_cfg
        self.host = host if host is not None else web_cfg.host
        self.port = port if port is not None else web_cfg.port
        self.tls = web_cfg.tls_cert is not None
        self.separate = separate
        self.portal = Portal(app, lock, calllog)
        self._serving = None if separate else Serving(self.portal, web_cfg, self.host, self.port, CONCURRENT)
        self._host = None
        self._child = None

    @property
    def wsgi(self):
        """The Flask application (only in the daemon's process: ``separate=False``)."""
        if self._serving is None:
            raise AttributeError("the portal runs in its own process: its Flask app is not here")
        return self._serving.wsgi

    @property
    def pid(self) -> int | None:
        return self._child.pid if self._child is not None else None

    @property
    def url(self) -> str:
        host = self.host if self.host not in ("0.0.0.0", "::", "") else "127.0.0.1"
        host = f"[{host}]" if ":" in host else host
        return f"{'https' if self.tls else 'http'}://{host}:{self.port}/"

    def start(self) -> None:
        if self.separate:
            self._start_child()
        else:
            sys.setswitchinterval(min(sys.getswitchinterval(), SWITCH_INTERVAL))
            self._serving.start()
            self.port = self._serving.port
        log.info("web portal at %s%s", self.url, f" (process {self.pid})" if self.separate else "")

    def _start_child(self) -> None:
        import pickle

        from linebox.web import ipc

        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        level = logging.getLogger("linebox").getEffectiveLevel()
        # The portal logs where the daemon does: stdout for `linebox run` (the journal),
        # stderr for `linebox sim`, whose stdout is the transcript (--json) and stays so.
        to_stdout = any(getattr(h, "stream", None) is sys.stdout for h in logging.getLogger("linebox").handlers)
        try:
            self._child = subprocess.Popen(
                [sys.executable, "-m", "linebox.web.child", str(theirs.fileno())],
                pass_fds=(theirs.fileno(),), stdin=subprocess.DEVNULL, env=ipc.child_environment(),
                stdout=None if to_stdout else subprocess.DEVNULL, close_fds=True)
        finally:
            theirs.close()
        try:
            init = {"web_cfg": self.web_cfg, "host": self.host, "port": self.port,
                    "config": self.portal.config, "data_dir": str(self.portal.data_dir),
                    "level": logging.getLevelName(level), "nice": CHILD_NICE,
                    "log_to": "stdout" if to_stdout else "stderr"}
            ipc.send_frame(ours, b"p", pickle.dumps(("init", init)))
            ours.settimeout(START_TIMEOUT)
            kind, payload = ipc.recv_frame(ours)
            ours.settimeout(None)
            answer = json.loads(payload) if kind == b"j" else {}
        except (OSError, ipc.ChannelClosed, ValueError) as e:
            ours.close()
            self._reap(kill=True)
            raise LineboxError(f"web: the portal process did not start ({type(e).__name__})") from None
        if not answer.get("listening"):
            ours.close()
            self._reap(kill=True)
            raise LineboxError(answer.get("error") or "web: the portal process did not start")
        self.port = answer["port"]
        self._host = ipc.HostedPortal(self.portal, ours)
        self._host.start()

    def alive(self) -> bool:
        """The portal serves (its process runs, when it has one)."""
        if self.separate:
            return self._child is not None and self._child.poll() is None
        return self._serving is not None and self._serving._server is not None

    def _reap(self, kill: bool = False, timeout: float = 5.0) -> None:
        child, self._child = self._child, None
        if child is None:
            return
        if kill:
            child.kill()
        try:
            child.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait(timeout=5)

    def stop(self) -> None:
        if self.separate:
            if self._host is not None:
                self._host.close()       # the portal process sees the channel close and ends
                self._host = None
            self._reap()
        elif self._serving is not None:
            self._serving.stop()
