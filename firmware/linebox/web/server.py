"""Serving the portal inside the daemon (or `linebox sim --web`): a WSGI server on a
thread of its own.

Plain HTTP is served by waitress (pure Python, a production server with a bounded
worker pool: fine on a Pi Zero 2 W). waitress has no TLS; with ``tls_cert``/``tls_key``
the portal is served by werkzeug's threaded server over an ``ssl`` context instead.
"""

import logging
import threading

from linebox.errors import LineboxError
from linebox.web.actions import Portal
from linebox.web.portal import create_app

log = logging.getLogger(__name__)
THREADS = 12                 # event streams hold a worker each (for at most 25 s)
MAX_BODY = 20 * 1024 * 1024
# Requests handled at once (their Python work; streaming a file or events runs beside):
# every runnable Python thread competes with the line loops for the GIL, so the portal
# gets one at a time, and the interpreter switches threads more often (1 ms, not 5 ms)
# so that a line loop waiting for its frame gets the GIL back quickly.
CONCURRENT = 1
SWITCH_INTERVAL = 0.001


class _OneAtATime:
    """WSGI middleware: at most ``n`` requests inside the application at once."""

    def __init__(self, app, n: int) -> None:
        self.app = app
        self.gate = threading.BoundedSemaphore(n)

    def __call__(self, environ, start_response):
        with self.gate:
            return self.app(environ, start_response)


class WebServer:
    """The portal over one appliance; ``start()`` binds and serves, ``stop()`` ends it."""

    def __init__(self, app, lock, web_cfg, calllog=None, host=None, port=None) -> None:
        self.web_cfg = web_cfg
        self.host = host if host is not None else web_cfg.host
        self.port = port if port is not None else web_cfg.port
        self.tls = web_cfg.tls_cert is not None
        self.portal = Portal(app, lock, calllog)
        self.wsgi = create_app(self.portal, web_cfg, tls=self.tls)
        self._served = _OneAtATime(self.wsgi, CONCURRENT)
        self._server = None
        self._thread = None
        self._stopping = False

    @property
    def url(self) -> str:
        host = self.host if self.host not in ("0.0.0.0", "::", "") else "127.0.0.1"
        host = f"[{host}]" if ":" in host else host
        return f"{'https' if self.tls else 'http'}://{host}:{self.port}/"

    def start(self) -> None:
        import sys
        sys.setswitchinterval(min(sys.getswitchinterval(), SWITCH_INTERVAL))
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
        log.info("web portal at %s", self.url)

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
