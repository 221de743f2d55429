"""`stored_at_once`: a faster `__init__` for the frozen dataclasses made on the hot path.

A frozen dataclass's generated `__init__` gets past its own `__setattr__` with one
`object.__setattr__` call per field: most of what making a small one costs. Events, messages,
chunks and usages are made per step and per chunk, so those classes take this one instead.
"""

from __future__ import annotations

import dataclasses
from typing import Any, TypeVar

T = TypeVar("T")


def stored_at_once(cls: type[T]) -> type[T]:
    """Give a frozen, keyword-only dataclass an `__init__` that stores its fields with one
    `__dict__.update`, then calls `__post_init__` if the class has one.

    Same signature as the generated one (its keyword-only parameters, annotations and
    defaults), so calls, errors, `dataclasses.replace` and `inspect.signature` do not change.
    """
    params = dataclasses.fields(cls)  # type: ignore[arg-type]
    generated: Any = cls.__init__
    if not all(f.kw_only for f in params if f.init) or generated.__code__.co_argcount != 1:
        raise TypeError(f"{cls.__name__}: stored_at_once takes keyword-only dataclasses")
    defaults: dict[str, Any] = generated.__kwdefaults__ or {}
    namespace: dict[str, Any] = {}
    names: list[str] = []
    stored: list[str] = []
    for f in params:
        if not f.init:  # set by __post_init__, or a class attribute, as with the generated one
            if f.default_factory is not dataclasses.MISSING:
                raise TypeError(f"{cls.__name__}.{f.name}: a factory needs init=True here")
            continue
        names.append(f.name)
        if f.default_factory is not dataclasses.MISSING:
            namespace[f"_{f.name}_factory"] = f.default_factory
            namespace[f"_{f.name}_unset"] = defaults[f.name]
            stored.append(
                f"{f.name}=_{f.name}_factory() if {f.name} is _{f.name}_unset else {f.name}"
            )
        else:
            stored.append(f"{f.name}={f.name}")
    if generated.__code__.co_kwonlyargcount != len(names):  # an InitVar: not a field
        raise TypeError(f"{cls.__name__}: stored_at_once does not take InitVar fields")
    source = f"def __init__(self, *, {', '.join(names)}):\n"
    source += f"    self.__dict__.update({', '.join(stored)})\n"
    if hasattr(cls, "__post_init__"):
        source += "    self.__post_init__()\n"
    exec(source, namespace)  # as dataclasses makes __init__: from field names only
    init = namespace["__init__"]
    init.__kwdefaults__ = generated.__kwdefaults__
    init.__annotations__ = dict(generated.__annotations__)
    init.__qualname__ = generated.__qualname__
    init.__module__ = generated.__module__
    init.__doc__ = generated.__doc__
    cls.__init__ = init  # type: ignore[method-assign]
    return cls
