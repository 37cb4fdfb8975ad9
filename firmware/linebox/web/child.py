"""The portal's own process: ``python -m linebox.web.child FD``, started by the daemon
(``web.server.WebServer``) with its end of the channel as file descriptor FD.

It reads its settings from the first frame, binds the portal's address, answers
``{"listening": true, "port": N}`` (or ``{"error": ...}``), serves until the channel
closes (the daemon stopped, or died), then ends. SIGTERM and SIGINT are the daemon's
business: the portal ends when its channel does.
"""

import json
import os
import pickle
import signal
import socket
import sys
import threading


def main(argv: list[str]) -> int:
    from linebox import log as logmod
    from linebox.errors import LineboxError
    from linebox.web import ipc

    sock = socket.socket(fileno=int(argv[0]))
    signal.signal(signal.SIGINT, signal.SIG_IGN)        # a Ctrl-C reaches the daemon too
    signal.signal(signal.SIGTERM, signal.SIG_IGN)       # the daemon closes the channel
    kind, payload = ipc.recv_frame(sock)
    if kind != b"p":
        return 2
    what, init = pickle.loads(payload)
    if what != "init":
        return 2
    logmod.setup(init["level"], sys.stdout if init.get("log_to") == "stdout" else sys.stderr)
    try:
        os.nice(init.get("nice", 0))
    except OSError:
        pass
    from linebox.web.server import CONCURRENT_SEPARATE, Serving

    closed = threading.Event()
    portal = ipc.RemotePortal(sock, init["config"], init["data_dir"], on_close=closed.set)
    try:
        serving = Serving(portal, init["web_cfg"], init["host"], init["port"], CONCURRENT_SEPARATE)
        serving.start()
    except LineboxError as e:
        ipc.send_frame(sock, b"j", json.dumps({"error": str(e)}).encode())
        return 1
    ipc.send_frame(sock, b"j", json.dumps({"listening": True, "port": serving.port}).encode())
    portal.start()
    closed.wait()
    serving.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
