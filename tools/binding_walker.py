"""Run in a child interpreter by tools/binding_import.py: imports modules and prints their names as JSON.

``python -I -S binding_walker.py '[[import name, prefix], ...]' '[path, ...]'`` puts the paths first on
``sys.path``, imports each module and walks it with ``dir()``/``inspect``; stdout is
``{"api": {name: kind}, "keywords": [...], "versions": {module: __version__}, "failed": {module: error}}``.
Standard library only (it runs with ``-I -S``, so nothing installed can interfere).
"""

import importlib
import inspect
import json
import re
import sys
import types
import warnings

SKIP_DUNDERS = {
    "__doc__", "__module__", "__dict__", "__weakref__", "__qualname__", "__annotations__", "__slots__",
    "__members__", "__entries", "__pybind11_module_local_v4__", "__firstlineno__", "__static_attributes__",
    "__dictoffset__", "__weakrefoffset__", "__basicsize__", "__itemsize__", "__flags__", "__mro__", "__base__",
    "__bases__", "__name__", "__text_signature__", "__abstractmethods__", "__orig_bases__", "__parameters__",
    "__slotnames__",
}


class Walk:
    """The names found so far: ``api`` ({name: kind}) and ``keywords`` ({"Owner.method(keyword)"})."""

    def __init__(self):
        self.api, self.keywords, self.versions, self.failed = {}, set(), {}, {}

    def add_keywords(self, func, name, attr):
        for key in params_of(func, attr):
            self.keywords.add(f"{name}({key})")


def split_top_level(text):
    """``a: int, b: List[int] = [1, 2]`` -> ``["a: int", "b: List[int] = [1, 2]"]``."""
    parts, depth, current, quote = [], 0, "", None
    for ch in text + ",":
        if quote:
            current += ch
            if ch == quote:
                quote = None
        elif ch in "'\"":
            quote = ch
            current += ch
        elif ch in "([{<":
            depth += 1
            current += ch
        elif ch in ")]}>":
            depth -= 1
            current += ch
        elif ch == "," and depth == 0:
            parts.append(current.strip())
            current = ""
        else:
            current += ch
    return parts


def docstring_params(doc, name):
    """Keyword names of the ``name(...)`` signature lines of a pybind11 docstring (every overload)."""
    found = set()
    for line in doc.splitlines():
        match = re.match(r"^\s*(?:\d+\.\s+)?" + re.escape(name) + r"\((.*)\)\s*(?:->.*)?$", line)
        if not match:
            continue
        accepted = []
        for part in split_top_level(match.group(1)):
            if part == "/":
                accepted = []  # everything before "/" is positional-only
                continue
            if part.startswith("*"):
                continue
            key = re.split(r"[:=]", part, 1)[0].strip()
            if re.fullmatch(r"[A-Za-z_]\w*", key) and key != "self" and not re.fullmatch(r"arg\d+", key):
                accepted.append(key)
        found.update(accepted)
    return found


def params_of(func, name):
    """Keyword names the call accepts; from inspect, else from the pybind11 docstring."""
    try:
        sig = inspect.signature(func)
    except (TypeError, ValueError):
        sig = None
    if sig is not None:
        return {
            p.name for p in sig.parameters.values()
            if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) and p.name != "self"
        }
    return docstring_params(getattr(func, "__doc__", None) or "", name)


def static_lookup(cls, attr):
    for klass in cls.__mro__:
        if attr in vars(klass):
            return klass, vars(klass)[attr]
    return None, None


def own(cls, modname):
    return str(getattr(cls, "__module__", "")).split(".")[0] == modname.split(".")[0]


def is_instance(value, cls):
    try:
        return isinstance(value, cls)
    except TypeError:
        return False


def skipped(cls, attr, owner):
    """Private names, class internals and what every object has (object's, type's, builtins')."""
    if attr.startswith("_") and not (attr.startswith("__") and attr.endswith("__")):
        return True
    if attr in SKIP_DUNDERS or owner is object or owner is type:
        return True
    return attr.startswith("__") and (
        owner is None or owner.__module__ == "builtins" or owner.__name__ == "pybind11_object"
    )


def walk_member(walk, cls, attr, prefix, seen, depth, modname, members):
    owner, raw = static_lookup(cls, attr)
    if skipped(cls, attr, owner):
        return
    name = f"{prefix}.{attr}"
    try:
        value = getattr(cls, attr)
    except Exception:
        value = raw
    if attr.startswith("__") and (attr.startswith("__pybind11") or not callable(value)):
        return  # pybind11's internals, class-level data such as __hash__ = None
    if attr in members or (is_instance(value, cls) and not isinstance(raw, (property, staticmethod, classmethod))):
        walk.api[name] = "enum_member"
    elif isinstance(raw, property):
        walk.api[name] = "readonly_property" if raw.fset is None else "property"
    elif type(raw).__name__ in ("getset_descriptor", "member_descriptor"):
        walk.api[name] = "property"
    elif isinstance(raw, (staticmethod, classmethod)):
        walk.api[name] = "staticmethod"
        walk.add_keywords(value, name, attr)
    elif isinstance(value, type):
        walk_class(walk, value, name, seen, depth + 1, modname)
    elif callable(value):
        walk.api[name] = "method"
        walk.add_keywords(value, name, attr)
    else:
        walk.api[name] = "attribute"


def walk_class(walk, cls, prefix, seen, depth, modname):
    if not own(cls, modname):  # typing.Any, enum.IntEnum ... imported by the module
        walk.api[prefix] = "class"
        return
    members = getattr(cls, "__members__", None)
    members = set(members) if isinstance(members, dict) else set()
    walk.api[prefix] = "enum" if members else "class"
    init = vars(cls).get("__init__") or getattr(cls, "__init__", None)
    if init is not None and init is not object.__init__:
        walk.add_keywords(init, prefix, "__init__")
    if depth > 3 or cls in seen:
        return
    for attr in dir(cls):
        walk_member(walk, cls, attr, prefix, seen | {cls}, depth, modname, members)


def walk_module(walk, modname, prefix):
    try:
        module = importlib.import_module(modname)
    except Exception as error:
        walk.failed[modname] = repr(error)
        return
    if prefix:
        walk.api[prefix] = "module"
    walk.versions[modname] = getattr(module, "__version__", None)
    dot = prefix + "." if prefix else ""
    for attr in dir(module):
        if attr.startswith("_") and attr != "__version__":
            continue
        value = getattr(module, attr)
        name = dot + attr
        if isinstance(value, types.ModuleType):
            continue  # ctypes, os, sys ... imported by __init__.py
        if isinstance(value, type):
            walk_class(walk, value, name, frozenset(), 0, modname)
        elif callable(value):
            walk.api[name] = "function"
            walk.add_keywords(value, name, attr)
        else:
            walk.api[name] = "attribute"


def main():
    roots = json.loads(sys.argv[1])  # [[import name, prefix], ...]
    sys.path[:0] = json.loads(sys.argv[2])  # where the packages lie
    warnings.simplefilter("ignore")
    walk = Walk()
    for modname, prefix in roots:
        walk_module(walk, modname, prefix)
    print(json.dumps({"api": walk.api, "keywords": sorted(walk.keywords), "versions": walk.versions, "failed": walk.failed}))


if __name__ == "__main__":
    main()
