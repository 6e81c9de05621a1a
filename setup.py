"""Builds the compiled core (the `auditor/**/*.pyx` twins, Cython) when a C compiler is
there. Without a compiler (or without Cython, when build isolation is off) the package
installs as pure Python with a one-line notice (as it does when EGRESS_AUDITOR_NO_COMPILE=1), and `auditor/decode/packet.py` uses the
pure-Python twin; `egress-auditor --version` and every start-up line say which core runs.
Everything else about the package is in pyproject.toml."""
import os
import sys

from setuptools import setup
from setuptools.command.build_ext import build_ext

NOTICE = ("egress-auditor: the compiled core was not built ({}); installing the pure-Python "
          "decoder (same results, slower)")


class OptionalBuildExt(build_ext):
    """A failing compile is a notice, never a failed install."""

    def run(self):
        try:
            super().run()
        except Exception as exc:  # noqa: BLE001 - no compiler, no headers, ...
            print(NOTICE.format(exc), file=sys.stderr)

    def build_extension(self, ext):
        try:
            super().build_extension(ext)
        except Exception as exc:  # noqa: BLE001
            print(NOTICE.format(exc), file=sys.stderr)


def extensions():
    if os.environ.get("EGRESS_AUDITOR_NO_COMPILE", "") not in ("", "0"):
        return []               # a pure wheel on purpose (a wheelhouse for another Python)
    try:
        from Cython.Build import cythonize
    except ImportError:
        print(NOTICE.format("Cython is not installed"), file=sys.stderr)
        return []
    return cythonize(["auditor/decode/cpacket.pyx", "auditor/sources/cpcap.pyx",
                      "auditor/cpipeline.pyx", "auditor/decode/cdns.pyx",
                      "auditor/decode/ctls.pyx"], quiet=True,
                     compiler_directives={"language_level": "3"})


setup(ext_modules=extensions(), cmdclass={"build_ext": OptionalBuildExt})
