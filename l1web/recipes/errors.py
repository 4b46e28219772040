"""The one error a recipe raises: what is wrong and where."""

from __future__ import annotations


class RecipeError(ValueError):
    """A recipe that cannot be used; the message says where (line/column or node/field)."""

    def __init__(self, message: str, *, line: int | None = None, column: int | None = None,
                 node: str | None = None, field: str | None = None) -> None:
        super().__init__(message)
        self.line, self.column, self.node, self.field = line, column, node, field
