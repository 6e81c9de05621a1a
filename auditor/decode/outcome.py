"""What a payload decoder answers when it has no result: one vocabulary for all of them.

Every decoder of untrusted bytes (`tls`, `http`, `quic`, `dns`, `packet`) returns either its
result object or a `Status`, so the tracker can tell "wait for more bytes" from "not this
protocol" from "lying lengths". Inside, a decoder raises `DecodeError` where the bytes
contradict the protocol; its public function catches exactly that and the truncation errors
of reading past the end (`IndexError`, `struct.error`). Anything else is a bug in our code and
is allowed to surface (the pipeline counts it as a component error, and tests fail on it).
"""
from __future__ import annotations

import enum
import struct


class Status(enum.Enum):
    NEED_MORE = "need_more"      # a prefix of something valid: feed more bytes
    MALFORMED = "malformed"      # this protocol, but the bytes contradict it
    NOT_THIS = "not_this"        # not this protocol at all


NEED_MORE, MALFORMED, NOT_THIS = Status.NEED_MORE, Status.MALFORMED, Status.NOT_THIS


class DecodeError(Exception):
    """The bytes contradict the protocol at this point."""


# What a public decoder function turns into `MALFORMED`: nothing else.
UNDECODABLE = (DecodeError, IndexError, struct.error)
