"""JSON pointers (RFC 6901) into a schema: resolved as a `$ref` names them, and kept as links
while a walk goes down (rendered only when a problem is reported)."""

from __future__ import annotations

from urllib.parse import unquote

Path = tuple  # (parent path, key): a pointer as links


def escape(name: object) -> str:
    return str(name).replace("~", "~0").replace("/", "~1")


def resolve(root: object, pointer: str) -> object | None:
    """The value a JSON pointer (RFC 6901, percent-encoded as in a URI fragment) names."""
    node = root
    if not pointer:
        return node
    for part in unquote(pointer).split("/")[1:]:
        name = part.replace("~1", "/").replace("~0", "~")
        if isinstance(node, dict):
            if name not in node:
                return None
            node = node[name]
        elif isinstance(node, list) and name.isascii() and name.isdigit() \
                and len(name) < 12 and int(name) < len(node):
            node = node[int(name)]
        else:
            return None
    return node


def pointer(path: Path | None) -> str:
    """The pointer a path of links names ("" for the root)."""
    parts: list[str] = []
    while path is not None:
        path, key = path
        parts.append(escape(key))
    return "".join(f"/{part}" for part in reversed(parts))


def show(value: object) -> str:
    """A value for a message, cut short (a huge integer as its order of magnitude: repr
    refuses one of more than 4300 digits)."""
    if type(value) is int and value.bit_length() > 64:  # type: ignore[union-attr]
        return f"about 10^{int(value.bit_length() * 0.30103)}"  # type: ignore[union-attr]
    text = repr(value)
    return text if len(text) <= 24 else text[:20] + "..."
