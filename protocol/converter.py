"""The one strict converter between JSON values and params objects.

cattrs coerces by default: `"7"`, `7.9` and `True` all become the int 7, and the string
`"rm -rf"` becomes a tuple of six characters. A daemon that runs commands must not guess, so
every scalar and container hook here checks the JSON type and refuses anything else; floats
alone also accept integers (JSON has one number type). Errors keep cattrs' detailed paths
and become the `data` of a -32602 reply: `["expected number @ $.params.timeout"]`.
Register hooks before the first structure call: cattrs caches the hooks it generates.
"""

from collections.abc import Callable, Iterable, Mapping
from typing import Any, TypeVar, get_args, get_origin

from cattrs import transform_error
from cattrs.cols import (
    homogenous_tuple_structure_factory,
    is_mapping,
    is_sequence,
    list_structure_factory,
    mapping_structure_factory,
)
from cattrs.errors import ClassValidationError, ForbiddenExtraKeysError
from cattrs.literals import is_literal
from cattrs.preconf.orjson import OrjsonConverter, make_converter
from cattrs.v import format_exception

from cc_executor.protocol.errors import InvalidParams
from cc_executor.protocol.messages import JSON
from cc_executor.protocol.params import ParamError

T = TypeVar("T")
_Hook = Callable[[Any, Any], Any]


class _WrongType(TypeError):
    """A JSON value of the wrong JSON type; the message says what was expected."""


def _structure_str(value: object, _: object) -> str:
    if type(value) is not str:
        raise _WrongType("expected string")
    return value


def _structure_int(value: object, _: object) -> int:
    if type(value) is not int:  # bool is a subclass of int: `type` refuses it
        raise _WrongType("expected integer")
    return value


def _structure_float(value: object, _: object) -> float:
    if type(value) is not float and type(value) is not int:
        raise _WrongType("expected number")
    return float(value)


def _structure_bool(value: object, _: object) -> bool:
    if type(value) is not bool:
        raise _WrongType("expected boolean")
    return value


def _literal_factory(literal: Any) -> _Hook:
    allowed = get_args(literal)
    # Compare type and value: `True == 1`, so a value check alone would let True pass as 1.
    valid = {(type(a), a) for a in allowed}
    expected = "expected one of " + ", ".join(repr(a) for a in allowed)

    def structure_literal(value: object, _: object) -> object:
        try:
            ok = (type(value), value) in valid
        except TypeError:  # unhashable: a list or an object
            ok = False
        if not ok:
            raise _WrongType(expected)
        return value

    return structure_literal


def _sequence_factory(seq: Any, conv: OrjsonConverter) -> _Hook:
    args = get_args(seq)
    if get_origin(seq) is tuple and len(args) == 2 and args[1] is Ellipsis:
        inner = homogenous_tuple_structure_factory(seq, conv)
    elif get_origin(seq) is list:
        inner = list_structure_factory(seq, conv)
    else:
        raise TypeError(f"the strict converter does not support {seq!r}")

    def structure_array(value: object, cl: object) -> object:
        if type(value) is not list:  # a string is never a list of characters
            raise _WrongType("expected array")
        return inner(value, cl)

    return structure_array


def _mapping_factory(mapping: Any, conv: OrjsonConverter) -> _Hook:
    inner = mapping_structure_factory(mapping, conv, dict, detailed_validation=True)

    def structure_object(value: object, cl: object) -> object:
        if type(value) is not dict:
            raise _WrongType("expected object")
        return inner(value, cl)

    return structure_object


def _make_strict_converter() -> OrjsonConverter:
    conv = make_converter(forbid_extra_keys=True, detailed_validation=True)
    conv.register_structure_hook(str, _structure_str)
    conv.register_structure_hook(int, _structure_int)
    conv.register_structure_hook(float, _structure_float)
    conv.register_structure_hook(bool, _structure_bool)
    conv.register_structure_hook_factory(is_literal, _literal_factory)
    conv.register_structure_hook_factory(is_sequence, lambda t: _sequence_factory(t, conv))
    conv.register_structure_hook_factory(is_mapping, lambda t: _mapping_factory(t, conv))
    return conv


converter: OrjsonConverter = _make_strict_converter()


def _format(exc: BaseException, type_: type | None) -> str:
    if isinstance(exc, _WrongType | ParamError):
        return str(exc)
    if isinstance(exc, ForbiddenExtraKeysError):
        return f"unexpected fields ({', '.join(sorted(exc.extra_fields))})"
    return format_exception(exc, type_)


def _describe(exc: Exception) -> list[str]:
    # A ParamError comes from the class's own checks, after every field structured; its
    # message already carries its precise path, which transform_error would not know.
    if isinstance(exc, ParamError):
        return [str(exc)]
    if isinstance(exc, ClassValidationError):
        with_notes, without = exc.group_exceptions()
        if not with_notes and all(isinstance(e, ParamError) for e in without):
            return [str(e) for e in without]
    return transform_error(exc, "$.params", _format)


def structure_params(raw: Mapping[str, JSON], cls: type[T]) -> T:
    """Build a params object from a JSON object.

    Raises:
        InvalidParams: with `data` a list of `"<problem> @ <path>"` strings.
    """
    try:
        return converter.structure(raw, cls)
    except (ClassValidationError, ParamError) as exc:
        problems = _describe(exc)
        raise InvalidParams("Invalid params: " + "; ".join(problems), list(problems)) from None


def prepare(classes: Iterable[type]) -> None:
    """Generate the structure hooks of `classes` now: cattrs builds a class's hook on its first
    use, which would otherwise fall on the first request of each kind a daemon answers."""
    for cls in classes:
        converter.get_structure_hook(cls)
