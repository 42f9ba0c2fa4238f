"""pycuda's names, read from its source distribution: Boost.Python registrations and Python modules.

PyPI has only pycuda's sdist, which needs CUDA to build; so its C++ registrations
(``src/wrapper/wrap_cudadrv.cpp``, ``mempool.cpp``) and its Python modules (``pycuda/*.py``) are parsed
instead. What is and is not found is in tools/binding_names.py's docstring.
"""

from __future__ import annotations

import ast
import contextlib
import re
import tarfile

from tools.package_index import Index, download, select_sdist, source_of

PROJECT = "pycuda"
_CPP_SOURCES = ("src/wrapper/wrap_cudadrv.cpp", "src/wrapper/mempool.cpp")
_STRING = r'"((?:\\.|[^"\\])*)"'


def pycuda_sdist(index: Index, version: str):
    """The cached sdist of pycuda ``version`` (downloaded if needed)."""
    return download(index, PROJECT, version, select_sdist, "sdist.tar.gz")


def _read_sources(sdist) -> dict[str, str]:
    """``{path inside the sdist: text}`` of the C++ registrations and the Python modules."""
    sources: dict[str, str] = {}
    with tarfile.open(sdist, "r:gz") as archive:
        for member in archive.getmembers():
            parts = member.name.split("/", 1)
            if len(parts) != 2 or not member.isfile():
                continue
            relative = parts[1]
            if relative in (*_CPP_SOURCES, "pycuda/__init__.py") or re.fullmatch(r"pycuda/[A-Za-z]\w*\.py", relative):
                sources[relative] = archive.extractfile(member).read().decode("utf-8", "replace")
    if _CPP_SOURCES[0] not in sources or "pycuda/driver.py" not in sources:
        raise RuntimeError(f"{sdist}: no {_CPP_SOURCES[0]} or pycuda/driver.py")
    return sources


def extract_pycuda(index: Index, version: str) -> dict:
    """The record of pycuda ``version``: names prefixed by module (``driver.mem_alloc``)."""
    sdist = pycuda_sdist(index, version)
    sources = _read_sources(sdist)
    api: dict[str, str] = {}
    keywords: set[str] = set()
    parse_boost_python([sources[p] for p in _CPP_SOURCES if p in sources], "driver", api, keywords)
    for relative, text in sorted(sources.items()):
        if relative.endswith(".py") and not relative.endswith("__init__.py"):
            parse_python_module(text, relative[len("pycuda/") : -len(".py")], api, keywords)
    module_version = pycuda_version(sources.get("pycuda/__init__.py", ""))
    if module_version != version:
        raise RuntimeError(f"{sdist}: pycuda.VERSION_TEXT is {module_version!r}, expected {version!r}")
    return {
        "api": api,
        "keywords": sorted(keywords),
        "module_version": module_version,
        "source": {"package": PROJECT, **source_of(sdist)},
    }


def pycuda_version(init_text: str) -> str | None:
    """``pycuda.VERSION_TEXT``, from ``VERSION = (2026, 1)`` and ``VERSION_STATUS = ""``."""
    values = {}
    for node in ast.parse(init_text).body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            with contextlib.suppress(ValueError):
                values[node.targets[0].id] = ast.literal_eval(node.value)
    if "VERSION" not in values:
        return None
    return ".".join(str(x) for x in values["VERSION"]) + str(values.get("VERSION_STATUS", ""))


# --------------------------------------------------------------------------------------------------
# C++: a tokenizer good enough for Boost.Python registration code


def strip_cpp(text: str) -> str:
    """Comments removed, object-like macros expanded, other preprocessor lines dropped (all #if branches kept)."""
    text = re.sub(
        r'//[^\n]*|/\*.*?\*/|("(?:\\.|[^"\\\n])*"|\'(?:\\.|[^\'\\\n])*\')',
        lambda m: m.group(1) or (" " if m.group(0).startswith("/*") else ""),
        text,
        flags=re.S,
    )
    text = text.replace("\\\n", " ")  # join continuation lines
    macros: dict[str, list[str]] = {}
    kept = []
    for line in text.split("\n"):
        stripped = line.strip()
        if stripped.startswith("#"):
            match = re.match(r"#\s*define\s+(\w+)\b(?!\()\s*(.*)", stripped)
            if match and match.group(1).isupper():
                macros.setdefault(match.group(1), [])
                if match.group(2).strip() and match.group(2) not in macros[match.group(1)]:
                    macros[match.group(1)].append(match.group(2))
            continue
        kept.append(line)
    text = "\n".join(kept)
    for _ in range(3):  # macros using macros
        for name, bodies in macros.items():
            if re.search(r"\b%s\b" % name, text) and not re.search(r"\b%s\s*\(" % name, text):
                text = re.sub(r"\b%s\b" % name, lambda _m: " ".join(bodies), text)
    return _expand_pycuda_macros(text)


def _expand_pycuda_macros(text: str) -> str:
    """pycuda's function-like registration macros (src/wrapper/wrap_helpers.hpp), written out."""
    text = re.sub(r"\bDEF_SIMPLE_METHOD(?:_WITH_ARGS)?\s*\(\s*(\w+)", r'def("\1"', text)
    text = re.sub(r"\bDEF_SIMPLE_FUNCTION(?:_WITH_ARGS)?\s*\(\s*(\w+)", r'py::def("\1"', text)
    text = re.sub(r"\bDEF_SIMPLE_RO_MEMBER\s*\(\s*(\w+)", r'def_readonly("\1"', text)
    text = re.sub(r"\bDEF_SIMPLE_RW_MEMBER\s*\(\s*(\w+)", r'def_readwrite("\1"', text)
    text = re.sub(r"\bENUM_VALUE\s*\(\s*(\w+)", r'value("\1"', text)
    text = re.sub(r"\bDECLARE_EXC\s*\(\s*(\w+)\s*,[^;]*?\)\s*;", r'py::scope().attr("\1") = EXCEPTION;', text)
    return text


def _matching(text: str, start: int, open_: str = "(", close: str = ")") -> int:
    """Index just past the bracket that closes the one at ``start``."""
    depth, i, quote = 0, start, None
    while i < len(text):
        ch = text[i]
        if quote:
            if ch == "\\":
                i += 1
            elif ch == quote:
                quote = None
        elif ch == '"':
            quote = ch
        elif ch == open_:
            depth += 1
        elif ch == close:
            depth -= 1
            if depth == 0:
                return i + 1
        i += 1
    raise ValueError(f"unbalanced {open_!r} at {start}")


def _statements(text: str) -> list[str]:
    """Split at ``;``, ``{`` and ``}`` outside parentheses and strings."""
    out, depth, quote, current = [], 0, None, []
    i = 0
    while i < len(text):
        ch = text[i]
        current.append(ch)
        if quote:
            if ch == "\\" and i + 1 < len(text):
                current.append(text[i + 1])
                i += 1
            elif ch == quote:
                quote = None
        elif ch == '"':
            quote = ch
        elif ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        elif ch in ";{}" and depth == 0:
            out.append("".join(current[:-1]).strip())
            current = []
        i += 1
    out.append("".join(current).strip())
    return [s for s in out if s]


def _call_keywords(arguments: str) -> list[str]:
    names = re.findall(r"\barg\s*\(\s*" + _STRING, arguments)
    for group in re.findall(r"\bargs\s*\(([^()]*)\)", arguments):
        names += re.findall(_STRING, group)
    return [n for n in names if n != "self"]


def _chain_calls(statement: str) -> list[tuple[str, str]]:
    """``[(method, argument text)]`` of the ``.name(...)`` calls of a registration chain."""
    calls = []
    for match in re.finditer(r"\.\s*(\w+)\s*\(", statement):
        end = _matching(statement, match.end() - 1)
        calls.append((match.group(1), statement[match.end() : end - 1]))
    return calls


# --------------------------------------------------------------------------------------------------
# Boost.Python registrations


_OPERATORS = {"==": "__eq__", "!=": "__ne__", "<": "__lt__", "<=": "__le__", ">": "__gt__", ">=": "__ge__"}
_MEMBER_KINDS = {
    "staticmethod": "staticmethod",
    "add_property": "property",
    "add_static_property": "property",
    "def_readwrite": "property",
    "def_readonly": "readonly_property",
    "value": "enum_member",
    "attr": "attribute",
}


def _register_def(owner: str, name: str | None, arguments: str, api: dict, keywords: set) -> None:
    """One ``.def(...)`` of a class: a method (``"name"`` or an operator) or a constructor (``init<...>``)."""
    operator = re.fullmatch(
        r"\s*(?:py::|boost::python::)?self\s*(==|!=|<=|>=|<|>)\s*(?:py::|boost::python::)?self\s*", arguments
    )
    if operator:
        name = _OPERATORS[operator.group(1)]
    if name:
        member = f"{owner}.{name}"
        api.setdefault(member, "method")
        target = owner if name == "__init__" else member
        keywords.update(f"{target}({k})" for k in _call_keywords(arguments))
    elif re.match(r"\s*(?:py::|boost::python::)?init\s*<", arguments):
        keywords.update(f"{owner}({k})" for k in _call_keywords(arguments))


def _register_chain(owner: str, calls: list[tuple[str, str]], api: dict, keywords: set) -> None:
    for method, arguments in calls:
        first = re.match(r"\s*" + _STRING, arguments)
        name = first.group(1) if first else None
        if method == "def":
            _register_def(owner, name, arguments, api, keywords)
        elif method in _MEMBER_KINDS and name:
            api[f"{owner}.{name}"] = _MEMBER_KINDS[method]


def _helper_templates(text: str) -> dict[str, list[tuple[str, str]]]:
    """Helper templates that add members to the wrapper they get:
    ``void expose_x(W &wrapper) { wrapper.def(...); }`` -> ``{"expose_x": [("def", ...)]}``."""
    helpers: dict[str, list[tuple[str, str]]] = {}
    for match in re.finditer(r"\b(\w+)\s*\(\s*\w+\s*&\s*(\w+)\s*\)\s*\{", text):
        body = text[match.end() - 1 : _matching(text, match.end() - 1, "{", "}")]
        calls = []
        for statement in _statements(body[1:-1]):
            if re.match(r"%s\b" % match.group(2), statement):
                calls += _chain_calls(statement)
        if calls:
            helpers[match.group(1)] = calls
    return helpers


class _BoostPython:
    """The registrations of one Python module, gathered over several C++ files."""

    def __init__(self, module: str, api: dict, keywords: set):
        self.module, self.api, self.keywords = module, api, keywords
        self.cpp_classes: dict[str, str] = {}  # C++ type -> Python class, for py::bases<...>
        self.inherits: list[tuple[str, str]] = []
        self.aliases: list[tuple[str, str]] = []

    def parse(self, text: str) -> None:
        text = strip_cpp(text)
        helpers = _helper_templates(text)
        variables: dict[str, str] = {}  # C++ variable holding a class_ -> Python class
        typedef = None
        for statement in _statements(text):
            alias = re.match(r"typedef\s+(.+?)\s+cl$", statement, re.S)
            if alias:
                typedef = re.sub(r"\s+", "", alias.group(1))
            elif not (
                self._class(statement, typedef, variables)
                or self._enum(statement)
                or self._function(statement)
                or self._scope_attribute(statement, variables)
            ):
                self._chained(statement, variables, helpers)

    def _class(self, statement: str, typedef: str | None, variables: dict) -> bool:
        klass = re.search(r"\bclass_\s*<", statement)
        if not klass:
            return False
        after = _matching(statement, klass.end() - 1, "<", ">")
        rest = statement[after:]
        named = re.match(r"\s*(\w+)?\s*\(\s*" + _STRING, rest)
        if not named:
            return True
        owner = f"{self.module}.{named.group(2)}"
        self.api[owner] = "class"
        template = statement[klass.end() : after - 1]
        wrapped = re.sub(r"\s+", "", template.split(",")[0])
        self.cpp_classes[typedef if wrapped == "cl" and typedef else wrapped] = owner
        self.inherits += [(owner, base) for base in re.findall(r"\bbases\s*<\s*([\w:]+)\s*>", template)]
        if named.group(1):
            variables[named.group(1)] = owner
        open_at = after + rest.index("(")
        close_at = _matching(statement, open_at)
        self.keywords.update(f"{owner}({k})" for k in _call_keywords(statement[open_at:close_at]))
        _register_chain(owner, _chain_calls(statement[close_at:]), self.api, self.keywords)
        return True

    def _enum(self, statement: str) -> bool:
        enum = re.search(r"\benum_\s*<", statement)
        if not enum:
            return False
        after = _matching(statement, enum.end() - 1, "<", ">")
        named = re.match(r"\s*\(\s*" + _STRING, statement[after:])
        if named:
            owner = f"{self.module}.{named.group(1)}"
            self.api[owner] = "enum"
            chain = statement[after + statement[after:].index(")") + 1 :]
            _register_chain(owner, _chain_calls(chain), self.api, self.keywords)
        return True

    def _function(self, statement: str) -> bool:
        function = re.match(r"(?:py::|boost::python::)?def\s*\(\s*" + _STRING, statement)
        if not function:
            return False
        name = f"{self.module}.{function.group(1)}"
        self.api[name] = "function"
        self.keywords.update(f"{name}({k})" for k in _call_keywords(statement))
        return True

    def _scope_attribute(self, statement: str, variables: dict) -> bool:
        scope = re.match(
            r"(?:py::|boost::python::)?scope\s*\(\s*\)\s*\.\s*attr\s*\(\s*" + _STRING + r"\s*\)\s*=\s*(\w+)", statement
        )
        if not scope:
            return False
        name, value = f"{self.module}.{scope.group(1)}", scope.group(2)
        if value in variables:  # an alias of a class: HostAllocation = PagelockedHostAllocation
            self.api[name] = "class"
            self.aliases.append((name, variables[value]))
        else:
            self.api[name] = "exception" if value == "EXCEPTION" else "attribute"
        return True

    def _chained(self, statement: str, variables: dict, helpers: dict) -> None:
        """``wrp.def(...)`` on a class variable, or ``expose_x(wrp)`` of a helper template."""
        chained = re.match(r"(\w+)\s*\.", statement)
        if chained and chained.group(1) in variables:
            calls = _chain_calls(statement[len(chained.group(1)) :])
            _register_chain(variables[chained.group(1)], calls, self.api, self.keywords)
            return
        helper = re.match(r"(\w+)\s*\(\s*(\w+)\s*\)$", statement)
        if helper and helper.group(1) in helpers and helper.group(2) in variables:
            _register_chain(variables[helper.group(2)], helpers[helper.group(1)], self.api, self.keywords)

    def finish(self) -> None:
        for owner, base in self.inherits:  # pycuda's hierarchy is shallow and declared bases-first
            if base in self.cpp_classes:
                copy_members(self.cpp_classes[base], owner, self.api, self.keywords, constructor=False)
        for name, source in self.aliases:
            copy_members(source, name, self.api, self.keywords, constructor=True)


def parse_boost_python(texts: list[str], module: str, api: dict, keywords: set) -> None:
    """Names registered by Boost.Python code (pycuda's style of it), into ``api`` as ``module.Name``."""
    parser = _BoostPython(module, api, keywords)
    for text in texts:
        parser.parse(text)
    parser.finish()


def copy_members(source: str, target: str, api: dict, keywords: set, constructor: bool) -> None:
    """``source``'s members (and their keywords) onto ``target``; its constructor keywords too for an alias."""
    for key, kind in list(api.items()):
        if key.startswith(source + "."):
            api.setdefault(target + key[len(source) :], kind)
    prefixes = (source + ".", source + "(") if constructor else (source + ".",)
    for key in list(keywords):
        if key.startswith(prefixes):
            keywords.add(target + key[len(source) :])


# --------------------------------------------------------------------------------------------------
# Python modules


def _public(name: str) -> bool:
    return not name.startswith("_") or (name.startswith("__") and name.endswith("__"))


def _function_keywords(node: ast.FunctionDef | ast.AsyncFunctionDef, owner: str, method: bool, keywords: set) -> None:
    arguments = node.args
    names = [a.arg for a in arguments.args] + [a.arg for a in arguments.kwonlyargs]
    if method and names and arguments.args and names[0] in ("self", "cls") and not _is_static(node):
        names = names[1:]
    keywords.update(f"{owner}({n})" for n in names if n != "self")


def _instance_attributes(init: ast.FunctionDef | ast.AsyncFunctionDef, owner: str, api: dict) -> None:
    """``self.stdout = ...`` in ``__init__``: attributes of ``owner``."""
    for node in ast.walk(init):
        if isinstance(node, (ast.Assign, ast.AnnAssign)):
            for target in _targets(node):
                if (
                    isinstance(target, ast.Attribute)
                    and isinstance(target.value, ast.Name)
                    and target.value.id == "self"
                    and _public(target.attr)
                ):
                    api.setdefault(f"{owner}.{target.attr}", "attribute")


def _python_class(statement: ast.ClassDef, module: str, api: dict, keywords: set) -> None:
    owner = f"{module}.{statement.name}"
    api[owner] = "class"
    for base in statement.bases:  # members inherited from a class of the same module
        if isinstance(base, ast.Name) and f"{module}.{base.id}" in api:
            copy_members(f"{module}.{base.id}", owner, api, keywords, constructor=False)
    for item in statement.body:
        if isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef)):
            if item.name == "__init__":
                _function_keywords(item, owner, True, keywords)
                _instance_attributes(item, owner, api)
            elif _public(item.name):
                kind = "property" if any(_decorator_name(d) == "property" for d in item.decorator_list) else "method"
                api[f"{owner}.{item.name}"] = kind
                _function_keywords(item, f"{owner}.{item.name}", True, keywords)
        elif isinstance(item, (ast.Assign, ast.AnnAssign)):
            for target in _targets(item):
                if isinstance(target, ast.Name) and _public(target.id):
                    api[f"{owner}.{target.id}"] = "attribute"


def _python_toplevel(statement: ast.stmt, module: str, api: dict, keywords: set, classes: set) -> None:
    if isinstance(statement, (ast.FunctionDef, ast.AsyncFunctionDef)) and _public(statement.name):
        name = f"{module}.{statement.name}"
        api[name] = "function"
        _function_keywords(statement, name, False, keywords)
    elif isinstance(statement, ast.ClassDef) and _public(statement.name):
        classes.add(statement.name)
        _python_class(statement, module, api, keywords)
    elif isinstance(statement, (ast.Assign, ast.AnnAssign)):
        for target in _targets(statement):
            if isinstance(target, ast.Name) and _public(target.id) and target.id not in ("__copyright__", "__license__"):
                api.setdefault(f"{module}.{target.id}", "attribute")
    elif isinstance(statement, ast.ImportFrom) and (statement.module or "").startswith("pycuda"):
        for alias in statement.names:  # re-exports of pycuda names (not `import *`, not third-party)
            if alias.name != "*" and _public(alias.asname or alias.name):
                api.setdefault(f"{module}.{alias.asname or alias.name}", "attribute")


def _setattr_loop_members(node: ast.For, classes: set) -> list[tuple[str, str]]:
    """``for name in ["a", "b"]: setattr(Class, name, ...)`` -> ``[("Class", "a"), ("Class", "b")]``."""
    if not (
        isinstance(node.target, ast.Name)
        and isinstance(node.iter, (ast.List, ast.Tuple))
        and all(isinstance(e, ast.Constant) and isinstance(e.value, str) for e in node.iter.elts)
    ):
        return []
    found = []
    for call in ast.walk(node):
        if (
            isinstance(call, ast.Call)
            and isinstance(call.func, ast.Name)
            and call.func.id == "setattr"
            and len(call.args) >= 2
            and isinstance(call.args[0], ast.Name)
            and call.args[0].id in classes
            and isinstance(call.args[1], ast.Name)
            and call.args[1].id == node.target.id
        ):
            found += [(call.args[0].id, e.value) for e in node.iter.elts if _public(e.value)]
    return found


def _attached_members(tree: ast.AST, module: str, api: dict, classes: set) -> None:
    """Methods attached to classes anywhere: ``Class.attr = ...`` and ``setattr`` over a literal list."""
    for node in ast.walk(tree):
        if isinstance(node, ast.For):
            for owner, name in _setattr_loop_members(node, classes):
                api.setdefault(f"{module}.{owner}.{name}", "method")
        if isinstance(node, ast.Assign):
            for target in node.targets:
                if (
                    isinstance(target, ast.Attribute)
                    and isinstance(target.value, ast.Name)
                    and target.value.id in classes
                    and _public(target.attr)
                ):
                    api.setdefault(f"{module}.{target.value.id}.{target.attr}", "method")


def parse_python_module(text: str, module: str, api: dict, keywords: set) -> None:
    """Top-level functions, classes (with their methods/attributes) and assignments of a module, and
    ``Class.attr = ...`` assignments anywhere (pycuda's ``_add_functionality()``)."""
    tree = ast.parse(text)
    classes = {name.split(".", 1)[1] for name, kind in api.items() if kind == "class" and name.startswith(module + ".")}
    api[module] = "module"
    for node in tree.body:
        for statement in _flatten_toplevel(node):
            _python_toplevel(statement, module, api, keywords, classes)
    _attached_members(tree, module, api, classes)


def _flatten_toplevel(node: ast.stmt) -> list[ast.stmt]:
    """A top-level statement, or the statements inside a top-level ``try``/``if`` (both branches)."""
    if isinstance(node, ast.Try):
        out = []
        for block in (node.body, node.orelse, node.finalbody, *[h.body for h in node.handlers]):
            for inner in block:
                out += _flatten_toplevel(inner)
        return out
    if isinstance(node, ast.If):
        return [s for inner in node.body + node.orelse for s in _flatten_toplevel(inner)]
    return [node]


def _targets(node: ast.Assign | ast.AnnAssign) -> list[ast.expr]:
    targets = node.targets if isinstance(node, ast.Assign) else [node.target]
    out = []
    for target in targets:
        out += list(target.elts) if isinstance(target, ast.Tuple) else [target]
    return out


def _decorator_name(node: ast.expr) -> str:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return node.attr
    return ""


def _is_static(node: ast.FunctionDef | ast.AsyncFunctionDef) -> bool:
    return any(_decorator_name(d) == "staticmethod" for d in node.decorator_list)
