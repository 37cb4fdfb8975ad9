"""`linebox run` in tests: the configuration of one modem line, and the daemon as a child
process that is always stopped (SIGTERM, then killed) when the test leaves it."""

import contextlib
import os
import signal
import subprocess
import sys


def modem_config(data, port, *, rings: int = 2, duplex: str | None = None,
                 box: str = "pin_required = false", more: str = "") -> str:
    """A configuration with line 1 a modem (``port``, no flow control: a pty has none)
    routed to box 100; ``box`` and ``more`` are further TOML lines for the box and after it."""
    duplex_line = f'duplex = "{duplex}"\n' if duplex else ""
    return (f'[device]\ndata_dir = "{data}"\n'
            f'[[line]]\nid = 1\ndriver = "modem"\nport = "{port}"\nflow_control = "none"\n'
            f'{duplex_line}rings = {rings}\nroute = "100"\n'
            f'[[box]]\nnumber = "100"\n{box}\n{more}')


@contextlib.contextmanager
def linebox_run(config, env: dict | None = None, stop_timeout: float = 20.0):
    """``linebox run --config config`` as a child (stdout and stderr piped); ``env``
    replaces the environment (the firmware under test stays on its PYTHONPATH). Left
    running when the block ends, it gets SIGTERM, then SIGKILL after ``stop_timeout``."""
    if env is not None and "PYTHONPATH" in os.environ:
        env = {"PYTHONPATH": os.environ["PYTHONPATH"], **env}
    proc = subprocess.Popen([sys.executable, "-m", "linebox", "run", "--config", str(config)],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=stop_timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
