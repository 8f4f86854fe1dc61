"""The message bus: one interface, an in-process and a NATS JetStream implementation.

Service code receives a `Bus` and never knows which implementation it has.
"""

from aitrading.common.bus.base import Bus, Delivery, Handler, ReplyHandler, StreamSpec, Subscription
from aitrading.common.bus.codec import Message, decode, encode, message_type
from aitrading.common.bus.memory import MemoryBus
from aitrading.common.bus.subjects import subject_matches, validate_pattern, validate_subject

__all__ = [
    "Bus",
    "Delivery",
    "Handler",
    "MemoryBus",
    "Message",
    "ReplyHandler",
    "StreamSpec",
    "Subscription",
    "decode",
    "encode",
    "message_type",
    "subject_matches",
    "validate_pattern",
    "validate_subject",
]
