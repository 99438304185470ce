"""Find the catalog: built-in patches, a user directory, entry points.

The built-in catalog is the subpackage :mod:`hermes_patch.patches`, one
module per patch, discovered with :mod:`pkgutil` and imported under its own
name (so each patch class exists once). A user folder (``patch_dirs``) is
walked the same way, after its trust checks. Discovery keeps the concrete
:class:`~hermes_patch.core.patch.Patch` subclasses each module defines (the
pyupgrade / Fixit way). Ids must be unique across every source; a duplicate
is an error, never a silent override.
"""

from __future__ import annotations

import importlib
import importlib.util
import pkgutil
import sys
from pathlib import Path
from types import ModuleType

from hermes_patch.core.errors import ConfigError
from hermes_patch.core.patch import AnyPatch, Patch

__all__ = ["builtin", "discover", "ENTRY_POINT_GROUP"]

ENTRY_POINT_GROUP = "hermes_patch.patches"


def builtin() -> list[type[AnyPatch]]:
    """The built-in patch classes, sorted by id (every module of :mod:`hermes_patch.patches`)."""
    from hermes_patch import patches

    found: list[type[AnyPatch]] = []
    for info in pkgutil.iter_modules(patches.__path__):
        if not info.name.startswith("_"):
            found.extend(_patches_in(importlib.import_module(f"{patches.__name__}.{info.name}"), "builtin"))
    return sorted(found, key=lambda c: c.ID)


def _load_dir(directory: Path, package: str, source: str) -> list[type[AnyPatch]]:
    found: list[type[AnyPatch]] = []
    for path in sorted(directory.glob("*.py")):
        if path.name.startswith("_"):
            continue
        name = f"{package}.{path.stem}"
        module = sys.modules.get(name)
        if module is None:
            from hermes_patch.config import guard_path

            guard_path(path, f"the patch module {path} ({source})")
            from hermes_patch.trust import refusal, why_untrusted_bytecode

            cached = why_untrusted_bytecode(directory)
            if cached:
                from hermes_patch.core.errors import RefusedError

                raise RefusedError(
                    refusal(f"the bytecode cache of the patch modules in {directory} ({source})", cached)
                )
            spec = importlib.util.spec_from_file_location(name, path)
            if spec is None or spec.loader is None:  # pragma: no cover
                continue
            module = importlib.util.module_from_spec(spec)
            sys.modules[name] = module
            try:
                spec.loader.exec_module(module)
            except (Exception, SystemExit) as exc:  # a module that calls sys.exit() must not end the command
                del sys.modules[name]
                raise ConfigError(f"the patch module {path} failed to import: {type(exc).__name__}: {exc}") from None
        found.extend(_patches_in(module, source))
    return found


def _patches_in(module: ModuleType, source: str) -> list[type[AnyPatch]]:
    out = []
    for value in vars(module).values():
        if (
            isinstance(value, type)
            and issubclass(value, Patch)
            and value is not Patch
            and value.__module__ == module.__name__
            and "ID" in value.__dict__
        ):
            value.SOURCE = source
            out.append(value)
    return out


def discover(user_dirs: list[Path] | None = None, entry_points: bool = True) -> list[type[AnyPatch]]:
    """Every patch class: built-in first, then user directories, then entry points.

    Args:
        user_dirs: folders of extra patch modules (from the configuration).
        entry_points: also load the ``hermes_patch.patches`` entry point group.

    Returns:
        AnyPatch classes in catalog order (built-in sorted by id, then the rest
        in the order found).

    Raises:
        ConfigError: a module fails to import, a folder is missing, or two
            patches share an id.
    """
    classes = builtin()
    for index, directory in enumerate(user_dirs or []):
        if not directory.is_dir():
            raise ConfigError(
                f"the patch directory {directory} named in the configuration (patch_dirs) does not exist."
            )
        classes.extend(_load_dir(directory, f"hermes_patch._user{index}", f"patch_dirs {directory}"))
    from hermes_patch.snapshot import entry_point_declarations

    if entry_points and entry_point_declarations():  # importlib.metadata costs a tenth of a warm status
        from importlib.metadata import entry_points as _eps

        for ep in _eps(group=ENTRY_POINT_GROUP):
            try:
                value = ep.load()
            except (Exception, SystemExit) as exc:
                raise ConfigError(
                    f"the entry point {ep.name} = {ep.value} ({ENTRY_POINT_GROUP}) failed to load: {exc}"
                ) from None
            items = value if isinstance(value, (list, tuple)) else [value]
            for item in items:
                if isinstance(item, type) and issubclass(item, Patch):
                    dist = getattr(ep, "dist", None)
                    item.SOURCE = f"entry point {ep.value}" + (
                        f" from {dist.name} {dist.version}" if dist is not None else ""
                    )
                    classes.append(item)
    seen: dict[str, type[AnyPatch]] = {}
    for cls in classes:
        if cls.ID in seen:
            raise ConfigError(
                f"two patches share the id {cls.ID!r}: one from {seen[cls.ID].SOURCE}, one from {cls.SOURCE}. "
                "Rename one of them (its ID class attribute)."
            )
        seen[cls.ID] = cls
    return classes
