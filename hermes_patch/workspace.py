"""The files of one Hermes package (``hermes_cli/``) as patches see them.

A :class:`Workspace` loads module files lazily, caches their
:class:`~hermes_patch.source.Source` (bytes, text, ast), and can carry
in-memory edits so the engine can re-detect a result before writing it.
It also answers the ``ast`` questions every patch asks: where a top-level
name is bound, and which module a name really lives in (upstream moves
functions between sibling modules; we follow the import).
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

from hermes_patch.errors import TargetError
from hermes_patch.fileio import read_bytes
from hermes_patch.source import Source, first_line

__all__ = ["Workspace", "Binding", "first_line"]


@dataclass(frozen=True)
class Binding:
    """Where a top-level name is bound.

    Attributes:
        file: module file name inside the package (``"web_server.py"``).
        node: the binding statement (``FunctionDef``, ``Assign``,
            ``AnnAssign`` or ``ImportFrom``).
        first, last: its line span (1-based, inclusive; decorators included).
    """

    file: str
    node: ast.stmt
    first: int
    last: int


class Workspace:
    """Module files of one package, read on demand.

    Args:
        package_dir: the ``hermes_cli`` directory.
        entry: the module patches start from; normally ``web_server.py``,
            but ``--file`` may name a file with another name.
        overrides: file name to replacement text, for re-detection of an
            edit that is not written yet.
    """

    def __init__(self, package_dir: Path, entry: str = "web_server.py", overrides: dict[str, str] | None = None, sources: dict[str, Source] | None = None) -> None:
        self.package_dir = package_dir
        self.entry = entry
        self._sources: dict[str, Source] = dict(sources or {})
        self._overrides = dict(overrides or {})
        self._missing: set[str] = set()
        self._edited: dict[tuple[tuple[str, str], ...], Workspace] = {}
        self._index: dict[str, dict[str, list[int]]] = {}

    def with_edits(self, edits: dict[str, str]) -> "Workspace":
        """A new workspace that sees ``edits`` (file name to text) instead of the disk.

        The same edits give back the same workspace object, so a result that
        was parsed to verify it is not parsed again to record it.
        """
        key = tuple(sorted(edits.items()))
        if key not in self._edited:
            self._edited[key] = self._with_edits(edits)
        return self._edited[key]

    def _with_edits(self, edits: dict[str, str]) -> "Workspace":
        sources = {name: src for name, src in self._sources.items() if name not in edits}
        for name, text in edits.items():
            base = self.source(name)
            assert base is not None
            sources[name] = Source(path=base.path, data=base.encode(text), encoding=base.encoding, text=text)
        return Workspace(self.package_dir, self.entry, sources=sources)

    def path(self, name: str) -> Path:
        """Absolute path of module file ``name`` in the package."""
        return self.package_dir / name

    def source(self, name: str) -> Source | None:
        """The :class:`Source` of module file ``name``, or ``None`` if it does not exist.

        Raises:
            TargetError: the file exists but cannot be read or decoded.
        """
        if name in self._sources:
            return self._sources[name]
        if name in self._missing:
            return None
        path = self.path(name)
        if name != self.entry and not path.is_file():
            self._missing.add(name)
            return None
        src = Source.from_bytes(read_bytes(path), path)
        text = src.text
        if "\r" in text and "\n" not in text:
            raise TargetError(
                f"{path} ends its lines with a lone carriage return (classic Mac OS style), which no Hermes "
                "release ships; hermes-patch edits LF and CRLF files only. Restore the file from the release "
                "(`hermes update`, or `pip install --force-reinstall --no-deps hermes-agent==<version>`), then "
                "run `hermes-patch status`."
            )

        self._sources[name] = src
        return src

    def entry_source(self) -> Source:
        """The entry module (``web_server.py``); it must exist."""
        src = self.source(self.entry)
        if src is None:  # pragma: no cover - source() raises for the entry
            raise TargetError(f"{self.path(self.entry)} does not exist")
        return src

    def loaded(self) -> dict[str, Source]:
        """Every module file read so far, by name."""
        return dict(self._sources)

    # -- ast questions -----------------------------------------------------

    def binding(self, name: str, file: str | None = None) -> list[Binding]:
        """Every top-level statement of ``file`` (default: the entry) that binds ``name``.

        Counts ``def``/``async def``/``class``, plain and annotated
        assignments to the bare name, and ``from x import y as name``.
        Assignments nested in ``if``/``try`` are not top-level and not counted.
        """
        file = file or self.entry
        src = self.source(file)
        if src is None:
            return []
        if file not in self._index:  # one pass per file instead of one per question
            self._index[file] = _bound_names(src)
        body, spans = src.tree.body, src.spans
        return [Binding(file, body[i], *spans[i]) for i in self._index[file].get(name, ())]

    def rebound(self, name: str, b: Binding) -> str | None:
        """Why editing ``b`` would be wrong when ``name`` is bound again at the top of its file, else ``None``.

        Python keeps the last binding, so a guard added to the first of two
        ``def``s (or to a ``def`` later replaced by an assignment) would never run.
        """
        again = [x for x in self.binding(name, b.file) if x.first != b.first]
        if not again:
            return None
        lines = ", ".join(str(x.first) for x in again)
        return f"{name} is bound {1 + len(again)} times at the top of {b.file} (lines {b.first}, {lines}); the last one wins, so an edit of the first would do nothing"

    def closest(self, name: str, file: str | None = None) -> str:
        """A hint for messages: top-level names of ``file`` that look like ``name``.

        Returns ``"closest: a, b"`` or ``"no similar top-level name"``.
        """
        import difflib

        src = self.source(file or self.entry)
        names: list[str] = []
        for node in src.tree.body if src is not None else []:
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                names.append(node.name)
            elif isinstance(node, ast.Assign):
                names.extend(t.id for t in node.targets if isinstance(t, ast.Name))
            elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
                names.append(node.target.id)
        close = difflib.get_close_matches(name, names, n=3, cutoff=0.6)
        return f"closest: {', '.join(close)}" if close else "no similar top-level name"

    def resolve(self, name: str) -> Binding | None:
        """Find where ``name`` is defined, following one ``from hermes_cli.X import name``.

        Returns the defining binding (never the import) when the name is
        defined in the entry module or in a sibling module it imports the
        name from; ``None`` when it is neither.
        """
        here = self.binding(name)
        for b in here:
            if not isinstance(b.node, ast.ImportFrom):
                return b
        for b in here:
            assert isinstance(b.node, ast.ImportFrom)
            sibling = _sibling_module(b.node, self.package_dir.name)
            if sibling is None:
                continue
            original = next(a.name for a in b.node.names if (a.asname or a.name) == name)
            for target in self.binding(original, sibling):
                if not isinstance(target.node, ast.ImportFrom):
                    return target
        return None


def _bound_names(src: Source) -> dict[str, list[int]]:
    """Name → indexes of the top-level statements binding it (one pass; see :meth:`Workspace.binding`)."""
    out: dict[str, list[int]] = {}
    for index, node in enumerate(src.tree.body):
        for name in dict.fromkeys(_names_bound(node)):
            out.setdefault(name, []).append(index)
    return out


def _names_bound(node: ast.stmt) -> list[str]:
    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
        return [node.name]
    if isinstance(node, ast.Assign):
        return [t.id for t in node.targets if isinstance(t, ast.Name)]
    if isinstance(node, ast.AnnAssign):
        return [node.target.id] if isinstance(node.target, ast.Name) and node.value is not None else []
    if isinstance(node, ast.ImportFrom):
        return [a.asname or a.name for a in node.names]
    return []


def _sibling_module(node: ast.ImportFrom, package: str) -> str | None:
    """``from hermes_cli.ws_policy import x`` or ``from .ws_policy import x`` → ``ws_policy.py``."""
    module = node.module or ""
    if node.level == 1 and module and "." not in module:
        return f"{module}.py"
    if node.level == 0 and module.startswith(package + "."):
        rest = module[len(package) + 1 :]
        return rest.replace(".", "/") + ".py"
    return None
