"""Immutable typed bus messages and their msgpack codec.

Every bus message is a frozen `msgspec.Struct` subclass of `Message`. Subclasses are tagged with their class
name, so one decoder turns any payload back into the right type without per-message validation cost beyond
msgspec's typed decode.
"""

from __future__ import annotations

from typing import Any, ClassVar, Union

import msgspec

__all__ = ["Message", "decode", "encode", "message_type"]

_REGISTRY: dict[str, type[Message]] = {}
_decoder: msgspec.msgpack.Decoder[Any] | None = None
_encoder = msgspec.msgpack.Encoder()


class Message(msgspec.Struct, frozen=True, kw_only=True, tag=True, array_like=True, omit_defaults=True):
    """Base of every message on the bus. Subclass names must be unique across the platform."""

    registry: ClassVar[dict[str, type[Message]]] = _REGISTRY

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        global _decoder  # noqa: PLW0603 - the decoder is rebuilt lazily when a type is added
        name = cls.__name__
        known = _REGISTRY.get(name)
        if known is not None and known.__module__ + known.__qualname__ != cls.__module__ + cls.__qualname__:
            raise TypeError(f"bus message name {name!r} is taken by {known.__module__}.{known.__qualname__}")
        _REGISTRY[name] = cls
        _decoder = None


def message_type(name: str) -> type[Message]:
    """Return the registered message class called `name`."""
    try:
        return _REGISTRY[name]
    except KeyError:
        raise KeyError(f"unknown bus message type {name!r}") from None


def encode(msg: Message) -> bytes:
    """Encode a message as msgpack (with its type tag)."""
    return _encoder.encode(msg)


def decode(payload: bytes) -> Message:
    """Decode msgpack produced by `encode` into its typed message.

    Raises `msgspec.DecodeError` (a `ValueError`) for malformed payloads or unknown types.
    """
    global _decoder  # noqa: PLW0603 - see Message.__init_subclass__
    if _decoder is None:
        types = tuple(_REGISTRY.values())
        union: Any = Union[types] if len(types) > 1 else types[0]  # noqa: UP007 - built at run time
        _decoder = msgspec.msgpack.Decoder(union)
    result: Message = _decoder.decode(payload)
    return result
