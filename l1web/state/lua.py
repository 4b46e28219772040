"""Lua the state scripts share: filling in a key template from `keys.py` inside a script.

A script whose keys depend on what it reads (a run's current status, the next user waiting)
cannot be handed those keys; it gets each key's template instead, built by `keys.py` with a
stand-in (a *hole*) where the unknown part goes, and fills it with `fill(template, hole, value)`.
So key names are spelled in `keys.py` only, never in Lua.
"""

from __future__ import annotations

#: `fill(template, hole, value)`: `template` with every `hole` replaced by `value` (plain text, no patterns).
FILL = """
local function fill(template, hole, value)
  local out, from = template, 1
  while true do
    local at = string.find(out, hole, from, true)
    if not at then return out end
    out = string.sub(out, 1, at - 1) .. value .. string.sub(out, at + #hole)
    from = at + #value
  end
end
"""


def hole(name: str) -> str:
    """A stand-in for `name` in a key template: NUL-delimited, so no real key part spells it."""
    return f"\x00{name}\x00"
