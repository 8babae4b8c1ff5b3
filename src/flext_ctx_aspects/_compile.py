"""Compile the field changes of a stack of aspects into one snapshot-building function.

Given the advices of every aspect on a function (outermost first), this emits and compiles
one function ``update(s, instance, args, kwargs) -> snapshot`` that builds the whole new
snapshot tuple in a single expression. Applying the advices one after another would build
one tuple per aspect; the compiled form builds one, whatever the stack height, and reads
earlier aspects' values from locals (``@with_correlation`` twice gives the inner id the
outer id as parent, exactly as two separate wrappers would).

Compiled code objects are cached by their source, so instrumenting thousands of functions
compiles each distinct shape once.

An update that reads nothing of the call and sets built-in fields only also carries its
`Program` (``update.program``): the same steps as data, which the compiled engine runs in C
(``_speedups.Update``) instead of calling the Python function. The source stays the
reference: the program is derived from the same emitter calls, and the C update hands
whatever it does not do itself (a configured id generator, a trace hook) to the function.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Final, NamedTuple

from flext_ctx_aspects import _ids, _state, _trace
from flext_ctx_aspects._advice import Source, Target
from flext_ctx_aspects._diagnostics import report_internal_error
from flext_ctx_aspects.errors import InvalidValueError

__all__ = [
    "BUILTIN_FIELDS",
    "DEFAULT_CACHE_SIZE",
    "CurrentOrNewId",
    "MergeMetadata",
    "NewId",
    "Program",
    "Updater",
    "compile_update",
    "program_of",
    "reads_call",
    "set_cache_size",
]

Updater = Callable[[Any, Any, tuple[Any, ...], dict[str, Any]], tuple[Any, ...]]
# An operand: (SLOT, index) of the snapshot read, (STEP, index) of an earlier step's value,
# (CONSTANT, index) into the program's constants.
Operand = tuple[int, int]
SLOT: Final = 0
STEP: Final = 1
CONSTANT: Final = 2
# Steps, each computing one value: (NEW_ID,), (OR_NEW_ID, operand) (the operand's value, or
# a new id where it is None), (COPY, operand), (FIRST, a, b) (a's value, or b's where a's is
# None). The numbering is _speedups.c's.
NEW_ID: Final = 0
OR_NEW_ID: Final = 1
COPY: Final = 2
FIRST: Final = 3


class Program(NamedTuple):
    """An update as data: its steps in order, then the snapshot it returns (one operand per slot).

    ``uses_trace_hook``: a step stands for the trace root, which is only this while no
    external-trace hook is set (`_trace.external_trace`).
    """

    constants: tuple[object, ...]
    steps: tuple[tuple[Any, ...], ...]
    outputs: tuple[Operand, ...]
    uses_trace_hook: bool


# The C update holds at most this many steps (UPDATE_MAX_STEPS); longer stacks stay Python.
MAX_PROGRAM_STEPS: Final = 32
# Finds a declared custom field by name (an object with ``clean(text) -> str``), or None.
# Passed in by the engine: fields.py is a sibling of this module, which does not import it.
FieldLookup = Callable[[str], Any]


def _no_declared_fields(name: str) -> None:
    return None


BUILTIN_FIELDS: Final[Mapping[str, int]] = _state.FIELD_SLOTS
# Fields whose values must be strings: values taken from arguments are converted with str().
_TEXT_FIELDS: Final = frozenset(BUILTIN_FIELDS) - {"request_metadata"}


class NewId(Source):
    """A freshly generated id (the configured id generator)."""

    __slots__ = ()


class Current(Source):
    """The value the field has where the body runs (after outer aspects' changes)."""

    __slots__ = ("field",)

    def __init__(self, field: str) -> None:
        self.field = field


class CurrentOrNewId(Source):
    """``preferred`` when it gives a value, else the current value of ``field``, else new."""

    __slots__ = ("field", "preferred")

    def __init__(self, field: str, preferred: Source | None = None) -> None:
        self.field = field
        self.preferred = preferred


class TraceRoot(Source):
    """The current trace id, else the (new) correlation id: the root of a trace names it.

    The value is not checked on this hot path; ``_trace.w3c_trace_id`` turns a correlation
    id that is not a valid W3C trace id into one where a trace id is written out.
    """

    __slots__ = ()


class MergeMetadata(Source):
    """The current request metadata updated with ``items`` (values may be sources)."""

    __slots__ = ("items",)

    def __init__(self, items: Mapping[str, Any]) -> None:
        self.items = dict(items)


def _text(value: object) -> str | None:
    return value if value is None or isinstance(value, str) else str(value)


# --- one rule for every field value -------------------------------------------------------
#
# Every field but ``request_metadata`` holds text. A value (a constant of an Advice or a value
# taken from the call) is converted with str() when it is not already a str (None means "not
# set"); a custom field's value must then pass its ContextField's own check (characters,
# length, validator). A constant that fails is refused at decoration time; a value from the
# call that fails is dropped (the field keeps the value it had) and reported.


def field_constant(
    field: str, value: object, where: str, declared_field: FieldLookup = _no_declared_fields
) -> object:
    """Return the constant ``value`` of ``field`` as it will be stored.

    Raises:
        TypeError: ``request_metadata`` given something that is not a mapping.
        InvalidValueError: A custom field's value that its declaration refuses.
    """
    if value is None:
        return None
    if field == "request_metadata":
        if not isinstance(value, Mapping):
            raise TypeError(
                f"{where}: request_metadata must be a mapping (got {type(value).__name__})"
            )
        return dict(value)
    text = _text(value)
    declared = declared_field(field) if field not in BUILTIN_FIELDS else None
    if declared is None:
        return text
    try:
        return declared.clean(text)
    except InvalidValueError as exc:
        raise InvalidValueError(
            field, f"{exc.reason} (constant given to {where})", exc.length
        ) from None


def _generated(value: object) -> str:
    """An id from a configured generator, by the same rule; a missing one is replaced."""
    if isinstance(value, str) and value:
        return value
    if value is None or value == "":
        report_internal_error(
            "the configured id generator", TypeError(f"it returned {value!r}, not an id")
        )
        return _ids.generate_id()
    return str(value)


def _custom(lookup: FieldLookup, name: str, value: object, current: object) -> object:
    """A custom field's value from the call, checked; ``current`` when it is refused."""
    if value is None:
        return None
    declared = lookup(name)
    try:
        text = value if isinstance(value, str) else str(value)
        return text if declared is None else declared.clean(text)
    except Exception as exc:
        report_internal_error(f"custom context field {name!r} from the call", exc)
        return current


class _Emitter:
    """Accumulates the body of one ``update`` function."""

    def __init__(self, target: Target, declared_field: FieldLookup) -> None:
        self.target = target
        self.declared_field = declared_field
        self.lines: list[str] = []
        self.namespace: dict[str, Any] = {
            "_gen": _ids.active_generator,
            "_default_gen": _ids.generate_id,
            "_randbits": _ids.randbits,
            "_text": _text,
            "_custom": _custom,
            "_declared": declared_field,
            "_generated": _generated,
            "_ext": _trace.external_trace,
        }
        self.slots = [f"s[{index}]" for index in range(len(_state.EMPTY))]
        self.custom: dict[str, str] = {}
        self.changed = False
        # The Program, built alongside the source; None once something has no step form.
        self.steps: list[tuple[Any, ...]] | None = []
        self.step_of: dict[str, int] = {}  # local name -> its step
        self.constants: dict[str, int] = {}  # constant name -> its index in the program
        self.uses_trace_hook = False
        # The correlation id the current aspect found (before its own changes).
        self.enclosing_correlation = self.slots[_state.CORRELATION_ID]

    @staticmethod
    def new_id() -> str:
        # The default generator inlined (saves a Python call, ~40% of an id), still
        # following a generator configured later.
        return (
            '((_randbits(128) or 1).to_bytes(16, "big").hex() '
            "if _gen[0] is _default_gen else _generated(_gen[0]()))"
        )

    def constant(self, value: object) -> str:
        name = f"k{len(self.namespace)}"
        self.namespace[name] = value
        self.constants[name] = len(self.constants)
        return name

    def local(self, expression: str, step: tuple[Any, ...] | None = None) -> str:
        """A new local; ``step`` is its Program form (an op, then operand expressions).

        A local without one ends the program, unless its value is only used by steps
        written out in full (`program_local`).
        """
        name = self.program_local(expression)
        if step is None:
            self.steps = None
        else:
            self.program_step(name, step)
        return name

    def program_local(self, expression: str) -> str:
        """A local of the source alone: the program does without it, or `local` adds its step."""
        name = f"v{len(self.lines)}"
        self.lines.append(f"    {name} = {expression}")
        return name

    def program_step(self, name: str, step: tuple[Any, ...]) -> None:
        if self.steps is None:
            return
        operands = [self.operand(expression) for expression in step[1:]]
        if None in operands or len(self.steps) >= MAX_PROGRAM_STEPS:
            self.steps = None
            return
        self.step_of[name] = len(self.steps)
        self.steps.append((step[0], *operands))

    def operand(self, expression: str) -> Operand | None:
        if expression.startswith("s[") and expression.endswith("]"):
            return (SLOT, int(expression[2:-1]))
        if expression in self.step_of:
            return (STEP, self.step_of[expression])
        if expression in self.constants:
            return (CONSTANT, self.constants[expression])
        return None

    def program(self) -> Program | None:
        if self.steps is None or self.custom:
            return None
        outputs: list[Operand] = []
        for expression in self.slots:
            operand = self.operand(expression)
            if operand is None:
                return None
            outputs.append(operand)
        constants = tuple(self.namespace[name] for name in self.constants)
        return Program(constants, tuple(self.steps), tuple(outputs), self.uses_trace_hook)

    def read(self, field: str) -> str:
        slot = BUILTIN_FIELDS.get(field)
        if slot is not None:
            return self.slots[slot]
        if field in self.custom:
            return self.custom[field]
        fields = self.slots[_state.CUSTOM_FIELDS]
        return self.local(f"{fields}.get({field!r}) if {fields} is not None else None")

    def write(self, field: str, expression: str) -> None:
        self.changed = True
        slot = BUILTIN_FIELDS.get(field)
        if slot is not None:
            self.slots[slot] = expression
        else:
            self.custom[field] = expression

    def value(self, field: str, source: object) -> str:
        """Return an expression for ``source`` as the new value of ``field``."""
        if isinstance(source, NewId):
            return self.local(self.new_id(), (NEW_ID,))
        if isinstance(source, Current):
            return self.read(source.field)
        if isinstance(source, CurrentOrNewId):
            current = self.read(source.field)
            fallback = f"({current} if {current} is not None else {self.new_id()})"
            if source.preferred is None:
                return self.local(fallback, (OR_NEW_ID, current))
            preferred = self.value(field, source.preferred)
            return self.local(f"{preferred} if {preferred} is not None else {fallback}")
        if isinstance(source, TraceRoot):
            trace = self.read("trace_id")
            correlation = self.read("correlation_id")
            parent = self.slots[_state.TRACE_PARENT]
            # The external-trace hook (None unless a bridge is on: one load and one test).
            # The program is this without a hook: the C update calls the source with one.
            self.uses_trace_hook = True
            found = self.program_local(
                f"None if _ext[0] is None else "
                f"_ext[0]({trace}, {self.enclosing_correlation}, {parent}, {correlation})"
            )
            self.slots[_state.TRACE_PARENT] = self.local(
                f"{parent} if {found} is None else {found}[1]", (COPY, parent)
            )
            return self.local(
                f"({trace} if {trace} is not None else {correlation}) "
                f"if {found} is None else {found}[0]",
                (FIRST, trace, correlation),
            )
        if isinstance(source, MergeMetadata):
            return self._metadata(source)
        if isinstance(source, Source):
            resolve = self.constant(source.resolver(self.target))
            expression = f"{resolve}(instance, args, kwargs)"
            if field in _TEXT_FIELDS:
                expression = f"_text({expression})"
            elif field not in BUILTIN_FIELDS:
                expression = f"_custom(_declared, {field!r}, {expression}, {self.read(field)})"
            return self.local(expression)
        return self.constant(
            field_constant(field, source, self.target.qualname, self.declared_field)
        )

    def _metadata(self, source: MergeMetadata) -> str:
        current = self.read("request_metadata")
        static = {k: v for k, v in source.items.items() if not isinstance(v, Source)}
        dynamic = {k: v for k, v in source.items.items() if isinstance(v, Source)}
        parts = [f"**({current} or {{}})"]
        if static:
            parts.append(f"**{self.constant(static)}")
        for key, item in dynamic.items():
            resolve = self.constant(item.resolver(self.target))
            parts.append(f"{key!r}: {resolve}(instance, args, kwargs)")
        return self.local("{" + ", ".join(parts) + "}")

    def source(self) -> str:
        slots = list(self.slots)
        if self.custom:
            fields = slots[_state.CUSTOM_FIELDS]
            items = ", ".join(f"{name!r}: {expr}" for name, expr in self.custom.items())
            slots[_state.CUSTOM_FIELDS] = f"{{**({fields} or {{}}), {items}}}"
        body = [*self.lines, f"    return ({', '.join(slots)},)"]
        return "def update(s, instance, args, kwargs):\n" + "\n".join(body) + "\n"


DEFAULT_CACHE_SIZE: Final = 1024
_code_cache: dict[str, Any] = {}
# Whole update functions by the shape of the changes, for stacks that depend on nothing of
# the target (no source reading the call, built-in fields only): what instrumenting a whole
# package applies to every function. Such a function is pure in (s, instance, args, kwargs),
# so every target with that stack shares it and decorating skips the emitter and exec.
_shape_cache: dict[tuple[Any, ...], Updater | None] = {}
_SHAPE_CONSTANTS: Final = (str, int, float, bool, type(None))


def _shape_key(changes: Sequence[Mapping[str, Any]]) -> tuple[Any, ...] | None:
    key: list[Any] = []
    for fields in changes:
        items: list[Any] = []
        for name, value in fields.items():
            if name not in BUILTIN_FIELDS:
                return None  # custom fields are checked by their declaration, found later
            kind = type(value)
            if kind is NewId or kind is TraceRoot:
                items.append((name, kind))
            elif kind is Current or (kind is CurrentOrNewId and value.preferred is None):
                items.append((name, kind, value.field))
            elif kind in _SHAPE_CONSTANTS:
                items.append((name, kind, value))
            else:
                return None  # a source reading the call, a mapping: per target
        key.append(tuple(items))
    return tuple(key)


def reads_call(update: Updater) -> bool:
    """Whether ``update`` looks at the call's ``args``/``kwargs`` (a field source does).

    The compiled driver makes an args tuple and a kwargs dict for such an update only; the
    rest are called with empty ones. True for an update not compiled here.
    """
    return getattr(update, "reads_call", True) is not False


def program_of(update: Updater) -> Program | None:
    """The `Program` of an update compiled here, or None where it has no step form."""
    program: Program | None = getattr(update, "program", None)
    return program


def target_independent(fields: Mapping[str, Any]) -> bool:
    """Whether one aspect's field changes compile to the same update for every target."""
    return _shape_key((fields,)) is not None


_cache_size = DEFAULT_CACHE_SIZE
# Decoration happens from any thread (imports in threads, lazy instrumentation): the cache's
# read-evict-insert sequence is one critical section, or two threads evict the same key.
_cache_lock = threading.Lock()


def set_cache_size(size: int) -> None:
    """Set how many compiled update shapes are kept (oldest evicted first)."""
    global _cache_size
    if size < 1:
        raise ValueError(f"cache size must be >= 1 (got {size!r})")
    with _cache_lock:
        _cache_size = size
        while len(_code_cache) > size:
            del _code_cache[next(iter(_code_cache))]
        while len(_shape_cache) > size:
            del _shape_cache[next(iter(_shape_cache))]


def compile_update(
    target: Target,
    changes: Sequence[Mapping[str, Any]],
    declared_field: FieldLookup = _no_declared_fields,
) -> Updater | None:
    """Compile the field changes of a stack of aspects (outermost first).

    ``declared_field`` finds the declaration of a custom field, whose check every value of
    that field must pass (see `field_constant`).

    Returns:
        The ``update`` function, or None when no aspect changes any field.

    Raises:
        TypeError: A source does not fit the target (reported at decoration time).
    """
    shape = _shape_key(changes)
    if shape is not None:
        with _cache_lock:
            if shape in _shape_cache:
                return _shape_cache[shape]
    update = _compile_update(target, changes, declared_field)
    if shape is not None:
        with _cache_lock:
            while len(_shape_cache) >= _cache_size:
                del _shape_cache[next(iter(_shape_cache))]
            _shape_cache[shape] = update
    return update


def _compile_update(
    target: Target, changes: Sequence[Mapping[str, Any]], declared_field: FieldLookup
) -> Updater | None:
    emitter = _Emitter(target, declared_field)
    for fields in changes:
        # Every value of one aspect is computed from the state as the aspect found it, then
        # all are written: fields of one aspect do not see each other's new values. The
        # trace root is the exception: it is derived from the correlation id just written.
        emitter.enclosing_correlation = emitter.slots[_state.CORRELATION_ID]
        deferred = [name for name, value in fields.items() if isinstance(value, TraceRoot)]
        computed = [
            (name, emitter.value(name, value))
            for name, value in fields.items()
            if not isinstance(value, TraceRoot)
        ]
        for name, expression in computed:
            emitter.write(name, expression)
        for name in deferred:
            emitter.write(name, emitter.value(name, fields[name]))
    if not emitter.changed:
        return None
    source = emitter.source()
    with _cache_lock:
        code = _code_cache.get(source)
    if code is None:
        # Compiled outside the lock: two threads may compile one shape, both results are equal.
        code = compile(source, "<flext_ctx_aspects compiled update>", "exec")
        with _cache_lock:
            while len(_code_cache) >= _cache_size:
                del _code_cache[next(iter(_code_cache))]
            _code_cache[source] = code
    namespace = dict(emitter.namespace)
    exec(code, namespace)  # noqa: S102 - source is generated above from field names and locals only
    update: Updater = namespace["update"]
    # The parameters are on the first line; a body naming them reads the call (see there).
    body = source.partition("\n")[2]
    update.reads_call = "args" in body  # type: ignore[attr-defined]
    update.program = emitter.program()  # type: ignore[attr-defined]
    return update
