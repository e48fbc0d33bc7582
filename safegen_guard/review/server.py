"""Serve a Flask app on loopback by default, in the foreground or in a background thread.

Flask (3.x) is the web framework of the review app and the reader study: small, well kept
(Pallets), a thin layer over the standard WSGI model with no async runtime, and its
``send_from_directory`` refuses paths outside the served folder. The apps need a handful of
routes and one SQLite file, not FastAPI's validation and ASGI stack.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # Flask is an optional dependency (the ``review`` extra)
    from flask import Flask
    from werkzeug.serving import BaseWSGIServer

__all__ = ["DEFAULT_HOST", "ServerThread", "serve"]

#: Loopback: the apps show unreleased images and must not be reachable from the network
#: unless the user says so (``--host 0.0.0.0``).
DEFAULT_HOST = "127.0.0.1"


def make(app: Flask, host: str = DEFAULT_HOST, port: int = 8765) -> BaseWSGIServer:
    """A threaded WSGI server for ``app`` bound to ``host:port`` (port 0: any free port)."""
    from werkzeug.serving import make_server

    return make_server(host, port, app, threaded=True)


def serve(app: Flask, host: str = DEFAULT_HOST, port: int = 8765) -> None:
    """Serve ``app`` until interrupted (Ctrl-C)."""
    server = make(app, host, port)
    print(f"serving on http://{host}:{server.server_port}/ (Ctrl-C to stop)", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


class ServerThread:
    """Run ``app`` in a daemon thread (tests, notebooks); ``url`` once started.

    Example:
        >>> with ServerThread(app) as url:  # doctest: +SKIP
        ...     requests.get(url)
    """

    def __init__(self, app: Flask, host: str = DEFAULT_HOST, port: int = 0) -> None:
        self.server = make(app, host, port)
        self.url = f"http://{host}:{self.server.server_port}/"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def start(self) -> str:
        """Start serving in the background; return the URL."""
        self._thread.start()
        return self.url

    def __enter__(self) -> str:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        """Stop serving (if started) and close the socket."""
        if self._thread.is_alive():  # shutdown() waits for serve_forever, which must be running
            self.server.shutdown()
            self._thread.join(timeout=5)
        self.server.server_close()
