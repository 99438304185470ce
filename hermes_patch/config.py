"""The configuration file (TOML): which patches run, with which parameters.

Default location: ``$HERMES_PATCH_CONFIG``, else
``<user config dir>/hermes-patch/config.toml`` (``~/.config/hermes-patch/config.toml``
on Linux, from platformdirs). A missing default file means "defaults for
everything"; a missing file named with ``--config`` is an error. Nothing in
it is evaluated as code.

Keys::

    patch_dirs = ["~/hermes-patches"]        # extra patch modules (optional)
    allow_version = true                     # patch known shapes on releases outside a patch's range

    [patches.<id>]
    enabled = false                          # switch a patch off
    <param> = ...                            # the patch's own parameters
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from hermes_patch.core.errors import ConfigError
from hermes_patch.core.messages import RUN_AGAIN, STATUS, Failure, remove_others_write, run

__all__ = ["Config", "default_config_path", "load_config", "config_from_bytes"]


def default_config_path() -> Path:
    """``$HERMES_PATCH_CONFIG`` or the platform's user config dir + ``hermes-patch/config.toml``."""
    env = os.environ.get("HERMES_PATCH_CONFIG")
    if env:
        return Path(env).expanduser()
    from platformdirs import user_config_dir

    return Path(user_config_dir("hermes-patch")) / "config.toml"


@dataclass(frozen=True)
class Config:
    """A validated configuration.

    Attributes:
        path: the file it came from (may not exist).
        exists: whether that file exists.
        patch_dirs: extra folders of patch modules.
        patches: patch id to its table (``enabled`` and parameters).
        python: the interpreter of the Hermes install (``python = "..."``),
            used when no ``--python``, ``--root`` or ``--file`` is given;
            ``setup --python`` writes it, so a venv that is not on ``PATH``
            is found by every later command.
    """

    path: Path
    exists: bool
    patch_dirs: tuple[Path, ...] = ()
    python: Path | None = None
    patches: dict[str, dict[str, object]] = field(default_factory=dict)
    allow_version: bool = False

    def enabled(self, patch_id: str) -> bool:
        """Whether ``[patches.<id>] enabled`` is not false."""
        return bool(self.patches.get(patch_id, {}).get("enabled", True))

    def params(self, patch_id: str) -> dict[str, object]:
        """The patch's raw parameters (its table without ``enabled``), as TOML gave them; the patch's :class:`Param` checks them."""
        return {k: v for k, v in self.patches.get(patch_id, {}).items() if k != "enabled"}

    def error(self, message: str) -> ConfigError:
        """A :class:`ConfigError` for ``message`` that names this file and the next command."""
        return _located(self.path, message)


def _located(path: Path, message: str) -> ConfigError:
    if str(path) not in message:
        message = f"{path}: {message}"
    if "`hermes-patch" not in message:
        return ConfigError(Failure(message, path, next_command=f"edit the file, then {run(STATUS)}"))
    return ConfigError(message)


_TOP_KEYS = {"patches", "patch_dirs", "allow_version", "python"}


def load_config(path: Path | None) -> Config:
    """Read and validate the configuration.

    Args:
        path: ``--config`` value, or ``None`` for the default location.

    Raises:
        ConfigError: unreadable file, TOML syntax error, unknown top-level
            key, a table of the wrong type, or ``enabled`` not a boolean.
            Unknown patch ids and parameters are checked later, against the
            catalog (:func:`check_ids`).
    """
    explicit = path is not None
    path = (path or default_config_path()).expanduser()
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        if explicit:
            raise ConfigError(
                f"the configuration file {path} does not exist. Create it, or drop --config to use the defaults: `hermes-patch status`."
            ) from None
        return Config(path=path, exists=False)
    except OSError as exc:
        raise _located(path, f"the configuration file {path} cannot be read: {exc.strerror}") from None
    guard_path(path, f"the configuration file {path}")
    return config_from_bytes(data, path)


def config_from_bytes(data: bytes, path: Path) -> Config:
    """Validate configuration ``data`` as if read from ``path`` (``setup`` checks its result with it before writing).

    Raises:
        ConfigError: as :func:`load_config`.
    """
    try:
        raw = tomllib.loads(data.decode("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise _located(path, f"the configuration file {path} is not valid TOML: {exc}") from None
    except RecursionError:
        raise _located(
            path,
            f"the configuration file {path} nests arrays or tables too deeply to read (a configuration needs two levels)",
        ) from None
    unknown = sorted(set(raw) - _TOP_KEYS)
    if unknown:
        raise _located(
            path,
            f"{path}: unknown key(s) {', '.join(unknown)}; the configuration takes python, patch_dirs, allow_version and [patches.<id>] tables.",
        )
    patches = raw.get("patches", {})
    if not isinstance(patches, dict) or not all(isinstance(v, dict) for v in patches.values()):
        raise _located(path, f"{path}: `patches` must be tables, one per patch: [patches.<id>].")
    for pid, table in patches.items():
        if "enabled" in table and not isinstance(table["enabled"], bool):
            raise _located(path, f"{path}: [patches.{pid}] enabled must be true or false.")
    dirs = raw.get("patch_dirs", [])
    if not isinstance(dirs, list) or not all(isinstance(d, str) for d in dirs):
        raise _located(path, f"{path}: patch_dirs must be a list of folder paths.")
    allow_version = raw.get("allow_version", False)
    if not isinstance(allow_version, bool):
        raise _located(path, f"{path}: allow_version must be true or false.")
    python = raw.get("python")
    if python is not None and (not isinstance(python, str) or not Path(python).expanduser().is_absolute()):
        raise _located(
            path,
            f"{path}: python must be the absolute path of the interpreter Hermes runs with, "
            'e.g. python = "/home/me/.hermes/hermes-agent/venv/bin/python".',
        )
    base = path.parent
    patch_dirs = tuple((base / Path(d).expanduser()).resolve() for d in dirs)
    for directory in patch_dirs:
        guard_path(directory, f"the patch folder {directory} (patch_dirs in {path}; its modules are imported)")
    return Config(
        path=path,
        exists=True,
        patch_dirs=patch_dirs,
        patches=patches,
        allow_version=allow_version,
        python=Path(python).expanduser() if python is not None else None,
    )


def guard_path(path: Path, what: str) -> None:
    """Refuse a configuration file or patch folder another user could change (it steers or imports code).

    Raises:
        ConfigError: naming the owner, or the write bit and ``chmod go-w``.
    """
    from hermes_patch.trust import refusal, why_untrusted

    found = why_untrusted(path)
    if found:
        culprit = found[0].split(" is ")[0]
        raise ConfigError(
            refusal(
                what,
                found,
                f"{remove_others_write(culprit)} and {RUN_AGAIN}",
            )
            + " Under sudo, `sudo -E` brings the invoking user's HERMES_PATCH_CONFIG and XDG_CONFIG_HOME along: give root "
            "its own configuration with --config."
        )


def check_ids(config: Config, known: list[str]) -> None:
    """Refuse tables for patch ids that no catalog entry has.

    Raises:
        ConfigError: naming the unknown id and listing the known ones.
    """
    unknown = sorted(set(config.patches) - set(known))
    if unknown:
        raise ConfigError(
            f"{config.path}: no patch has the id {', '.join(unknown)}. Known ids: {', '.join(sorted(known))} "
            "(`hermes-patch list`)."
        )
