"""hermes-patch: versioned libcst codemods for Hermes Agent's dashboard server.

The public API is small: the command line (``hermes-patch``), the
:class:`~hermes_patch.core.patch.Patch` base class that catalog entries subclass,
and the pure engine functions in :mod:`hermes_patch.core.engine`.
"""

from __future__ import annotations

__all__ = ["__version__"]

__version__ = "0.1.0"
