"""Architecture rules of ``core/``, checked on the source with the standard library
(``ast``): nothing is imported.

1. No import cycles among core modules. The graph has an edge A -> B for every
   module-level ``import``/``from ... import`` in A that names core module B (a
   submodule when the imported name is one, else the package); imports under
   ``if TYPE_CHECKING:`` are left out (they never run).
2. No imports inside functions, except of an optional heavy dependency in
   :data:`OPTIONAL_DEPS`, and then with a comment on the same or the previous line
   saying why.
3. ``core`` never imports Streamlit (anywhere, at any depth).
4. No module in ``core/`` is over :data:`MAX_LINES` lines; ``core/workspace.py`` is
   under :data:`MAX_WORKSPACE_LINES`.
5. The layer order of docs/architecture.md (:data:`LAYERS`, bottom first): every module
   belongs to one layer and imports (at module level) only its own layer and those below.
6. ``core`` and ``app`` are installed packages (pyproject's package list holds every folder
   of theirs), and nothing in ``core/``, ``app/`` or ``pages/`` edits ``sys.path``.
7. No ``verb``/``noun`` string literal in ``core/``, ``app/`` or ``pages/`` outside the
   EPIC and demo sources (:data:`VOCABULARY_OWNERS`): every other module loops over the
   tasks a dataset declares.

Each check is a function of a source folder, so the tests at the bottom also run it on
small synthetic trees to show that it catches what it should.
"""

from __future__ import annotations

import ast
import fnmatch
import functools
import re
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

ROOT = Path(__file__).resolve().parents[1]
CORE = ROOT / "core"

#: Third-party packages core may import inside a function: optional or heavy, and
#: needed only on some paths (the import there says why in a comment).
OPTIONAL_DEPS = frozenset({"ray", "tqdm", "av", "simplejpeg", "gulpio2", "onnxruntime", "onnx", "torchvision"})
MAX_LINES = 600
MAX_WORKSPACE_LINES = 300
#: Folders whose modules may not spell a task (rule 7), and the files that may: the EPIC
#: and demo sources, which declare verb and noun (paths from the project root, fnmatch
#: patterns; a trailing "/" takes a whole folder).
TASK_CHECKED = ("core", "app", "pages")
VOCABULARY_OWNERS = ("core/data/epic*.py", "core/data/sources/epic*.py", "core/data/demo/", "core/data/sources/demo.py",
                     "core/backbones/demo_cnn.py")
# A task word as a part of a name-like string ("verb", "noun_class", "fc2_verb", "nouns"),
# not inside another word ("adverb", "verbose"); prose (any whitespace) is not a name.
TASK_WORD = re.compile(r"(?<![a-z])(?:verb|noun)s?(?![a-z])", re.IGNORECASE)

#: The layers of ``core/``, bottom first, as docs/architecture.md draws them (its arrows, "may be
#: imported by", point up this list). An entry is a module or a package (with everything below
#: it; the longest entry that holds a module decides; the top package ``core`` holds only its
#: ``__init__``). ``core.data.sources`` sits above the backbones: a source names its encoder.
LAYERS: tuple[tuple[str, ...], ...] = (
    ("core", "core.runtime", "core.errors", "core.io_utils", "core.paths", "core.commands", "core.video", "core.video_decode"),
    ("core.data",),
    ("core.backbones",),
    ("core.data.sources",),
    ("core.features", "core.feature_extraction", "core.frame_reader", "core.extraction"),
    ("core.models",),
    ("core.shapley",),
    ("core.esv",),
    ("core.attribution",),
    ("core.explain",),
    ("core.pipeline",),
    ("core.workspace",),
    ("core.analysis",),
    ("core.distributed",),
    ("core.cli", "core.cli_checks", "core.cli_released", "core.cli_models", "core.cli_onnx", "core.__main__"),
)


# --------------------------------------------------------------------------- reading the source


@dataclass(frozen=True)
class Import:
    """One ``import`` statement: where, what (absolute module names), and in which context."""

    path: Path
    lineno: int
    modules: tuple[str, ...]  # absolute dotted names it imports (``from a import b`` gives a.b and a)
    in_function: bool
    type_checking: bool
    commented: bool  # a comment on the same or the previous line
    text: str  # the statement's first line, for messages


def module_name(path: Path, root: Path) -> str:
    """``root/pkg/sub/mod.py`` -> ``pkg.sub.mod`` (``__init__.py`` names its package);
    ``root`` is the folder that holds the top-level package."""
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _resolve(node: ast.ImportFrom, module: str, is_package: bool) -> str:
    """The absolute module a ``from`` import reads from (relative imports resolved)."""
    if not node.level:
        return node.module or ""
    package = module.split(".") if is_package else module.split(".")[:-1]
    base = package[: len(package) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def _has_comment(lines: list[str], lineno: int) -> bool:
    here = lines[lineno - 1] if 0 < lineno <= len(lines) else ""
    before = lines[lineno - 2].strip() if lineno >= 2 else ""
    return "#" in here or before.startswith("#")


@functools.lru_cache(maxsize=None)  # each rule reads every file: parse once per session
def imports_of(path: Path, root: Path) -> tuple[Import, ...]:
    """Every import statement of the file at ``path`` (a module below ``root``)."""
    text = path.read_text(encoding="utf-8")
    lines = text.splitlines()
    module = module_name(path, root)
    is_package = path.name == "__init__.py"
    found: list[Import] = []

    def visit(node: ast.AST, in_function: bool, type_checking: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.Import):
                names = tuple(a.name for a in child.names)
            elif isinstance(child, ast.ImportFrom):
                base = _resolve(child, module, is_package)
                names = tuple(f"{base}.{a.name}" for a in child.names if a.name != "*") + (base,)
            else:
                if isinstance(child, ast.If) and _is_type_checking(child.test):
                    # only the body is TYPE_CHECKING-only; the else branch runs
                    for stmt in child.body:
                        visit(ast.Module(body=[stmt], type_ignores=[]), in_function, True)
                    for stmt in child.orelse:
                        visit(ast.Module(body=[stmt], type_ignores=[]), in_function, type_checking)
                    continue
                func = isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
                visit(child, in_function or func, type_checking)
                continue
            line = lines[child.lineno - 1].split("#")[0].strip()
            found.append(Import(path, child.lineno, names, in_function, type_checking, _has_comment(lines, child.lineno), line))

    visit(ast.parse(text, filename=str(path)), False, False)
    return tuple(found)


def package_modules(package_dir: Path) -> dict[str, Path]:
    """``{dotted module name: file}`` of every ``.py`` file below ``package_dir``."""
    root = package_dir.parent
    return {module_name(p, root): p for p in sorted(package_dir.rglob("*.py"))}


# --------------------------------------------------------------------------- the checks


def import_graph(package_dir: Path) -> dict[str, set[str]]:
    """Module -> the package's modules it imports at module level (TYPE_CHECKING left out)."""
    modules = package_modules(package_dir)
    graph: dict[str, set[str]] = {m: set() for m in modules}
    for name, path in modules.items():
        for imp in imports_of(path, package_dir.parent):
            if imp.in_function or imp.type_checking:
                continue
            for target in imp.modules:
                # `from pkg import sub` names a module only when sub is one; else it reads pkg
                if target in modules and target != name:
                    graph[name].add(target)
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of ``graph`` as ``[a, b, ..., a]``, or None (iterative DFS, three colours)."""
    WHITE, GREY, BLACK = 0, 1, 2
    colour = dict.fromkeys(graph, WHITE)
    for start in sorted(graph):
        if colour[start] != WHITE:
            continue
        stack: list[tuple[str, list[str]]] = [(start, sorted(graph[start]))]
        path = [start]
        colour[start] = GREY
        while stack:
            node, todo = stack[-1]
            if not todo:
                colour[node] = BLACK
                stack.pop()
                path.pop()
                continue
            nxt = todo.pop(0)
            if colour.get(nxt, BLACK) == GREY:
                return path[path.index(nxt):] + [nxt]
            if colour.get(nxt) == WHITE:
                colour[nxt] = GREY
                path.append(nxt)
                stack.append((nxt, sorted(graph[nxt])))
    return None


def function_import_violations(package_dir: Path, allowed: frozenset[str] = OPTIONAL_DEPS) -> list[str]:
    """Imports inside functions that are not of an allowed optional dependency with a
    comment saying why, as ``path:line: reason``."""
    out = []
    for path in package_modules(package_dir).values():
        for imp in imports_of(path, package_dir.parent):
            if not imp.in_function:
                continue
            where = f"{path.relative_to(package_dir.parent)}:{imp.lineno}"
            tops = {m.split(".")[0] for m in imp.modules}
            if not tops <= allowed:
                out.append(f"{where}: `{imp.text}` inside a function")
            elif not imp.commented:
                out.append(f"{where}: `{imp.text}` (optional dependency) without a comment saying why")
    return out


def imports_of_package(package_dir: Path, banned: str) -> list[str]:
    """Every import (at any depth) of ``banned`` or its submodules, as ``path:line``."""
    out = []
    for path in package_modules(package_dir).values():
        for imp in imports_of(path, package_dir.parent):
            if any(m == banned or m.startswith(banned + ".") for m in imp.modules):
                out.append(f"{path.relative_to(package_dir.parent)}:{imp.lineno}")
    return out


def long_modules(package_dir: Path, limit: int) -> list[str]:
    """Modules with more than ``limit`` lines, as ``path (n lines)``."""
    out = []
    for path in package_modules(package_dir).values():
        n = len(path.read_text(encoding="utf-8").splitlines())
        if n > limit:
            out.append(f"{path.relative_to(package_dir.parent)} ({n} lines)")
    return out


def layer_of(module: str, layers: tuple[tuple[str, ...], ...]) -> int | None:
    """The index of the layer holding ``module`` (its longest matching entry), None when none does."""
    top = module.split(".")[0]
    best: tuple[int, int] | None = None  # (entry length, layer)
    for index, entries in enumerate(layers):
        for entry in entries:
            holds = module == entry or (entry != top and module.startswith(entry + "."))
            if holds and (best is None or len(entry) > best[0]):
                best = (len(entry), index)
    return None if best is None else best[1]


def layer_violations(package_dir: Path, layers: tuple[tuple[str, ...], ...]) -> list[str]:
    """Modules in no layer, and module-level imports of a layer above the importer's, as
    ``module (layer) imports target (layer)``; the layer is named by its first entry."""
    graph = import_graph(package_dir)
    out = [f"{m} is in no layer: add it to LAYERS" for m in sorted(graph) if layer_of(m, layers) is None]
    for module in sorted(graph):
        here = layer_of(module, layers)
        for target in sorted(graph[module]):
            there = layer_of(target, layers)
            if here is not None and there is not None and there > here:
                out.append(f"{module} ({layers[here][0]}) imports {target} ({layers[there][0]}), a layer above its own")
    return out


def path_edits(folder: Path) -> list[str]:
    """Every use of ``sys.path`` in the ``.py`` files below ``folder``, as ``path:line``."""
    out = []
    for path in sorted(folder.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
            if isinstance(node, ast.Attribute) and node.attr == "path" and isinstance(node.value, ast.Name) and node.value.id == "sys":
                out.append(f"{path.relative_to(folder.parent)}:{node.lineno}")
    return out


def uninstalled_folders(root: Path, tops: tuple[str, ...], include: list[str]) -> list[str]:
    """Folders below ``root/<top>`` holding ``.py`` files that an install leaves out: no
    ``__init__.py`` (not a package), or a dotted name no ``include`` pattern matches."""
    folders = sorted({p.parent for top in tops for p in (root / top).rglob("*.py")})
    out = []
    for folder in folders:
        name = ".".join(folder.relative_to(root).parts)
        if not (folder / "__init__.py").is_file():
            out.append(f"{name}: no __init__.py")
        elif not any(fnmatch.fnmatchcase(name, pattern) for pattern in include):
            out.append(f"{name}: not in pyproject's packages")
    return out


def _owned(rel: str, owners: Sequence[str]) -> bool:
    return any(rel.startswith(o) if o.endswith("/") else fnmatch.fnmatchcase(rel, o) for o in owners)


def task_literals(root: Path, folders: Sequence[str], owners: Sequence[str]) -> list[str]:
    """String constants (f-string parts included) that name a task, ``path:line: 'value'``,
    in the ``.py`` files under ``root/<folder>`` that ``owners`` does not cover."""
    out = []
    for folder in folders:
        for path in sorted((root / folder).rglob("*.py")):
            rel = path.relative_to(root).as_posix()
            if _owned(rel, owners):
                continue
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
                value = node.value if isinstance(node, ast.Constant) else None
                if isinstance(value, str) and value and not any(c.isspace() for c in value) and TASK_WORD.search(value):
                    out.append((rel, node.lineno, value))
    return [f"{rel}:{line}: {value!r}" for rel, line, value in sorted(out)]


# --------------------------------------------------------------------------- the rules on core/


def test_no_import_cycles_in_core() -> None:
    cycle = find_cycle(import_graph(CORE))
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def test_no_imports_inside_functions_in_core() -> None:
    bad = function_import_violations(CORE)
    assert not bad, "imports inside functions (only optional heavy dependencies, with a comment why):\n" + "\n".join(bad)


def test_core_imports_follow_the_documented_layer_order() -> None:
    bad = layer_violations(CORE, LAYERS)
    assert not bad, "imports against the layer order of docs/architecture.md:\n" + "\n".join(bad)


def test_core_and_app_are_installed_and_edit_no_path() -> None:
    """`streamlit run app/main.py` puts only app/ on the path: app and core come from the install."""
    include = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["setuptools"]["packages"]["find"]["include"]
    assert uninstalled_folders(ROOT, ("core", "app"), include) == []
    assert [edit for folder in ("core", "app", "pages") for edit in path_edits(ROOT / folder)] == []


def test_core_never_imports_streamlit() -> None:
    assert imports_of_package(CORE, "streamlit") == []


def test_no_module_in_core_over_600_lines() -> None:
    assert long_modules(CORE, MAX_LINES) == []


def test_workspace_under_300_lines() -> None:
    n = len((CORE / "workspace.py").read_text(encoding="utf-8").splitlines())
    assert n < MAX_WORKSPACE_LINES, f"core/workspace.py has {n} lines"


def test_no_task_literal_outside_the_epic_and_demo_sources() -> None:
    found = task_literals(ROOT, TASK_CHECKED, VOCABULARY_OWNERS)
    assert not found, "task names spelled outside the EPIC and demo sources (loop over the dataset's tasks instead):\n" + "\n".join(found)


# --------------------------------------------------------------------------- the checks themselves


def _tree(root: Path, files: dict[str, str]) -> Path:
    """Write ``files`` (relative path -> text) below ``root``; ``pkg/__init__.py`` is empty unless given."""
    for rel, text in {"pkg/__init__.py": "", **files}.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return root / "pkg"


def test_cycle_found_and_reported(tmp_path: Path) -> None:
    pkg = _tree(tmp_path, {
        "pkg/a.py": "from pkg.b import f\n",
        "pkg/b.py": "import pkg.sub.c\n",
        "pkg/sub/__init__.py": "",
        "pkg/sub/c.py": "from ..a import g\n",  # relative: pkg.a
    })
    assert import_graph(pkg)["pkg.sub.c"] == {"pkg.a"}
    assert find_cycle(import_graph(pkg)) == ["pkg.a", "pkg.b", "pkg.sub.c", "pkg.a"]


def test_no_cycle_through_type_checking_functions_or_package_reexports(tmp_path: Path) -> None:
    pkg = _tree(tmp_path, {
        "pkg/__init__.py": "from pkg.a import f\n",  # a package re-exporting its module is no cycle
        "pkg/a.py": (
            "from typing import TYPE_CHECKING\nimport os\n"
            "if TYPE_CHECKING:\n    from pkg.b import B\n"
            "def f():\n    # b is heavy\n    from pkg.b import g\n"
        ),
        "pkg/b.py": "from pkg import a\nfrom pkg.a import f\n",
    })
    graph = import_graph(pkg)
    assert graph == {"pkg": {"pkg.a"}, "pkg.a": set(), "pkg.b": {"pkg", "pkg.a"}}
    assert find_cycle(graph) is None
    assert find_cycle({"x": {"x2"}, "x2": {"y"}, "y": {"x2"}}) == ["x2", "y", "x2"]


def test_function_imports_need_an_optional_dependency_and_a_comment(tmp_path: Path) -> None:
    pkg = _tree(tmp_path, {
        "pkg/m.py": (
            "import json\n"  # line 1: module level, fine
            "def ok():\n"
            "    import ray  # optional: only the distributed engine needs it\n"
            "def ok_comment_above():\n"
            "    # tqdm is the CLI's dependency\n"
            "    from tqdm import tqdm\n"
            "def no_comment():\n"
            "    import ray\n"  # line 8
            "def internal():\n"
            "    from pkg import other  # a comment does not make an internal import fine\n"  # line 10
            "class K:\n"
            "    def method(self):\n"
            "        lambda: None\n"
            "        import numpy\n"  # line 14
        ),
    })
    bad = function_import_violations(pkg)
    assert [b.split(":")[1] for b in bad] == ["8", "10", "14"]
    assert "without a comment" in bad[0] and "from pkg import other" in bad[1] and "import numpy" in bad[2]


def test_streamlit_imports_found_at_any_depth(tmp_path: Path) -> None:
    pkg = _tree(tmp_path, {
        "pkg/m.py": "import streamlitish\ndef f():\n    import streamlit.components.v1 as c\n",
        "pkg/n.py": "from streamlit import session_state\n",
        "pkg/o.py": "import streamlit as st\n",
    })
    assert imports_of_package(pkg, "streamlit") == ["pkg/m.py:3", "pkg/n.py:1", "pkg/o.py:1"]


def test_long_modules_listed(tmp_path: Path) -> None:
    pkg = _tree(tmp_path, {"pkg/short.py": "x = 1\n" * 600, "pkg/sub/long.py": "x = 1\n" * 601})
    assert long_modules(pkg, 600) == ["pkg/sub/long.py (601 lines)"]


def test_upward_import_and_unlisted_module_found(tmp_path: Path) -> None:
    pkg = _tree(tmp_path, {
        "pkg/__init__.py": "from pkg.base import x\n",  # the top package re-exporting its base is fine
        "pkg/base.py": "import json\n",
        "pkg/low/__init__.py": "",
        "pkg/low/a.py": "from pkg.base import x\nfrom pkg.high.b import y\n",  # the second import points up
        "pkg/low/top/__init__.py": "",
        "pkg/low/top/c.py": "from pkg.high import b\n",  # its own (longer) entry puts it above pkg.high
        "pkg/high/__init__.py": "",
        "pkg/high/b.py": "from pkg.low import a\nfrom typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from pkg.low.top import c\n",
        "pkg/stray.py": "",
    })
    layers = (("pkg", "pkg.base"), ("pkg.low",), ("pkg.high",), ("pkg.low.top",))
    assert layer_of("pkg.low.top.c", layers) == 3 and layer_of("pkg.low.a", layers) == 1 and layer_of("pkg.stray", layers) is None
    assert layer_violations(pkg, layers) == [
        "pkg.stray is in no layer: add it to LAYERS",
        "pkg.low.a (pkg.low) imports pkg.high.b (pkg.high), a layer above its own",
    ]


def test_path_edits_and_uninstalled_folders_found(tmp_path: Path) -> None:
    _tree(tmp_path, {
        "pkg/m.py": "import sys\nfrom pathlib import Path\nsys.path.insert(0, str(Path(__file__).parent))\n",
        "pkg/sub/__init__.py": "",
        "pkg/sub/n.py": "import os\nos.path.join('a', 'b')\n",
        "pkg/loose/o.py": "import sys\nprint(sys.argv)\n",  # a folder without __init__.py
        "other/__init__.py": "",
    })
    assert path_edits(tmp_path / "pkg") == ["pkg/m.py:3"]
    assert uninstalled_folders(tmp_path, ("pkg", "other"), ["pkg*"]) == ["other: not in pyproject's packages", "pkg.loose: no __init__.py"]


def test_task_literals_found_outside_their_owners(tmp_path: Path) -> None:
    _tree(tmp_path, {
        "pkg/m.py": (
            'TASK = "verb"\n'  # line 1
            'label = f"noun_{i}"\n'  # line 2: an f-string's literal part
            'prose = "the verb heads of each task"\n'
            'words = ("verbose", "adverb", "pronounce")\n'
            'columns = {"Noun_Class": 1, "fc2_verbs": 2}\n'  # line 5
            'def f(verb_names):  # "verb" in a comment\n'
            '    return verb_names\n'
        ),
        "pkg/own/epic_layout.py": 'TASKS = ("verb", "noun")\n',
        "pkg/demo/plan.py": 'NOUN = "noun"\n',
    })
    found = task_literals(tmp_path, ["pkg"], owners=("pkg/own/epic*.py", "pkg/demo/"))
    assert found == ["pkg/m.py:1: 'verb'", "pkg/m.py:2: 'noun_'", "pkg/m.py:5: 'Noun_Class'", "pkg/m.py:5: 'fc2_verbs'"]
