"""One error hierarchy, caught once at the top of the command line.

Every error carries a one-paragraph message for people: what went wrong,
where (a path), and the next command to run. Raise one with a
:class:`hermes_patch.core.messages.Failure` (``raise TargetError(failure)``):
``str(err)`` is then the paragraph and ``err.args[0]`` keeps its parts; advice
that several errors share is written once in :mod:`hermes_patch.core.messages`. Expected situations in the
engine (a pending patch, an unknown shape) are *outcomes*, not errors; these
classes are for input we cannot work with and for refusals.
"""

from __future__ import annotations

__all__ = [
    "HermesPatchError",
    "TargetError",
    "ConfigError",
    "StateError",
    "RefusedError",
    "VerificationError",
]


class HermesPatchError(Exception):
    """Base class. ``str(err)`` is the whole paragraph shown to the user.

    Attributes:
        exit_code: process exit code the CLI uses for this error (2).
    """

    exit_code = 2


class TargetError(HermesPatchError):
    """The target (``web_server.py`` or the install around it) cannot be used:
    missing, a directory, empty, not decodable, not Python, not writable."""


class ConfigError(HermesPatchError):
    """The configuration file is unreadable, has unknown keys or ids, or a
    parameter is invalid (a CIDR that does not parse, an action the release
    does not have, ...)."""


class StateError(HermesPatchError):
    """The ledger or backups in the state directory are unreadable, from a
    newer schema, or inconsistent with the target."""


class RefusedError(HermesPatchError):
    """A command was refused on purpose (unknown shape, drift without
    ``--force``, a read-only target). Nothing was written."""


class VerificationError(HermesPatchError):
    """An edit failed one of the proofs run before writing (idempotency,
    compile, detection, byte-exact undo). Nothing was written. This is a bug
    in a patch; the message asks for a report."""
