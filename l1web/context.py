"""The per-app bundle of long-lived objects (settings, state, store) and accessors for routes."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from flask import Flask, current_app, g

from l1web.settings import Settings
from l1web.state import StateManager

if TYPE_CHECKING:
    from l1web.store import ContentStore

EXTENSION = "l1"


@dataclass
class L1:
    settings: Settings
    state: StateManager
    store: ContentStore

    @classmethod
    def create(cls, app: Flask, settings: Settings, state: StateManager) -> L1:
        from l1web.store import ContentStore

        bundle = cls(settings, state, ContentStore(settings.cache_dir, state.cache))
        app.extensions[EXTENSION] = bundle
        return bundle


def l1() -> L1:
    return current_app.extensions[EXTENSION]


def settings() -> Settings:
    return l1().settings


def state() -> StateManager:
    return l1().state


def store() -> ContentStore:
    return l1().store


@dataclass(frozen=True)
class User:
    """A signed-in user, as L2 vouched for them."""

    name: str
    is_admin: bool = False


def current_user() -> User | None:
    """The user of this request, set by the sign-in layer; None when anonymous."""
    return g.get("user")
