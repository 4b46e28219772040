"""waitress, keeping HTTP/1.1 connections open after 204 and 304 answers.

waitress 3.0.2 closes a keep-alive connection after any response without a Content-Length
(`Task.build_response_header`), and a 204 or 304 may not carry one (RFC 9110 §8.6), so every
204 ends its connection. tus answers each PATCH with 204: without this, every chunk of an upload
costs a new connection, and the PATCHes `render.py` pipelines (so the server hashes chunk k while
chunk k+1 arrives) are cut after the first. A 204/304 has no body by definition, so its end is
known without a length and the connection can stay open — what HTTP/1.1 servers generally do.
"""

from __future__ import annotations

from waitress import create_server as waitress_create_server
from waitress.channel import HTTPChannel
from waitress.server import BaseWSGIServer
from waitress.task import WSGITask

from l1web.web.bodies import MemoryBodyParser

#: Statuses whose responses never have a body.
BODILESS = ("204", "304")


class KeepAliveTask(WSGITask):
    """A WSGI task that does not close the connection just because a 204/304 has no length."""

    _bodiless = False

    def build_response_header(self):
        self._bodiless = (self.status[:3] in BODILESS and self.version == "1.1"
                          and self.request.headers.get("CONNECTION", "").lower() != "close")
        try:
            return super().build_response_header()
        finally:
            self._bodiless = False

    def set_close_on_finish(self) -> None:
        if self._bodiless:  # only the "no Content-Length" rule asks for it here
            return
        super().set_close_on_finish()


class KeepAliveChannel(HTTPChannel):
    task_class = KeepAliveTask
    parser_class = MemoryBodyParser  # tus PATCH bodies stay in memory, within a budget (bodies.py)


def create_server(app, **options):
    """`waitress.create_server` whose connections use `KeepAliveTask`."""
    server = waitress_create_server(app, **options)
    servers = [server] if isinstance(server, BaseWSGIServer) else \
        [s for s in getattr(server, "map", {}).values() if isinstance(s, BaseWSGIServer)]
    for each in servers:
        each.channel_class = KeepAliveChannel
    return server
