"""Remember what was computed from an object for as long as the object lives.

The renderer sees the same `Message` and `ToolSpec` objects at every step of a run. They are
frozen, but hold dicts, so they cannot be hashed: `IdentityCache` keys on the object itself
(its `id`, checked against a weak reference, so a recycled id never returns a stale value) and
forgets an entry when its object is collected. It keeps no object alive, so it needs no bound.
"""

from __future__ import annotations

import weakref
from typing import Generic, TypeVar

V = TypeVar("V")


class _Ref(weakref.ref):  # type: ignore[type-arg]  # weakref.ref[object] is not subclassable at runtime
    __slots__ = ("key",)
    key: int


class IdentityCache(Generic[V]):
    """A value per live object, looked up by identity (equal objects do not share it)."""

    def __init__(self) -> None:
        self._entries: dict[int, tuple[_Ref, V]] = {}
        self._callback = self._forget  # one bound method for all the weak references

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, obj: object) -> V | None:
        """The value stored for this very object, or None."""
        entry = self._entries.get(id(obj))
        if entry is not None and entry[0]() is obj:
            return entry[1]
        return None

    def put(self, obj: object, value: V) -> None:
        """Store `value` for `obj` until `obj` is collected (objects without weak references
        are not stored)."""
        try:
            ref = _Ref(obj, self._callback)
        except TypeError:
            return
        ref.key = id(obj)
        self._entries[ref.key] = (ref, value)

    def _forget(self, ref: _Ref) -> None:
        # Called as the object dies; the id may already hold a newer object's entry.
        entry = self._entries.get(ref.key)
        if entry is not None and entry[0] is ref:
            self._entries.pop(ref.key, None)
