"""Pure decoders of untrusted bytes. They report facts, never judge, never raise."""

