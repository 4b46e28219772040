"""How waitress serves L1 (`python app.py`): one place, so tests serve the app the same way."""

from __future__ import annotations

from l1web.settings import Settings


def waitress_options(settings: Settings) -> dict:
    """Keyword arguments for `waitress.serve` / `create_server`, from the settings."""
    options: dict = {
        "host": settings.host, "port": settings.port, "ident": "L1",
        "threads": 8,
        # Many clients poll status fragments at once: accept them rather than queue at 100.
        "connection_limit": 500,
        # Read uploads in 1 MiB slices (waitress's 8 KiB default caps loopback upload speed).
        "recv_bytes": 1024 * 1024,
        # Receive the next pipelined request while the app handles this one (waitress's default 0
        # stops reading the connection meanwhile): `render.py` pipelines its tus PATCHes, so the
        # next 8 MiB arrive while this one is written and hashed rather than after it — 9 ms of
        # every 27 ms PATCH were spent receiving with the app idle (docs/performance.md). It holds
        # one more request per connection, in memory within `bodies.BUDGET` or in a temp file.
        "channel_request_lookahead": 1,
        # Waitress refuses a larger body itself; let the app's own limit (a clear 413) decide.
        "max_request_body_size": settings.max_upload_bytes + 1024 * 1024,
    }
    if settings.trusted_proxy:
        # Waitress's own proxy handling, not a ProxyFix on every peer: forwarded headers are believed
        # only from this address (one hop) and dropped from everyone else, so no client can pick
        # its own address to dodge the per-address rate limits.
        options.update(trusted_proxy=settings.trusted_proxy, trusted_proxy_count=1,
                       trusted_proxy_headers={"x-forwarded-for", "x-forwarded-proto"})
    return options


def start_background(app, settings: Settings):
    """What a serving web process runs beside its requests: the sweep of expired resumable
    uploads (`UPLOAD_SWEEP_INTERVAL`; 0 turns it off, leaving the sweep on each new upload).
    The sweeper, or None."""
    from l1web.store.uploads import UploadStore, UploadSweeper
    from l1web.web import current

    if settings.upload_sweep_interval <= 0:
        return None
    clients = app.extensions[current.EXTENSION]
    return UploadSweeper(UploadStore(clients.store, clients.state.uploads), settings.upload_sweep_interval,
                         settings.upload_expiry).start()


def serve(settings: Settings | None = None, app=None) -> None:
    """`python app.py` / `l1 web`: check the tools and Redis, make the samples, then serve."""
    import gc
    import logging

    from l1web import startup
    from l1web.web.keepalive import create_server  # 204s keep their connection (tus PATCHes)

    settings = settings or Settings.from_env()
    startup.prepare(settings, "web app", redis_required=False)
    if app is None:
        from l1web.web import create_app

        app = create_app(settings)
    start_background(app, settings)
    # Everything loaded so far (Flask, the app, its modules: ~90,000 objects) lives as long as the
    # process: a full collection need never scan it. Unfrozen, each one paused every request
    # thread for 15-50 ms here (issue 19; as the worker does before forking its horses).
    gc.collect()
    gc.freeze()
    print(f"L1 listening on http://{settings.host}:{settings.port}", flush=True)
    try:
        logging.basicConfig()  # as waitress.serve does (idempotent)
        server = create_server(app, **waitress_options(settings))
        server.print_listen("Serving on http://{}:{}")
        server.run()
    except OSError as exc:  # the port is taken, or the address is not ours
        startup.fail("web app", f"cannot listen on {settings.host}:{settings.port} ({exc.strerror}): set PORT/HOST")
