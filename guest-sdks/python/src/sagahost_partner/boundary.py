"""The component's edge: `export`, and the conversions between the SDK's models
and the classes componentize-py generates from `wit/`.

componentize-py hands `handle` an event built from its generated classes
(`wit_world.imports.types`) and lowers the returned plan by the exact class of
each variant case, so the plan must be built from those classes too. Both
sides use the same class and field names, so the conversion goes by name; the
only difference is `HttpResult`, whose WIT `result` the SDK splits into
`response` and `error` (see `sagahost_partner.models`).
"""

from __future__ import annotations

import dataclasses
from types import ModuleType
from typing import Any, Callable, Dict, Tuple

from . import models
from .host import PartnerError
from .models import Event, HttpResult, Plan, Plan_Call, Plan_Done

# SDK model classes by name: every dataclass `models` defines (not its aliases, such as `Request`).
_MODELS: Dict[str, type] = {
    name: cls
    for name, cls in vars(models).items()
    if isinstance(cls, type) and dataclasses.is_dataclass(cls) and cls.__name__ == name
}
_FIELDS: Dict[type, Tuple[str, ...]] = {}


def _field_names(cls: type) -> Tuple[str, ...]:
    # dataclasses.fields() walks the class each time; events hold hundreds of values.
    names = _FIELDS.get(cls)
    if names is None:
        names = _FIELDS[cls] = tuple(f.name for f in dataclasses.fields(cls))
    return names


def _is_plain(value: Any) -> bool:
    return value is None or isinstance(value, (str, bytes, bool, int, float))


def to_models(value: Any) -> Any:
    """Converts a value of the generated classes (an `Event`, say) to the SDK's models."""
    if _is_plain(value):
        return value
    if isinstance(value, list):
        return [to_models(item) for item in value]
    if isinstance(value, tuple):
        return tuple(to_models(item) for item in value)
    name = type(value).__name__
    if name == "HttpResult":
        # `response` is componentize-py's Ok(HttpResponse) or Err(HttpError).
        outcome = value.response
        ok = type(outcome).__name__ == "Ok"
        return HttpResult(
            id=value.id,
            response=to_models(outcome.value) if ok else None,
            error=None if ok else to_models(outcome.value),
        )
    model = _MODELS.get(name)
    if model is None or not dataclasses.is_dataclass(value):
        raise TypeError(f"sagahost_partner has no model of WIT type `{name}`: is wit/ newer than the SDK?")
    return model(**{field: to_models(getattr(value, field)) for field in _field_names(type(value))})


def to_wit(value: Any, wit_types: ModuleType) -> Any:
    """Converts a value of the SDK's models (a `Plan`, say) to the generated
    classes of `wit_types` (`wit_world.imports.types`)."""
    if _is_plain(value):
        return value
    if isinstance(value, list):
        return [to_wit(item, wit_types) for item in value]
    if isinstance(value, tuple):
        return tuple(to_wit(item, wit_types) for item in value)
    name = type(value).__name__
    generated = getattr(wit_types, name, None)
    if _MODELS.get(name) is not type(value) or generated is None:
        raise TypeError(f"cannot send a {type(value).__qualname__} to the host: build plans with sagahost_partner")
    return generated(**{field: to_wit(getattr(value, field), wit_types) for field in _field_names(type(value))})


def export(handle: Callable[[Event], Plan]) -> type:
    """Makes `handle(event) -> Plan` the component's handler.

    Assign the result to `Handler` at the top of the app module, which is the
    name componentize-py looks for: `Handler = export(handle)`. `handle` gets
    the SDK's models and returns a plan; a `PartnerError` it raises becomes
    `err(text)`. Under plain CPython, call `handle` itself.
    """
    try:
        from componentize_py_types import Err
        from wit_world.imports import types as wit_types
    except ImportError:
        # Plain CPython: no component runtime. Tests call `handle` directly.
        Err = None
        wit_types = None

    partner_handle = handle

    class Handler:
        def handle(self, event: Any) -> Any:
            if wit_types is None:
                raise RuntimeError("Handler runs only inside a component: under CPython, call the handle function")
            try:
                plan = partner_handle(to_models(event))
            except PartnerError as error:
                raise Err(str(error)) from None
            if not isinstance(plan, (Plan_Call, Plan_Done)):
                raise TypeError(
                    f"{partner_handle.__qualname__} returned {plan!r}, not a plan: return call(...), complete(), "
                    "forward(...), retry(...), compensate(...) or dead_letter(...)"
                )
            return to_wit(plan, wit_types)

    Handler.__doc__ = handle.__doc__
    return Handler
