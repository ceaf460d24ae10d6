"""The three PATCH formats kube-apiserver accepts (server-side apply approximated by merge).

- JSON merge patch (RFC 7386): maps merge, ``null`` deletes, lists replace.
- JSON patch (RFC 6902): add/remove/replace/move/copy/test on JSON pointers.
- Strategic merge patch (built-in kinds only): like merge patch, but lists of objects with a
  merge key (``containers`` by ``name``, container ``ports`` by ``containerPort``, Service
  ``ports`` by ``port`` ...) merge item by item; ``$patch: delete|replace``, ``$retainKeys``,
  ``$setElementOrder/<list>`` and ``$deleteFromPrimitiveList/<list>`` directives (sent by
  ``kubectl apply``) are honoured.
"""

from __future__ import annotations

import copy
from typing import Any

from kubeemu.errors import ApiError, bad_request


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = dict(target) if isinstance(target, dict) else {}
    for key, val in patch.items():
        if val is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), val)
    return result


def _unescape(token: str) -> str:
    return token.replace("~1", "/").replace("~0", "~")


def _walk(doc: Any, pointer: str) -> tuple[Any, str | int]:
    """(parent container, last token) of a JSON pointer; raises for missing parents."""
    if not pointer.startswith("/"):
        raise _patch_error(f"invalid JSON pointer {pointer!r}")
    tokens = [_unescape(t) for t in pointer[1:].split("/")]
    cur = doc
    for tok in tokens[:-1]:
        if isinstance(cur, dict) and tok in cur:
            cur = cur[tok]
        elif isinstance(cur, list) and tok.isdigit() and int(tok) < len(cur):
            cur = cur[int(tok)]
        else:
            raise _patch_error(f"doc is missing path: {pointer!r}")
    last: str | int = tokens[-1]
    if isinstance(cur, list):
        if last == "-":
            return cur, len(cur)
        if not str(last).isdigit():
            raise _patch_error(f"invalid array index in {pointer!r}")
        last = int(last)
    return cur, last


def _patch_error(msg: str) -> ApiError:
    return ApiError(422, msg, reason="Invalid")


def _get(doc: Any, pointer: str) -> Any:
    if pointer == "":
        return doc
    parent, key = _walk(doc, pointer)
    try:
        return parent[key]
    except (KeyError, IndexError, TypeError):
        raise _patch_error(f"doc is missing path: {pointer!r}") from None


def _remove(doc: Any, pointer: str) -> Any:
    parent, key = _walk(doc, pointer)
    try:
        return parent.pop(key)
    except (KeyError, IndexError, TypeError):
        raise _patch_error(f"unable to remove nonexistent key: {pointer!r}") from None


def _add(doc: Any, pointer: str, value: Any) -> Any:
    if pointer == "":
        return value
    parent, key = _walk(doc, pointer)
    if isinstance(parent, list):
        assert isinstance(key, int)
        if key > len(parent):
            raise _patch_error(f"index out of range in {pointer!r}")
        parent.insert(key, value)
    elif isinstance(parent, dict):
        parent[key] = value
    else:
        raise _patch_error(f"doc is missing path: {pointer!r}")
    return doc


def json_patch(target: Any, ops: Any) -> Any:
    """RFC 6902; a failed ``test`` or a missing path is a 422 as in kube-apiserver."""
    if not isinstance(ops, list):
        raise bad_request("json patch must be a list of operations")
    doc = copy.deepcopy(target)
    for op in ops:
        if not isinstance(op, dict) or "op" not in op or "path" not in op:
            raise bad_request(f"invalid json patch operation: {op!r}")
        kind, path = op["op"], op["path"]
        if kind == "add":
            doc = _add(doc, path, copy.deepcopy(op.get("value")))
        elif kind == "remove":
            _remove(doc, path)
        elif kind == "replace":
            if path == "":
                doc = copy.deepcopy(op.get("value"))
                continue
            parent, key = _walk(doc, path)
            try:
                parent[key]
            except (KeyError, IndexError, TypeError):
                raise _patch_error(
                    f"replace operation does not apply: doc is missing key: {path}"
                ) from None
            parent[key] = copy.deepcopy(op.get("value"))
        elif kind == "move":
            value = _remove(doc, op["from"])
            doc = _add(doc, path, value)
        elif kind == "copy":
            doc = _add(doc, path, copy.deepcopy(_get(doc, op["from"])))
        elif kind == "test":
            if _get(doc, path) != op.get("value"):
                raise _patch_error(f"testing value {path} failed")
        else:
            raise bad_request(f"unexpected json patch operation {kind!r}")
    return doc


# Merge keys of built-in list fields, by field name; container ports and Service ports share
# the name "ports" and are told apart by the keys their items carry.
_MERGE_KEYS = {
    "containers": "name",
    "initContainers": "name",
    "ephemeralContainers": "name",
    "env": "name",
    "volumes": "name",
    "volumeMounts": "mountPath",
    "volumeDevices": "devicePath",
    "imagePullSecrets": "name",
    "conditions": "type",
    "ownerReferences": "uid",
    "hostAliases": "ip",
    "topologySpreadConstraints": "topologyKey",
    "secrets": "name",
    "finalizers": "",
}


def _merge_key(field: str, items: list[Any]) -> str | None:
    if field == "ports":
        sample = next((i for i in items if isinstance(i, dict)), {})
        return "containerPort" if "containerPort" in sample else "port"
    return _MERGE_KEYS.get(field)


def strategic_merge_patch(target: Any, patch: Any) -> Any:
    """Strategic merge patch for built-in kinds (see module docstring)."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    if patch.get("$patch") == "replace":
        return {k: copy.deepcopy(v) for k, v in patch.items() if k != "$patch"}
    if patch.get("$patch") == "delete":
        return None
    result = dict(target) if isinstance(target, dict) else {}
    orders: dict[str, list[Any]] = {}
    for key, val in patch.items():
        if key == "$patch":
            continue
        if key == "$retainKeys":
            continue
        if key.startswith("$setElementOrder/"):
            orders[key.split("/", 1)[1]] = list(val or [])
            continue
        if key.startswith("$deleteFromPrimitiveList/"):
            field = key.split("/", 1)[1]
            gone = set(map(str, val or []))
            if isinstance(result.get(field), list):
                result[field] = [v for v in result[field] if str(v) not in gone]
            continue
        if val is None:
            result.pop(key, None)
        elif isinstance(val, list) and isinstance(result.get(key), list):
            result[key] = _merge_list(key, result[key], val)
        elif isinstance(val, dict):
            merged = strategic_merge_patch(result.get(key), val)
            if merged is None:
                result.pop(key, None)
            else:
                result[key] = merged
        else:
            result[key] = copy.deepcopy(val)
    if "$retainKeys" in patch:
        keep = set(patch["$retainKeys"] or [])
        result = {k: v for k, v in result.items() if k in keep}
    for field, order in orders.items():
        if isinstance(result.get(field), list):
            result[field] = _reorder(field, result[field], order)
    return result


def _merge_list(field: str, current: list[Any], patch: list[Any]) -> list[Any]:
    key = _merge_key(field, current + patch)
    if key is None:
        return copy.deepcopy([p for p in patch if not (isinstance(p, dict) and "$patch" in p)])
    if key == "":
        # Primitive list with merge semantics (finalizers): union, keeping order.
        out = list(current)
        out += [p for p in patch if p not in out]
        return out
    out = [copy.deepcopy(c) for c in current]
    for item in patch:
        if not isinstance(item, dict):
            continue
        if item.get("$patch") == "replace" and len(item) == 1:
            return [copy.deepcopy(p) for p in patch if p is not item]
        idx = next(
            (i for i, c in enumerate(out) if isinstance(c, dict) and c.get(key) == item.get(key)),
            None,
        )
        if item.get("$patch") == "delete":
            if idx is not None:
                out.pop(idx)
            continue
        if idx is None:
            out.append(strategic_merge_patch({}, item))
        else:
            out[idx] = strategic_merge_patch(out[idx], item)
    return out


def _reorder(field: str, items: list[Any], order: list[Any]) -> list[Any]:
    key = _merge_key(field, items)
    if not key:
        return items

    def rank(item: Any) -> int:
        probe = item.get(key) if isinstance(item, dict) else item
        for i, o in enumerate(order):
            if (o.get(key) if isinstance(o, dict) else o) == probe:
                return i
        return len(order)

    return sorted(items, key=rank)
