"""`yaml.safe_load` with guards against hostile documents: nesting past a depth and alias bombs
are refused while parsing, before anything is built; errors carry line and column.
"""

from __future__ import annotations

import yaml

from l1web.recipes.errors import RecipeError

#: Most YAML nodes a document may expand to once aliases are followed (alias-bomb guard).
MAX_EXPANDED_NODES = 20_000
#: Deepest nesting of YAML collections accepted (a real recipe needs about six levels).
MAX_DEPTH = 64


def load_yaml(text: str) -> object:
    """`yaml.safe_load` with the nesting and alias-bomb guards and errors that carry line and column."""
    loader = None
    try:
        _check_depth(text)
        loader = yaml.SafeLoader(text)  # its reader refuses NUL and control characters at once
        root = loader.get_single_node()
        if root is None:
            raise RecipeError("recipe is empty")
        _check_expansion(root)
        return _construct(loader, root)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line, column = (mark.line + 1, mark.column + 1) if mark else (None, None)
        problem = exc.problem or exc.context or "invalid YAML"
        where = f"line {line}, column {column}: " if line else ""
        raise RecipeError(f"YAML syntax error at {where}{problem}", line=line, column=column) from None
    except yaml.YAMLError as exc:
        raise RecipeError(f"invalid YAML: {exc}") from None
    finally:
        if loader is not None:
            loader.dispose()


def _construct(loader: yaml.SafeLoader, root: yaml.Node) -> object:
    try:
        return loader.construct_document(root)
    except ValueError as exc:  # a scalar Python refuses to convert, e.g. an int of 5000 digits
        mark = root.start_mark
        raise RecipeError(f"a value in the recipe cannot be read: {str(exc)[:120]}",
                          line=mark.line + 1, column=mark.column + 1) from None


def _check_depth(text: str) -> None:
    """Refuse nesting deeper than MAX_DEPTH before composing: the composer recurses per level
    (a few kilobytes of brackets would exhaust Python's stack), the event parser does not."""
    depth = 0
    for event in yaml.parse(text, Loader=yaml.SafeLoader):
        if isinstance(event, yaml.CollectionStartEvent):
            depth += 1
            if depth > MAX_DEPTH and event.start_mark is not None:
                mark = event.start_mark
                raise RecipeError(f"recipe nests deeper than {MAX_DEPTH} levels at line {mark.line + 1}, "
                                  f"column {mark.column + 1}", line=mark.line + 1, column=mark.column + 1)
        elif isinstance(event, yaml.CollectionEndEvent):
            depth -= 1


def _check_expansion(root: yaml.Node) -> None:
    """Refuse documents whose alias-expanded size exceeds MAX_EXPANDED_NODES.

    The composed graph shares aliased nodes, so sizes are memoised per node: the check costs
    one pass over the distinct nodes however large the expansion would be.
    """
    sizes: dict[int, int] = {}

    def size(node: yaml.Node, depth: int = 0) -> int:
        if depth > MAX_DEPTH:
            raise RecipeError(f"recipe nests deeper than {MAX_DEPTH} levels")
        known = sizes.get(id(node))
        if known is not None:
            return known
        sizes[id(node)] = MAX_EXPANDED_NODES + 1  # a node reached through itself is a loop
        total = 1
        if isinstance(node, yaml.SequenceNode):
            total += sum(size(child, depth + 1) for child in node.value)
        elif isinstance(node, yaml.MappingNode):
            total += sum(size(k, depth + 1) + size(v, depth + 1) for k, v in node.value)
        if total > MAX_EXPANDED_NODES:
            mark = node.start_mark
            raise RecipeError(
                f"recipe expands to more than {MAX_EXPANDED_NODES} YAML nodes (alias bomb?) "
                f"at line {mark.line + 1}, column {mark.column + 1}",
                line=mark.line + 1, column=mark.column + 1,
            )
        sizes[id(node)] = total
        return total

    size(root)
