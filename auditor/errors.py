"""Every way the auditor can refuse to go on, and the exit codes the command line returns.

One base class, `AuditorError`, with one subclass per failure mode; the docstring of each is
its meaning. `str()` of any of them is the one line a user reads: it names the file (and the
line, rule or field when known). They are raised where the problem is found and caught once,
in `cli.main`; no layer in between translates one into another.

`AuditorError` is a `ValueError` so that callers of the Python API who catch `ValueError`
(the documented contract since the first release) keep working.

This module imports nothing of the project: every layer may raise these.
"""
from __future__ import annotations

EXIT_OK = 0
EXIT_BAD_INPUT = 1
EXIT_USAGE = 2          # argparse's own code for a bad command line
EXIT_FAIL_ON = 3
EXIT_INTERRUPTED = 130


class AuditorError(ValueError):
    """Something the user can fix; the message is printed as one line, never a traceback."""
    exit_code = EXIT_BAD_INPUT


def where(file: str, reason: str, *, line: int | None = None, rule: str | None = None,
          field: str | None = None, level: str | None = None) -> str:
    """`policy.yaml:14: rule 'pypi': destination.port_ranges: reason` (parts omitted when unknown)."""
    parts = [f"{file}:{line}" if line else file]
    if level:
        parts.append(level)
    if rule is not None:
        parts.append(f"rule {rule!r}")
    if field:
        parts.append(field)
    parts.append(reason)
    return ": ".join(parts)


class PolicyError(AuditorError):
    """A policy file (or a service-tags file it needs) cannot be used."""

    def __init__(self, file: str, reason: str, *, line: int | None = None,
                 rule: str | None = None, field: str | None = None) -> None:
        self.file, self.reason, self.line, self.rule, self.field = file, reason, line, rule, field
        super().__init__(where(file, reason, line=line, rule=rule, field=field))


class CaptureFileError(AuditorError):
    """A capture file is missing, unreadable, or not a pcap/pcapng file."""


class CaptureSetupError(AuditorError):
    """A live capture cannot start: no such interface, a filter that does not compile."""


class NeedsPrivileges(CaptureSetupError):
    """A live capture needs root or CAP_NET_RAW (and CAP_NET_ADMIN for large buffers)."""


class SettingsError(AuditorError):
    """The settings file, an `EGRESS_AUDITOR_*` variable or a flag has an unusable value."""


class OutputError(AuditorError):
    """An output (events file, metrics file, suggestion file, metrics port) cannot be written
    or opened."""


class UsageError(AuditorError):
    """Options that do not go together; exit code 2, as for the usage errors argparse catches."""
    exit_code = EXIT_USAGE
