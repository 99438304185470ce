"""The files of one Hermes package (``hermes_cli/``) as patches see them.

A :class:`Workspace` loads module files lazily, caches their
:class:`~hermes_patch.core.source.Source` (bytes, text, ast), and can carry
in-memory edits so the engine can re-detect a result before writing it.
It also answers the ``ast`` questions every patch asks: where a top-level
name is bound, and which module a name really lives in (upstream moves
functions between sibling modules; we follow the import).
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from typing import TYPE_CHECKING, Mapping, Protocol
from pathlib import Path

from hermes_patch.core.errors import TargetError
from hermes_patch.core.messages import Failure, orphaned_marker, restore_from_release
from hermes_patch.core.source import Source, first_line

if TYPE_CHECKING:
    from hermes_patch.core.patch import Block

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


class Files(Protocol):
    """Where a workspace's module files come from; the shell decides (the disk, a git ref, a wheel, strings).

    The core never opens a file itself: :class:`Workspace` asks this object.
    """

    def read(self, name: str) -> bytes | None:
        """The bytes of module file ``name`` (relative to the package), ``None`` when it does not exist.

        Raises:
            TargetError: the file exists but cannot be read.
        """
        ...

    def names(self) -> list[str]:
        """Every module file of the package, relative names, sorted (two levels deep)."""
        ...


class MemoryFiles:
    """:class:`Files` held in memory: module name to bytes (``check --ref/--wheel``, tests, EXAMPLES)."""

    def __init__(self, files: Mapping[str, bytes]) -> None:
        self.files = dict(files)

    def read(self, name: str) -> bytes | None:
        return self.files.get(name)

    def names(self) -> list[str]:
        return sorted(n for n in self.files if n.endswith(".py") and n.count("/") <= 1)


class Workspace:
    """Module files of one package, read on demand.

    Args:
        package_dir: the ``hermes_cli`` directory.
        entry: the module patches start from; normally ``web_server.py``,
            but ``--file`` may name a file with another name.
    """

    def __init__(
        self,
        package_dir: Path,
        entry: str = "web_server.py",
        sources: dict[str, Source] | None = None,
        *,
        files: Files | Mapping[str, bytes],
    ) -> None:
        """See the class docstring.

        ``files`` says where module files come from: a :class:`Files` (the
        shell passes :class:`hermes_patch.fileio.DiskFiles` for an install),
        or a mapping of module name to bytes (code that is not installed: a
        git ref, a wheel, an example); :func:`hermes_patch.fileio.on_disk`
        makes one for a folder.
        """
        self.package_dir = package_dir
        self.entry = entry
        if isinstance(files, Mapping):
            files = MemoryFiles(files)
        self._files: Files = files
        self._sources: dict[str, Source] = dict(sources or {})
        self._missing: set[str] = set()
        self._edited: dict[tuple[tuple[str, str], ...], Workspace] = {}
        self._index: dict[str, dict[str, list[int]]] = {}
        self._modules: list[str] | None = None
        self._pristine: Workspace | None = None
        # Texts this workspace's family already parsed (the sources an edit replaced): the pristine view of a
        # result whose blocks are removed again is usually one of them, and is not parsed twice.
        self._known: dict[str, Source] = {}
        self._raw: Workspace | None = None
        self._blocks: dict[str, list[Block]] = {}
        self._base: Workspace | None = None  # the workspace with_edits() made this one from

    def pristine(self) -> "Workspace":
        """This workspace as the release shipped it: every file without any hermes-patch block.

        Files are read through this workspace and stripped of our marked
        blocks (:func:`hermes_patch.core.patch.remove_blocks`, the generic undo)
        on first use; a file without a marker is the very same
        :class:`Source`, so it is parsed once. ``locate()`` runs here, so a
        patch never sees its own (or another patch's) edits.

        Raises:
            TargetError: a file cannot be read, or holds an orphaned marker.
        """
        if self._raw is not None:
            return self
        if self._pristine is None:
            self._pristine = Workspace(self.package_dir, self.entry, files=self._files)
            self._pristine._raw = self
        return self._pristine

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
        known = {**self._known, **{src.text: src for src in self._sources.values()}}
        if self._pristine is not None:
            # A revert's result is the pristine view of what it reverted: that text was parsed already.
            known.update({src.text: src for src in self._pristine._sources.values()})
        for name, text in edits.items():
            base = self.source(name)
            assert base is not None
            same = known.get(text)
            if same is not None and same.path == base.path and same.encoding == base.encoding:
                sources[name] = same
            else:
                sources[name] = base.edited(text)
        new = Workspace(self.package_dir, self.entry, sources=sources, files=self._files)
        new._known = known
        new._base = self
        return new

    def derived_from(self) -> "Workspace | None":
        """For a pristine view of an edited workspace: the pristine view of the one it was made from, if built."""
        base = self._raw._base if self._raw is not None else None
        return base._pristine if base is not None else None

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
        if self._raw is not None:
            return self._stripped(name)
        path = self.path(name)
        data = self._files.read(name)
        if data is None:
            if name == self.entry:
                raise TargetError(f"{path} does not exist in that code, so it holds no Hermes dashboard server.")
            self._missing.add(name)
            return None
        src = Source.from_bytes(data, path)
        text = src.text
        if "\r" in text and "\n" not in text:
            raise TargetError(
                Failure(
                    f"{path} ends its lines with a lone carriage return (classic Mac OS style)",
                    path,
                    cause="no Hermes release ships one; hermes-patch edits LF and CRLF files only",
                    next_command=restore_from_release(path=path),
                )
            )

        self._sources[name] = src
        return src

    def blocks(self, name: str) -> list[Block]:
        """Every hermes-patch block in module file ``name`` (none when it is missing), found once per workspace.

        Raises:
            TargetError: the file cannot be read, or a marker comment is
                orphaned (hand-edited): hermes-patch will not guess.
        """
        if name not in self._blocks:
            from hermes_patch.core.patch import MARKER_PREFIX, find_blocks

            src = self.source(name)
            found = find_blocks(src) if src is not None and MARKER_PREFIX in src.text else []
            if isinstance(found, str):
                assert src is not None
                raise TargetError(orphaned_marker(src.path, found))
            self._blocks[name] = found
        return self._blocks[name]

    def _stripped(self, name: str) -> Source | None:
        from hermes_patch.core.patch import remove_blocks

        assert self._raw is not None
        raw = self._raw.source(name)
        if raw is None:
            self._missing.add(name)
            return None
        blocks = self._raw.blocks(name)
        if not blocks:
            self._sources[name] = raw
            return raw
        text = remove_blocks(raw.text, raw.line_starts, blocks)
        src = self._raw._known.get(text) if self._raw._known else None
        if src is None:
            src = Source(path=raw.path, data=raw.encode(text), encoding=raw.encoding, text=text)
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

    def missing(self) -> frozenset[str]:
        """Every module file looked for so far that does not exist."""
        return frozenset(self._missing)

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

    def resolve(self, name: str, file: str | None = None) -> Binding | None:
        """Find where ``name`` is defined, following imports between ``hermes_cli`` modules.

        Args:
            name: a top-level name of ``file``.
            file: the module to start from (default: the entry).

        Returns the defining binding (never the import) of ``name`` in
        ``file`` or in the module it gets the name from, following up to
        :data:`MAX_HOPS` hops of ``from hermes_cli.X import name [as y]``
        (relative imports too) and of upstream's late-binding seam
        ``name = late("name", "hermes_cli.X")`` (upstream main from September
        2026, ``hermes_cli/web_deps.py``); ``None`` when the chain leaves the
        package, loops or ends without a definition.
        """
        seen: set[tuple[str, str]] = set()
        file = file or self.entry
        for _ in range(MAX_HOPS):
            if (file, name) in seen:
                return None
            seen.add((file, name))
            here = self.binding(name, file)
            for b in here:
                if not isinstance(b.node, ast.ImportFrom) and _late_target(b.node, self.package_dir.name) is None:
                    return b
            hop = None
            for b in here:
                if isinstance(b.node, ast.ImportFrom):
                    sibling = _sibling_module(b.node, self.package_dir.name, file)
                    if sibling is not None:
                        hop = (sibling, next(a.name for a in b.node.names if (a.asname or a.name) == name))
                else:
                    hop = _late_target(b.node, self.package_dir.name)
                if hop is not None:
                    break
            if hop is None:
                return None
            file, name = hop
        return None

    def importers(self, name: str, file: str) -> list[str]:
        """Modules of the package that get ``name`` from ``file`` (an import or a late binding), by file name.

        The other direction of :meth:`resolve`: used when the entry module no
        longer imports a name and the routes that use it live elsewhere
        (``web_routers/*.py`` on upstream main, September 2026). Only files
        whose bytes mention ``name`` are parsed.
        """
        out = []
        for other in self.files_mentioning(name):
            if other == file:
                continue
            b = self.resolve(name, other)
            if b is not None and b.file == file:
                out.append(other)
        return out

    def modules(self) -> list[str]:
        """Every module file of the package, as names relative to it (``"web_routers/chat_ws.py"``), sorted.

        Two levels deep (upstream keeps its route modules in one sub-package);
        ``__pycache__``, hidden folders and symbolic links to folders are skipped.
        """
        if self._modules is None:
            self._modules = self._files.names()
        return list(self._modules)

    def files_mentioning(self, text: str) -> list[str]:
        """Module files whose bytes (or loaded text) contain ``text``; a cheap filter before parsing.

        A file that cannot be read is left out here; :meth:`source` reports it
        when a patch needs it.
        """
        needle = text.encode("utf-8")
        out = []
        for name in self.modules():
            if name in self._sources:
                if text in self._sources[name].text:
                    out.append(name)
                continue
            try:
                data = self._files.read(name)
            except TargetError:
                continue
            if data is not None and needle in data:
                out.append(name)
        return out


MAX_HOPS = 6


def _late_target(node: ast.stmt, package: str) -> tuple[str, str] | None:
    """``x = late("x", "hermes_cli.web_server_chat")`` → (``"web_server_chat.py"``, ``"x"``), else ``None``.

    Upstream's late-binding seam (``hermes_cli/web_deps.py``, September 2026):
    a module-level name that looks the function up in another module when
    called. Its second argument defaults to ``hermes_cli.web_server``.
    """
    if not isinstance(node, ast.Assign) or len(node.targets) != 1 or not isinstance(node.targets[0], ast.Name):
        return None
    call = node.value
    if not (
        isinstance(call, ast.Call) and isinstance(call.func, ast.Name) and call.func.id == "late" and not call.keywords
    ):
        return None
    args = call.args
    if not 1 <= len(args) <= 2 or not all(isinstance(a, ast.Constant) and isinstance(a.value, str) for a in args):
        return None
    name = args[0].value  # type: ignore[attr-defined]
    module = args[1].value if len(args) == 2 else f"{package}.web_server"  # type: ignore[attr-defined]
    if not module.startswith(package + "."):
        return None
    return module[len(package) + 1 :].replace(".", "/") + ".py", name


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


def _sibling_module(node: ast.ImportFrom, package: str, importer: str = "") -> str | None:
    """The module file an import reads from, relative to the package, or ``None`` outside it.

    ``from hermes_cli.ws_policy import x`` or ``from .ws_policy import x`` (in
    ``web_server.py``) → ``ws_policy.py``; ``from hermes_cli.web_routers.actions
    import x`` → ``web_routers/actions.py``; ``from ..web_server_chat import x``
    in ``web_routers/chat_ws.py`` → ``web_server_chat.py``.
    """
    module = node.module or ""
    if node.level == 0:
        if module.startswith(package + "."):
            return module[len(package) + 1 :].replace(".", "/") + ".py"
        return None
    base = importer.split("/")[:-1]
    if node.level - 1 > len(base) or not module:
        return None
    parts = base[: len(base) - (node.level - 1)] + module.split(".")
    return "/".join(parts) + ".py"
