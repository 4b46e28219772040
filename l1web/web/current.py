"""What a request handler reaches for: this app's clients, run and recipe services, and signed-in user."""

from __future__ import annotations

from typing import TYPE_CHECKING

from flask import Flask, current_app, g

from l1web.clients import Clients
from l1web.errors import Unauthorized
from l1web.settings import Settings
from l1web.state import StateManager
from l1web.users import User

if TYPE_CHECKING:
    from l1web.recipes.service import RecipeService
    from l1web.runs.service import RunService
    from l1web.store import ContentStore

#: Key of the app's `Clients` in `app.extensions`.
EXTENSION = "l1"
#: Key of the app's `RunService` in `app.extensions`.
RUNS = "l1.runs"
#: Key of the app's `RecipeService` in `app.extensions`.
RECIPES = "l1.recipes"


def install(app: Flask, clients: Clients, run_service: RunService) -> None:
    from l1web.recipes.service import RecipeService

    app.extensions[EXTENSION] = clients
    app.extensions[RUNS] = run_service
    app.extensions[RECIPES] = RecipeService(clients.state, run_service)


def clients() -> Clients:
    return current_app.extensions[EXTENSION]


def settings() -> Settings:
    return clients().settings


def state() -> StateManager:
    return clients().state


def store() -> ContentStore:
    return clients().store


def runs() -> RunService:
    return current_app.extensions[RUNS]


def recipes() -> RecipeService:
    return current_app.extensions[RECIPES]


def user() -> User | None:
    """The user of this request, set by the sign-in layer; None when anonymous."""
    return g.get("user")


def signed_in() -> User:
    """The signed-in user; anonymous requests are refused (401)."""
    signed = user()
    if signed is None:
        raise Unauthorized("Sign in to do this.")
    return signed
