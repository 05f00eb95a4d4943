"""JSON Patch (RFC 6902) for the embedded store's `patch(..., patch_type="json")`.

Operations add, remove, replace, move, copy and test on JSON Pointer paths (RFC 6901: `/a/b/0`, `~1`
for "/", `~0` for "~", `-` for the end of an array). Applied to a copy; the whole patch fails if one
operation does: a malformed patch is `BadRequest`, one that does not apply (a missing path, a failed
`test`) is `Invalid`, as the API server answers.
"""

from __future__ import annotations

import copy
from typing import Any

from cdi.cluster.errors import BadRequest, Invalid


def apply_json_patch(document: Any, operations: Any) -> Any:
    """The document after every operation, or an error naming the operation that failed."""
    if not isinstance(operations, list):
        raise BadRequest("a JSON patch must be a list of operations")
    result = copy.deepcopy(document)
    for index, operation in enumerate(operations):
        if not isinstance(operation, dict) or not isinstance(operation.get("op"), str) \
                or not isinstance(operation.get("path"), str):
            raise BadRequest(f"JSON patch operation {index} needs string 'op' and 'path'")
        try:
            result = _apply(result, operation)
        except (KeyError, IndexError, TypeError, ValueError) as e:
            # The API server's words (it gives no detail); the causes say which operation failed.
            raise Invalid("the server rejected our request due to an error in our request",
                          causes=[f"JSON patch operation {index} ({operation['op']} {operation['path']}): {e}"]) from e
    return result


def _apply(doc: Any, operation: dict[str, Any]) -> Any:
    op, path = operation["op"], _pointer(operation["path"])
    if op == "add":
        return _add(doc, path, copy.deepcopy(_value(operation)))
    if op == "remove":
        return _remove(doc, path)[0]
    if op == "replace":
        doc, _ = _remove(doc, path)
        return _add(doc, path, copy.deepcopy(_value(operation)))
    if op in ("move", "copy"):
        source = _pointer(operation.get("from", ""))
        value = copy.deepcopy(_get(doc, source))
        if op == "move":
            if path[:len(source)] == source and len(path) > len(source):
                raise ValueError("cannot move a value into one of its own children")
            doc, _ = _remove(doc, source)
        return _add(doc, path, value)
    if op == "test":
        if _get(doc, path) != _value(operation):
            raise ValueError("test failed: the value differs")
        return doc
    raise BadRequest(f"unknown JSON patch operation {op!r}")


def _value(operation: dict[str, Any]) -> Any:
    if "value" not in operation:
        raise BadRequest(f"JSON patch operation {operation['op']} needs a value")
    return operation["value"]


def _pointer(text: str) -> list[str]:
    if text == "":
        return []
    if not text.startswith("/"):
        raise BadRequest(f"a JSON pointer starts with '/', got {text!r}")
    return [part.replace("~1", "/").replace("~0", "~") for part in text[1:].split("/")]


def _get(doc: Any, path: list[str]) -> Any:
    for part in path:
        doc = doc[_index(doc, part)] if isinstance(doc, list) else doc[part]
    return doc


def _index(array: list[Any], part: str, *, end_ok: bool = False) -> int:
    if part == "-" and end_ok:
        return len(array)
    if not part.isdigit() or (len(part) > 1 and part.startswith("0")):
        raise ValueError(f"{part!r} is not an array index")
    index = int(part)
    if index > len(array) or (index == len(array) and not end_ok):
        raise IndexError(f"index {index} is out of range")
    return index


def _add(doc: Any, path: list[str], value: Any) -> Any:
    if not path:
        return value
    parent = _get(doc, path[:-1])
    last = path[-1]
    if isinstance(parent, list):
        parent.insert(_index(parent, last, end_ok=True), value)
    elif isinstance(parent, dict):
        parent[last] = value
    else:
        raise TypeError("the parent is neither an object nor an array")
    return doc


def _remove(doc: Any, path: list[str]) -> tuple[Any, Any]:
    if not path:
        raise ValueError("cannot remove the whole document")
    parent = _get(doc, path[:-1])
    if isinstance(parent, list):
        return doc, parent.pop(_index(parent, path[-1]))
    if isinstance(parent, dict):
        return doc, parent.pop(path[-1])
    raise TypeError("the parent is neither an object nor an array")
