"""A DAG drawn as an inline SVG on the server: one column per level, left to right.

Each node is a box coloured by its state (a step status, or none for a recipe's static graph),
labelled with its id and type, and carries a `<title>` for hover and screen readers. A running
step's box fills as it renders (`percent`); a finished step's box shows a preview of its output
and links to it. The whole picture is `role="img"` (`role="group"` once its nodes are links)
with an `aria-label` that sums the states up. Every piece of user text
(node ids, types, errors) is escaped here; the result is safe to insert as `Markup`.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from html import escape

from markupsafe import Markup

#: Box size and spacing, in SVG user units (pixels at 100 %).
NODE_WIDTH, NODE_HEIGHT = 168, 46
COLUMN_GAP, ROW_GAP, MARGIN = 56, 18, 12
#: Characters of a label shown inside a box; the full text is in the node's <title>.
LABEL_CHARS = 20
#: Characters of the smaller caption line (type, state or percent and time left).
CAPTION_CHARS = 26
#: Fill and stroke per state; "none" is a recipe node that has no run state.
COLOURS = {
    "none": ("#ffffff", "#8893a2"),
    "pending": ("#f1f1ef", "#9aa1ab"),
    "queued": ("#f4efe1", "#b08a2e"),
    "running": ("#e6edfb", "#2255cc"),
    "retrying": ("#f4efe1", "#2255cc"),
    "cached": ("#e6f4ee", "#2e8a63"),
    "completed": ("#e3f3e8", "#1f7a3a"),
    "failed": ("#fbe7e6", "#b3261e"),
    "cancelled": ("#f4f4f4", "#6b7280"),
    "skipped": ("#f4f4f4", "#b7bcc4"),
}
#: The part of a running node already rendered.
FILL_COLOUR = "#c3d3f6"
#: Height added to every box for output previews once any node has one, and their inset.
THUMB_HEIGHT, THUMB_PAD = 92, 6


@dataclass(frozen=True)
class DrawNode:
    """One box: `inputs` are ids of other nodes; `state` a step status or None."""

    id: str
    type: str
    inputs: tuple[str, ...] = ()
    state: str | None = None
    detail: str = ""
    #: Percent rendered, drawn as a fill while the step runs; `eta` in seconds.
    percent: float | None = None
    eta: float | None = None
    #: For a chunked step drawn as one node: "done/total chunks".
    progress: str = ""
    #: A preview picture of the node's output (URL) and where a click on the node goes.
    thumb: str = ""
    href: str = ""


def levels(nodes: Iterable[DrawNode]) -> dict[str, int]:
    """Longest distance from a source for each node; inputs that aren't drawn are ignored."""
    by_id = {node.id: node for node in nodes}
    level: dict[str, int] = {}

    def visit(node_id: str, seen: frozenset[str]) -> int:
        if node_id in level:
            return level[node_id]
        parents = [p for p in by_id[node_id].inputs if p in by_id and p not in seen]
        level[node_id] = 1 + max((visit(p, seen | {node_id}) for p in parents), default=-1)
        return level[node_id]

    for node_id in by_id:
        visit(node_id, frozenset())
    return level


def render(nodes: Iterable[DrawNode], *, title: str = "DAG") -> Markup:
    """The SVG markup for `nodes` (in any order), with `title` leading its accessible label."""
    nodes = list(nodes)
    level = levels(nodes)
    columns: dict[int, list[DrawNode]] = {}
    for node in nodes:
        columns.setdefault(level[node.id], []).append(node)
    tallest = max((len(col) for col in columns.values()), default=1)
    # Boxes grow a picture strip once any node has a preview (a run whose steps have finished).
    box = NODE_HEIGHT + (THUMB_HEIGHT if any(node.thumb for node in nodes) else 0)
    width = MARGIN * 2 + len(columns) * NODE_WIDTH + max(len(columns) - 1, 0) * COLUMN_GAP
    height = MARGIN * 2 + tallest * box + (tallest - 1) * ROW_GAP
    places = {}
    for col, members in columns.items():
        offset = (tallest - len(members)) * (box + ROW_GAP) / 2
        for row, node in enumerate(members):
            places[node.id] = (MARGIN + col * (NODE_WIDTH + COLUMN_GAP),
                               MARGIN + offset + row * (box + ROW_GAP))
    # A picture, unless its nodes are links to outputs: then a group, so the links stay reachable.
    role = "group" if any(node.href for node in nodes) else "img"
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="dag" role="{role}" '
        f'aria-label="{escape(_summary(title, nodes))}" viewBox="0 0 {width} {height}" '
        f'width="{width}" height="{height}">',
        '<defs><marker id="dag-arrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" '
        'markerHeight="7" orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" fill="#8893a2"/>'
        "</marker></defs>",
    ]
    parts += [_edge(places[parent], places[node.id], box) for node in nodes
              for parent in node.inputs if parent in places]
    parts += [_box(node, *places[node.id], box) for node in nodes]
    parts.append("</svg>")
    return Markup("".join(parts))  # noqa: S704 - every user string above went through escape()


def _summary(title: str, nodes: list[DrawNode]) -> str:
    counts = Counter(node.state for node in nodes if node.state)
    states = ", ".join(f"{count} {state}" for state, count in sorted(counts.items()))
    noun = "node" if len(nodes) == 1 else "nodes"
    return f"{title}: {len(nodes)} {noun}" + (f" ({states})" if states else "")


def _edge(start: tuple[float, float], end: tuple[float, float], box: float = NODE_HEIGHT) -> str:
    x1, y1 = start[0] + NODE_WIDTH, start[1] + box / 2
    x2, y2 = end[0] - 2, end[1] + box / 2
    bend = (x2 - x1) / 2
    return (f'<path class="dag-edge" d="M{x1:g},{y1:g} C{x1 + bend:g},{y1:g} {x2 - bend:g},{y2:g} '
            f'{x2:g},{y2:g}" fill="none" stroke="#8893a2" stroke-width="1.5" marker-end="url(#dag-arrow)"/>')


def _box(node: DrawNode, x: float, y: float, box: float = NODE_HEIGHT) -> str:
    state = node.state if node.state in COLOURS else "none"
    fill, stroke = COLOURS[state]
    caption = node.type + (f" · {node.state}" if node.state else "")
    if node.progress:
        caption = f"{node.type} · {node.progress}"
    tooltip = f"{node.id} ({node.type})" + (f": {node.state}" if node.state else "")
    filling = state == "running" and node.percent is not None
    if filling:
        done = node.progress or f"{node.percent:.0f} %"
        caption = f"{node.type} · {done}" + (f" · {duration(node.eta)} left" if node.eta else "")
        if node.percent:
            tooltip += f", {node.percent:.1f} %" + (f", about {duration(node.eta)} left" if node.eta else "")
    if node.progress:
        tooltip += f", {node.progress}"
    if node.detail:
        tooltip += f" — {node.detail}"
    fill_bar = ""
    if filling:
        share = max(0.0, min(float(node.percent or 0), 100.0)) / 100
        fill_bar = (f'<rect class="dag-fill" width="{NODE_WIDTH * share:.1f}" height="{box:g}" rx="7" '
                    f'fill="{FILL_COLOUR}"/>')
    picture = ""
    if box > NODE_HEIGHT:
        inner_w, inner_h = NODE_WIDTH - 2 * THUMB_PAD, box - NODE_HEIGHT - THUMB_PAD
        picture = (f'<image class="dag-thumb" href="{escape(node.thumb)}" x="{THUMB_PAD}" y="{NODE_HEIGHT - 4}" '
                   f'width="{inner_w}" height="{inner_h}" preserveAspectRatio="xMidYMid meet"/>' if node.thumb else
                   f'<rect x="{THUMB_PAD}" y="{NODE_HEIGHT - 4}" width="{inner_w}" height="{inner_h}" rx="4" '
                   'fill="#ffffff" fill-opacity=".55"/>')
    body = (
        f"<title>{escape(tooltip)}</title>"
        f'<rect width="{NODE_WIDTH}" height="{box:g}" rx="7" fill="{fill}"/>{fill_bar}{picture}'
        f'<rect width="{NODE_WIDTH}" height="{box:g}" rx="7" fill="none" stroke="{stroke}" '
        f'stroke-width="{3 if state in ("running", "failed") else 1.5}"/>'
        f'<text x="10" y="19" font-size="13" font-weight="600" fill="#1d2126">{escape(_clip(node.id))}</text>'
        f'<text x="10" y="36" font-size="11" fill="#5b6470">{escape(_clip(caption, CAPTION_CHARS))}</text>'
    )
    if node.href:  # a click opens the step's output (its media page: picture, player or sound)
        label = f"Open the output of {node.id}"
        body = f'<a class="dag-link" href="{escape(node.href)}" aria-label="{escape(label)}">{body}</a>'
    return (
        f'<g class="dag-node state-{escape(state)}" transform="translate({x:g},{y:g})"'
        + (f' data-percent="{node.percent:.1f}"' if filling else "") + f">{body}</g>"
    )


def duration(seconds: float | None) -> str:
    """`42 s`, `3 min`, `1 h 5 min` for an ETA."""
    whole = round(float(seconds or 0))
    if whole < 60:
        return f"{whole} s"
    if whole < 3600:
        return f"{round(whole / 60)} min"
    return f"{whole // 3600} h {round(whole % 3600 / 60)} min"


def _clip(text: str, most: int = LABEL_CHARS) -> str:
    return text if len(text) <= most else text[: most - 1] + "…"


#: Step states that count a chunk as done, and states that show a chunked node as working.
CHUNK_DONE, CHUNK_WORKING = ("completed", "cached"), ("running", "queued")


def from_steps(steps: Iterable[Mapping]) -> list[DrawNode]:
    """Boxes for a run's steps (`RunService.steps_view`), each in its live state.

    A chunked step (engine/chunks.py) is one box: its chunks are folded into their join, which
    shows how many chunks are done and is running while any chunk is.
    """
    steps = list(steps)
    chunks: dict[str, list[Mapping]] = {}
    for s in steps:
        if s.get("chunk"):
            chunks.setdefault(str(s["chunk"]["of"]), []).append(s)
    nodes = []
    for s in steps:
        if s.get("chunk"):
            continue
        step_id, state = str(s["step_id"]), str(s.get("status") or "pending")
        inputs = tuple(s.get("depends_on") or s.get("inputs") or ())
        parts, progress, detail = chunks.get(step_id, []), "", str(s.get("error") or "")
        live = s.get("progress") or {}
        percent, eta = live.get("percent"), live.get("eta")
        if parts:
            inputs = tuple(i for i in inputs if i not in {str(p["step_id"]) for p in parts})
            states = [str(p.get("status") or "pending") for p in parts]
            done = sum(1 for x in states if x in CHUNK_DONE)
            progress = f"{done}/{len(parts)} chunks"
            percent = sum(100.0 if x in CHUNK_DONE else float((p.get("progress") or {}).get("percent") or 0)
                          for x, p in zip(states, parts, strict=True)) / len(parts)
            eta = None
            failed = next((p for p in parts if p.get("status") == "failed"), None)
            if failed is not None and not detail:
                state, detail = "failed", f"chunk {failed['step_id']}: {failed.get('error') or ''}"
            elif state in ("pending", "queued") and any(x in CHUNK_WORKING for x in states):
                state = "running" if "running" in states else "queued"
        thumb, href = _preview(s)
        nodes.append(DrawNode(step_id, str(s.get("type") or ""), inputs, state, detail,
                              percent=percent, eta=eta, progress=progress, thumb=thumb, href=href))
    return nodes


def _preview(step: Mapping) -> tuple[str, str]:
    """(thumbnail URL, output page URL) of a step whose output exists, or the last rendered frame
    of a running one (`preview_url`); empty otherwise."""
    if step.get("status") == "running" and step.get("preview_url"):
        return str(step["preview_url"]), ""
    digest = str(step.get("output") or "")
    if step.get("status") not in ("cached", "completed") or not digest:
        return "", ""
    return f"/media/{digest}/thumb", f"/media/{digest}"


def from_dag(dag: Mapping, *, state: str | None = None) -> list[DrawNode]:
    """Boxes for a recipe's DAG as plain data (`{"nodes": [...], "output": id}`)."""
    return [DrawNode(str(n["id"]), str(n.get("type") or ""), tuple(n.get("inputs") or ()), state)
            for n in dag.get("nodes", [])]
