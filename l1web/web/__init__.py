"""The web layer: the Flask application factory and what only the web app uses."""

from __future__ import annotations

import logging

from flask import Flask

from l1web import metrics
from l1web.auth import hooks as auth_hooks
from l1web.clients import Clients
from l1web.engine import encoding, ffmpeg
from l1web.settings import Settings
from l1web.state import StateManager
from l1web.web import access_log, current, dashboard, errors, htmx, templating
from l1web.web.flaskapp import L1Flask

#: Largest request body of any route but the uploads, in bytes: recipes (256 KiB), JSON bodies
#: (256 KiB) and forms fit; werkzeug refuses more (413) before reading it, whether or not a
#: Content-Length was sent. Upload routes raise the cap for their own request.
MAX_REQUEST_BYTES = 1024 * 1024


def create_app(settings: Settings | None = None, *, state: StateManager | None = None) -> Flask:
    """Build the web app; nothing is started or connected at import time."""
    settings = settings or Settings.from_env()
    ffmpeg.configure(settings)
    encoding.configure(settings.png_encoding)  # cache ids planned here match the workers'
    # Named for the package, so templates and static files resolve from l1web/, not l1web/web/.
    app = L1Flask("l1web")
    app.config.update(
        SECRET_KEY=settings.resolved_secret_key(),
        TESTING=settings.testing,
        # Uploads stream to disk through our own reader and lift this cap per request.
        MAX_CONTENT_LENGTH=MAX_REQUEST_BYTES,
        MAX_FORM_MEMORY_SIZE=1024 * 1024,
        JSON_SORT_KEYS=False,
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_SECURE=settings.l1_public_url.startswith("https://"),
    )
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    clients = Clients.from_settings(settings, state=state)
    from l1web.jobs.queues import run_service

    current.install(app, clients, run_service(clients.state, clients.store, clients.rq_connection,
                                                        user_max_priority=clients.settings.user_max_priority))
    errors.init_app(app)
    auth_hooks.init_app(app)

    from l1web.blueprints import ops, register_all

    register_all(app)
    templating.init_app(app)
    htmx.init_app(app)
    access_log.init_app(app)
    ops.init_app(app, metrics.registry_for(clients.state, clients.rq_connection, settings.cache_dir))
    dashboard.init_app(app, settings.redis_url)
    return app

