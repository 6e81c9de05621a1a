"""Packet sources: capture files and live interfaces, both yielding raw frames."""

