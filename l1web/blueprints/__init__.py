"""Every blueprint of the web app, registered in one place: the route table is readable here."""

from __future__ import annotations

import importlib

from flask import Flask

#: Blueprint modules, each exposing `bp`; order only matters for the home page.
MODULES = (
    "home",
    "effects",
    "runs",
    "recipes",
    "auth",
    "cache",
    "uploads",
    "media",
    "apidocs",
    "ops",
    "publish",
    "notify",
    "workers",
    "batches",
)


def register_all(app: Flask) -> None:
    for name in MODULES:
        module = importlib.import_module(f"l1web.blueprints.{name}")
        app.register_blueprint(module.bp)
