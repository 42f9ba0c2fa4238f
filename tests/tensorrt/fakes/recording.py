"""The recording layer under every fake: which public names our code touches, and with which keywords.

A fake object, enum or module records ``<api name>.<attribute>`` for each public attribute looked up (found
or not) and ``<api name>.<method>(<keyword>)`` for each keyword passed, in the real libraries' naming, and
keeps each looked-up callable's parameter names to compare with the real bindings' name lists. Names that
start with an underscore are the fakes' internals and are never recorded.
"""

from __future__ import annotations

import importlib.machinery
import inspect
import threading
import types


class Recorder:
    """The dotted names touched, in first-touch order (thread-safe)."""

    def __init__(self, label: str):
        self.label, self._names, self._lock = label, {}, threading.Lock()
        self.signatures: dict[str, tuple[str, ...]] = {}  # callable name -> the fake's parameter names

    def add_callable(self, name: str, value) -> None:
        """Keep the parameter names of the fake callable behind ``name``, to compare with the real ones."""
        target = value
        if isinstance(value, Namespace):
            target = object.__getattribute__(value, "_constructor")
        if isinstance(target, type):
            target = target.__init__
        if not callable(target):
            return
        try:
            parameters = inspect.signature(target).parameters.values()
        except (TypeError, ValueError):
            return
        names = tuple(p.name for p in parameters if p.name != "self" and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD))
        with self._lock:
            self.signatures.setdefault(name, names)

    def add(self, name: str) -> None:
        with self._lock:
            self._names.setdefault(name, None)

    @property
    def names(self) -> frozenset[str]:
        return frozenset(self._names)

    def sorted(self) -> list[str]:
        return sorted(self._names)

    def clear(self) -> None:
        with self._lock:
            self._names.clear()


def keyword_recording(recorder: Recorder, qualname: str, function):
    """``function``, recording ``qualname(keyword)`` for each keyword argument a caller passes."""
    if recorder is not None:
        recorder.add_callable(qualname, function)
    if not isinstance(function, (types.FunctionType, types.MethodType, types.BuiltinFunctionType)):
        return function

    def call(*args, **kwargs):
        for keyword in kwargs:
            recorder.add(f"{qualname}({keyword})")
        return function(*args, **kwargs)

    call.__wrapped__ = function
    return call


def recorded_attribute(owner, name: str, recorder: Recorder | None, api_name: str):
    """``owner.<name>``, recorded as ``<api_name>.<name>`` unless it is internal (underscore) or nothing records.

    The name is recorded before the look-up, so a name the fake lacks is recorded too and then raises.
    """
    if name.startswith("_") or recorder is None:
        return object.__getattribute__(owner, name)
    qualname = f"{api_name}.{name}"
    recorder.add(qualname)
    return keyword_recording(recorder, qualname, object.__getattribute__(owner, name))


def record_then_get(recorder: Recorder, api_name: str):
    """A ``__getattribute__`` for fakes that cannot derive from Recorded (the ctypes array types pycuda allocates)."""

    def __getattribute__(self, name):
        return recorded_attribute(self, name, recorder, api_name)

    return __getattribute__


class Recorded:
    """Records ``<api name>.<attribute>`` for every public attribute looked up (found or not), and
    ``<api name>.<method>(<keyword>)`` for every keyword argument passed to a method."""

    _api_name = "?"

    def __init__(self, recorder: Recorder | None):
        object.__setattr__(self, "_recorder", recorder)

    def __getattribute__(self, name):
        if name.startswith("_"):
            return object.__getattribute__(self, name)
        recorder = object.__getattribute__(self, "_recorder")
        return recorded_attribute(self, name, recorder, object.__getattribute__(self, "_api_name"))

    def __setattr__(self, name, value):
        """``config.DLA_core = 1`` is recorded as ``IBuilderConfig.DLA_core``, as a look-up is."""
        if not name.startswith("_"):
            recorder = object.__getattribute__(self, "_recorder")
            if recorder is not None:
                recorder.add(f"{object.__getattribute__(self, '_api_name')}.{name}")
        object.__setattr__(self, name, value)


class Fake(Recorded):
    """A recorded fake object of one install. ``self._env`` is that install's state (GPU, recorder, ...): it is
    set on the per-install subclass that ``bind`` makes, so the constructor keeps the real parameter names."""

    _env = None

    def __init__(self):
        super().__init__(self._env.recorder)


def bind(env, cls: type, *mixins: type) -> type:
    """``cls`` for one install: a subclass (of ``mixins`` first, then ``cls``) whose objects see ``env`` as ``_env``.

    The subclass keeps the name, qualified name and docstring, so messages and reprs read as before.
    """
    namespace = {"_env": env, "__module__": cls.__module__, "__qualname__": cls.__qualname__, "__doc__": cls.__doc__}
    return type(cls.__name__, (*mixins, cls), namespace)


class Member(int):
    """An enum member: an int, as pybind11 enums convert with int()."""

    def __new__(cls, value: int, qualname: str):
        member = super().__new__(cls, value)
        member._qualname = qualname
        return member

    def __repr__(self) -> str:
        return f"<{self._qualname}: {int(self)}>"

    __str__ = __repr__


class Namespace(Recorded):
    """An enum, or a class used through its attributes and its constructor (``trt.Logger.WARNING``, ``trt.Logger(...)``)."""

    def __init__(self, recorder, api_name, members=(), attributes=None, constructor=None):
        super().__init__(recorder)
        object.__setattr__(self, "_api_name", api_name)
        values = {name: Member(i, f"{api_name}.{name}") for i, name in enumerate(members)} if not isinstance(members, dict) else {
            name: Member(v, f"{api_name}.{name}") for name, v in members.items()
        }
        values.update(attributes or {})
        object.__setattr__(self, "_members", values)
        object.__setattr__(self, "_constructor", constructor)

    def __getattr__(self, name):
        members = object.__getattribute__(self, "_members")
        if name in members:
            qualname = f"{object.__getattribute__(self, '_api_name')}.{name}"
            return keyword_recording(object.__getattribute__(self, "_recorder"), qualname, members[name])
        raise AttributeError(f"type object '{object.__getattribute__(self, '_api_name')}' has no attribute '{name}'")

    def __call__(self, *args, **kwargs):
        constructor = object.__getattribute__(self, "_constructor")
        for keyword in kwargs:
            object.__getattribute__(self, "_recorder").add(f"{object.__getattribute__(self, '_api_name')}({keyword})")
        if constructor is None:
            raise TypeError(f"{object.__getattribute__(self, '_api_name')}: No constructor defined!")
        return constructor(*args, **kwargs)

    def _get(self, name):
        return object.__getattribute__(self, "_members")[name]


class RecordedModule(types.ModuleType):
    """A module whose public attribute look-ups are recorded as ``<prefix><name>``."""

    def __init__(self, name: str, recorder: Recorder, prefix: str):
        super().__init__(name)
        self.__spec__ = importlib.machinery.ModuleSpec(name, None)  # find_spec() answers from sys.modules
        self._recorder, self._prefix = recorder, prefix

    def __getattribute__(self, name):
        if name.startswith("_"):
            return types.ModuleType.__getattribute__(self, name)
        self_dict = types.ModuleType.__getattribute__(self, "__dict__")
        qualname = self_dict["_prefix"] + name
        self_dict["_recorder"].add(qualname)
        return keyword_recording(self_dict["_recorder"], qualname, types.ModuleType.__getattribute__(self, name))


def plain_module(name: str) -> types.ModuleType:
    module = types.ModuleType(name)
    module.__spec__ = importlib.machinery.ModuleSpec(name, None, is_package=True)
    return module
