"""The project's layering, read from the source with ``ast`` (imports inside functions included).

    rooms (bottom to top): libraries (datastore/, evaluation/) · foundation (t2m's flat modules) · model/,
    neighbours/ · decoding/ · knn/, training/ · application (cli/, bench/, serve/, recipes/, translate_job, ...)

Fails on
(a) ``evaluation`` or ``datastore`` importing ``t2m``;
(b) ``evaluation`` importing ``datastore`` or ``datastore`` importing ``evaluation``;
(c) an import cycle between files of the project (a package ``__init__``'s lazy ``_EXPORTS`` and ``t2m.cli``'s
    ``COMMANDS`` count as imports);
(d) a source file over ``MAX_FILE_LINES`` lines, except the ones in ``FILE_LINES_ALLOWED``;
(e) a function over ``MAX_FUNCTION_LINES`` lines, except the ones in ``FUNCTION_LINES_ALLOWED``;
(f) a module of t2m's core importing one of t2m's applications (:func:`is_application`);
(j) a room importing a room above it or beside it (``ROOMS``, ``ROOM_IMPORTS``; docs/architecture.md);
(k) a project import inside a function, unless the module imports one of ``LAZY_IMPORTS_ALLOWED`` at its top;
(g) command-line code outside ``t2m/cli/``: every ``t2m`` subcommand is a module ``t2m.cli.<command>`` with
    ``add_arguments`` and ``run``, and no other module parses arguments or runs as a script;
(h) a module outside ``t2m/cli/`` that imports ``argparse`` or names a command-line flag in a string (the core
    names options by field, ``num_beams=0``; the command line writes them as flags) -- a flag in a command shown
    whole (``t2m datastore build --overwrite``) or in the argument list of another program is no option of the
    call, and ``FLAG_NAMES_ALLOWED`` lists the files still allowed, each with why;
(i) a module reached by an import string other than the two tables the graph reads (``_EXPORTS``, ``COMMANDS``):
    no ``"module:function"`` strings, ``importlib.import_module`` only where ``DYNAMIC_IMPORTS_ALLOWED`` says.

The two allow-lists only shrink: split an offender, then delete its line (the test says when one is no
longer needed). See docs/architecture.md.
"""

from __future__ import annotations

import ast
import re
from collections import defaultdict
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("t2m", "datastore", "evaluation")
LIBRARIES = ("datastore", "evaluation")  # the bottom layer: they import neither t2m nor each other
MAX_FILE_LINES = 700
MAX_FUNCTION_LINES = 120

# Files over MAX_FILE_LINES today. Shrinking list: never add to it.
FILE_LINES_ALLOWED: set[str] = set()
# Functions over MAX_FUNCTION_LINES today ("path:qualified name"). Shrinking list: never add to it.
FUNCTION_LINES_ALLOWED: set[str] = set()
# Files outside t2m/cli/ whose strings may still name a flag (test (h)), and why. Shrinking list: never add to it.
FLAG_NAMES_ALLOWED: dict[str, str] = {
    "t2m/decoding/smiles_grammar.py": "the flags of an output row (FLAG_UNFINISHED, FLAG_BROKEN_SYNTAX) name --max-new-tokens "
                             "and --no-smiles-syntax; changing them changes recorded outputs",
    "t2m/bench/config.py": "command_line rebuilds a saved run's `t2m bench` command from bench.json (the flag "
                           "table beside BenchConfig's fields; the report and `t2m report` rewrite take it as text)",
    "t2m/recipes/ship_default_model.py": "the model card's text names `--system model` (t2m ship's output)",
    "evaluation/evaluate.py": "`t2m eval` remedies (--task), evaluation's own entry point",
    "evaluation/predictions.py": "`t2m eval` remedies (--skip-bad-rows)",
    "evaluation/text_tokenizer.py": "`t2m eval` remedies (--text-tokenizer)",
}
# Files that may import a module named by a string (test (i)), and what they import.
DYNAMIC_IMPORTS_ALLOWED: dict[str, str] = {
    "datastore/__init__.py": "_EXPORTS", "evaluation/__init__.py": "_EXPORTS", "t2m/bench/__init__.py": "_EXPORTS",
    "t2m/cli/__init__.py": "COMMANDS",
    "t2m/data.py": "the standard library's decompressors, by file suffix",
    "datastore/write.py": "the libraries whose versions a store records",
}


# t2m's applications: the command line and the jobs built on the core. Every other t2m module is core.
APPLICATIONS = {"t2m.cli", "t2m.__main__", "t2m.knn.tune", "t2m.bench", "t2m.report", "t2m.plots",
                "t2m.decoding.pool", "t2m.resources", "t2m.recipes", "t2m.translate_job", "t2m.serve"}


def is_application(module: str) -> bool:
    return module in APPLICATIONS or module.startswith(("t2m.recipes.", "t2m.cli.", "t2m.bench.", "t2m.serve."))


def source_files() -> list[Path]:
    """Every .py file of the packages and the tests."""
    files = [p for package in PACKAGES for p in sorted((ROOT / package).rglob("*.py"))]
    return files + sorted((ROOT / "tests").rglob("*.py"))


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def project_modules() -> dict[str, Path]:
    return {module_name(p): p for package in PACKAGES for p in sorted((ROOT / package).rglob("*.py"))}


def _lazy_exports(tree: ast.Module) -> list[str]:
    """Module names in a package ``__init__``'s ``_EXPORTS = {"Name": "package.module", ...}`` and in
    ``t2m.cli``'s ``COMMANDS = {"command": ("t2m.cli.command", "help"), ...}``: imported by name."""
    found = []
    for node in tree.body:
        if isinstance(node, (ast.Assign, ast.AnnAssign)) and isinstance(node.value, ast.Dict):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            if any(isinstance(t, ast.Name) and t.id in ("_EXPORTS", "COMMANDS") for t in targets):
                values = [v.elts[0] if isinstance(v, ast.Tuple) and v.elts else v for v in node.value.values]
                found += [v.value for v in values if isinstance(v, ast.Constant) and isinstance(v.value, str)]
    return found


def imported_names(module: str, path: Path) -> list[tuple[str, int]]:
    """(imported dotted name, line) for every import statement of the file, at any depth."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found = [(name, 1) for name in _lazy_exports(tree)]
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(alias.name, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                parts = parts[: len(parts) - (node.level - 1)]
                base = ".".join(parts + ([base] if base else []))
            # `from package import submodule` imports the submodule; `from module import name` the module
            found += [(f"{base}.{alias.name}", node.lineno) for alias in node.names]
    return found


def resolve(name: str, modules: dict[str, Path]) -> str | None:
    """The project module an imported name lives in (the longest module prefix), or None if not ours."""
    while name:
        if name in modules:
            return name
        name = name.rpartition(".")[0]
    return None


def import_graph() -> tuple[dict[str, set[str]], list[tuple[str, str, int]]]:
    """(module -> project modules it imports, every (module, import, line) of a project module)."""
    modules = project_modules()
    graph: dict[str, set[str]] = defaultdict(set)
    imports = []
    for module, path in modules.items():
        for name, line in imported_names(module, path):
            target = resolve(name, modules)
            if target is not None and target != module:
                graph[module].add(target)
                imports.append((module, target, line))
    return graph, imports


def top(module: str) -> str:
    return module.partition(".")[0]


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(set(graph) | {w for ws in graph.values() for w in ws}):
        if v not in index:
            visit(v)
    return found


def _where(module: str, line: int) -> str:
    return f"{project_modules()[module].relative_to(ROOT)}:{line}"


def test_the_graph_sees_lazy_and_relative_imports():
    graph, _ = import_graph()
    assert "t2m.decoding.translator" in graph["t2m.translate_job"]  # imported inside a function
    assert "datastore.store" in graph["datastore"]  # datastore/__init__'s lazy _EXPORTS
    assert "t2m.cli.translate" in graph["t2m.cli"]  # t2m.cli's COMMANDS
    assert len(project_modules()) > 50


@pytest.mark.parametrize("library", LIBRARIES)
def test_libraries_do_not_import_t2m(library):
    _, imports = import_graph()
    bad = sorted({f"{_where(m, line)}: {m} imports {t}" for m, t, line in imports if top(m) == library and top(t) == "t2m"})
    assert not bad, f"{library}/ is a library below t2m and must not import it:\n" + "\n".join(bad)


def test_libraries_do_not_import_each_other():
    _, imports = import_graph()
    bad = sorted({f"{_where(m, line)}: {m} imports {t}" for m, t, line in imports
                  if top(m) in LIBRARIES and top(t) in LIBRARIES and top(m) != top(t)})
    assert not bad, "datastore/ and evaluation/ are independent libraries:\n" + "\n".join(bad)


def test_no_import_cycles_between_files():
    graph, _ = import_graph()
    found = cycles(graph)
    assert not found, "import cycles (move the shared piece into a module both can import):\n" + "\n".join(
        " <-> ".join(c) for c in found)


def test_cycle_finder_finds_a_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def _lines(path: Path) -> int:
    return len(path.read_text(encoding="utf-8").splitlines())


def test_no_source_file_over_the_limit():
    sizes = {p.relative_to(ROOT).as_posix(): _lines(p) for p in source_files()}
    over = {name for name, n in sizes.items() if n > MAX_FILE_LINES}
    new = sorted(over - FILE_LINES_ALLOWED)
    assert not new, f"files over {MAX_FILE_LINES} lines (split them): " + ", ".join(f"{n} ({sizes[n]})" for n in new)
    fixed = sorted(FILE_LINES_ALLOWED - over)
    assert not fixed, f"no longer over {MAX_FILE_LINES} lines: delete from FILE_LINES_ALLOWED: {', '.join(fixed)}"


def long_functions() -> dict[str, int]:
    """"path:Qualified.name" -> lines of every function longer than MAX_FUNCTION_LINES."""
    found = {}
    for path in source_files():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        rel = path.relative_to(ROOT).as_posix()

        def walk(node: ast.AST, prefix: str) -> None:
            for child in ast.iter_child_nodes(node):
                if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                    name = f"{prefix}{child.name}"
                    if not isinstance(child, ast.ClassDef):
                        length = child.end_lineno - child.lineno + 1
                        if length > MAX_FUNCTION_LINES:
                            found[f"{rel}:{name}"] = length
                    walk(child, name + ".")

        walk(tree, "")
    return found


def test_no_function_over_the_limit():
    found = long_functions()
    new = sorted(set(found) - FUNCTION_LINES_ALLOWED)
    assert not new, f"functions over {MAX_FUNCTION_LINES} lines (split them): " + ", ".join(
        f"{n} ({found[n]})" for n in new)
    fixed = sorted(FUNCTION_LINES_ALLOWED - set(found))
    assert not fixed, f"no longer over {MAX_FUNCTION_LINES} lines: delete from FUNCTION_LINES_ALLOWED: {', '.join(fixed)}"


def test_t2m_core_does_not_import_applications():
    _, imports = import_graph()
    bad = sorted({f"{_where(m, line)}: {m} imports {t}" for m, t, line in imports
                  if top(m) == "t2m" and not is_application(m) and is_application(t)})
    assert not bad, ("t2m's core must not import its applications (CLI, tune, bench, report, recipes); move what "
                     "both need into the core:\n" + "\n".join(bad))


def test_one_command_line_convention():
    from t2m.cli import COMMANDS

    modules = project_modules()
    for command, (module, _) in COMMANDS.items():
        assert module == f"t2m.cli.{command}", f"t2m {command}: its module must be t2m/cli/{command}.py, not {module}"
        tree = ast.parse(modules[module].read_text(encoding="utf-8"))
        functions = {node.name for node in tree.body if isinstance(node, ast.FunctionDef)}
        assert {"add_arguments", "run"} <= functions, f"{module} needs add_arguments(parser) and run(args)"
    bad = []
    for module, path in modules.items():
        if module in ("t2m.cli", "t2m.__main__") or module.startswith("t2m.cli."):
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.FunctionDef) and node.name == "add_arguments":
                bad.append(f"{_where(module, node.lineno)}: add_arguments outside t2m/cli/")
            elif (isinstance(node, ast.Compare) and isinstance(node.left, ast.Name) and node.left.id == "__name__"
                  and any(isinstance(c, ast.Constant) and c.value == "__main__" for c in node.comparators)):
                bad.append(f"{_where(module, node.lineno)}: runs as a script (make it a t2m subcommand in t2m/cli/)")
            elif (isinstance(node, ast.Attribute) and node.attr == "ArgumentParser" and isinstance(node.value, ast.Name)
                  and node.value.id == "argparse"):
                bad.append(f"{_where(module, node.lineno)}: an argument parser outside t2m/cli/")
    assert not bad, "command-line code belongs in t2m/cli/<command>.py:\n" + "\n".join(bad)


def _string_nodes(tree: ast.Module) -> list[tuple[ast.AST, str]]:
    """(node, text) of every string expression but docstrings: a constant, or an f-string as its constant parts
    with ``{}`` for each value (implicitly joined literals are one node)."""
    docstrings = {id(node.body[0].value) for node in ast.walk(tree)
                  if isinstance(node, (ast.Module, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))
                  and node.body and isinstance(node.body[0], ast.Expr) and isinstance(node.body[0].value, ast.Constant)}
    inner = {id(part) for node in ast.walk(tree) if isinstance(node, ast.JoinedStr) for part in ast.walk(node)
             if part is not node}
    found = []
    for node in ast.walk(tree):
        if id(node) in docstrings or id(node) in inner:
            continue
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            found.append((node, node.value))
        elif isinstance(node, ast.JoinedStr):
            found.append((node, "".join(v.value if isinstance(v, ast.Constant) else "{}" for v in node.values)))
    return found


def _argv_items(tree: ast.Module) -> set[int]:
    """The string elements of list and tuple literals: the argument vectors of other programs."""
    return {id(e) for node in ast.walk(tree) if isinstance(node, (ast.List, ast.Tuple)) for e in node.elts}


FLAG = re.compile(r"(?<![\w-])--[a-z]")


def flag_mentions(path: Path) -> list[str]:
    """Where a module outside t2m/cli/ names a command-line flag (see (h) in the module docstring)."""
    from t2m.cli import COMMANDS

    command = re.compile(r"t2m (?:%s)\b[^;`)\n]*" % "|".join(COMMANDS))  # a command shown whole
    tree = ast.parse(path.read_text(encoding="utf-8"))
    argv = _argv_items(tree)
    found = []
    for node, text in _string_nodes(tree):
        if id(node) in argv and re.fullmatch(r"--[a-z][\w-]*(=.*)?", text):
            continue
        if FLAG.search(command.sub("", text)):
            found.append(f"{path.relative_to(ROOT)}:{node.lineno}: {text[:90]!r}")
    return found


def test_no_argparse_or_flag_outside_the_command_line():
    modules = project_modules()
    bad = []
    for module, path in modules.items():
        if module == "t2m.cli" or module.startswith("t2m.cli.") or module == "t2m.__main__":
            continue
        if any(name == "argparse" or name.startswith("argparse.") for name, _ in imported_names(module, path)):
            bad.append(f"{path.relative_to(ROOT)}: imports argparse")
        if path.relative_to(ROOT).as_posix() not in FLAG_NAMES_ALLOWED:
            bad += flag_mentions(path)
    assert not bad, ("only t2m/cli/ knows flags: name the option by its field in Python's spelling (num_beams=0, "
                     "overwrite=True) and let the command line write it as its flag (t2m.cli.checks):\n"
                     + "\n".join(bad))
    still = sorted(name for name in FLAG_NAMES_ALLOWED if not flag_mentions(ROOT / name))
    assert not still, f"no flag left: delete from FLAG_NAMES_ALLOWED: {', '.join(still)}"


def test_the_flag_check_sees_a_flag(tmp_path):
    sample = ROOT / "t2m" / "_flag_sample.py"
    sample.write_text('X = f"--output {1}: a folder"\nY = "`t2m datastore build --overwrite`"\n'
                      'Z = ["chromium", "--headless"]\n', encoding="utf-8")
    try:
        assert [line.split(": ", 1)[0] for line in flag_mentions(sample)] == ["t2m/_flag_sample.py:1"]
    finally:
        sample.unlink()


def test_nothing_is_reached_by_an_import_string():
    bad = []
    for module, path in project_modules().items():
        rel = path.relative_to(ROOT).as_posix()
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and \
                    re.fullmatch(r"(t2m|datastore|evaluation)(\.\w+)*:\w+", node.value):
                bad.append(f"{rel}:{node.lineno}: {node.value!r} names a function by its module (import it)")
            elif isinstance(node, ast.Call) and rel not in DYNAMIC_IMPORTS_ALLOWED and (
                    (isinstance(node.func, ast.Attribute) and node.func.attr == "import_module")
                    or (isinstance(node.func, ast.Name) and node.func.id in ("import_module", "__import__"))):
                if not (node.args and isinstance(node.args[0], ast.Constant)
                        and not re.match(r"(t2m|datastore|evaluation)\b", str(node.args[0].value))):
                    bad.append(f"{rel}:{node.lineno}: imports a module named by a string")
    assert not bad, ("import project modules with import statements (or through an _EXPORTS / COMMANDS table the "
                     "layering test reads):\n" + "\n".join(bad))


# t2m's rooms, bottom to top: each room's modules (by prefix) and the rooms it may import. A module not named is
# in the foundation (t2m's flat modules). An arrow to a room not listed runs back up, or sideways between peers.
ROOMS: dict[str, tuple[str, ...]] = {
    "model": ("t2m.model",),
    "neighbours": ("t2m.neighbours",),
    "decoding": ("t2m.decoding",),
    "knn": ("t2m.knn",),
    "training": ("t2m.training",),
    "application": ("t2m.translate_job", "t2m.report", "t2m.plots", "t2m.bench", "t2m.serve", "t2m.recipes",
                    "t2m.cli", "t2m.__main__"),
}
ROOM_IMPORTS: dict[str, set[str]] = {
    "libraries": set(),
    "foundation": {"libraries"},
    "model": {"foundation", "libraries"},
    "neighbours": {"foundation", "libraries"},
    "decoding": {"model", "neighbours", "foundation", "libraries"},
    "knn": {"decoding", "model", "neighbours", "foundation", "libraries"},
    "training": {"decoding", "model", "neighbours", "foundation", "libraries"},
    "application": {"knn", "training", "decoding", "model", "neighbours", "foundation", "libraries"},
}
# the third-party modules a project module may import inside a function (start-up time): a project import
# inside a function is allowed only of a module that imports one of these at its top (itself or through
# the project modules it imports at its top); every other project import is at module top
LAZY_IMPORTS_ALLOWED = ("torch", "transformers", "rdkit", "faiss")


def room(module: str) -> str:
    if top(module) in LIBRARIES:
        return "libraries"
    for name, prefixes in ROOMS.items():
        if any(module == p or module.startswith(p + ".") for p in prefixes):
            return name
    return "foundation"


def test_rooms_import_only_the_rooms_below():
    _, imports = import_graph()
    bad = sorted({f"{_where(m, line)}: {m} ({room(m)}) imports {t} ({room(t)})" for m, t, line in imports
                  if room(m) != room(t) and room(t) not in ROOM_IMPORTS[room(m)]})
    assert not bad, ("an import runs back up (or sideways) between rooms (ROOM_IMPORTS, docs/architecture.md); "
                     "move what both need into the lower room:\n" + "\n".join(bad))


def test_every_room_has_modules():
    modules = project_modules()
    empty = [name for name in ROOMS if not any(room(m) == name for m in modules)]
    assert not empty, f"rooms without a module (delete them from ROOMS): {empty}"


def _top_level_imports(tree: ast.Module, module: str, path: Path) -> tuple[list[str], list[tuple[str, int]]]:
    """(names imported at module level, (name, line) imported inside a function) of one file."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    parents = {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}
    at_top, inside = [], []
    for node in ast.walk(tree):
        if not isinstance(node, (ast.Import, ast.ImportFrom)):
            continue
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        else:
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[: len(parts) - (node.level - 1)] + ([base] if base else []))
            names = [f"{base}.{alias.name}" for alias in node.names]
        owner, in_function = node, False
        while owner in parents:
            owner = parents[owner]
            if isinstance(owner, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
                in_function = True
            if isinstance(owner, ast.If) and "TYPE_CHECKING" in ast.dump(owner.test):
                names = []
        if in_function:
            inside += [(name, node.lineno) for name in names]
        else:
            at_top += names
    return at_top, inside


def heavy_modules() -> set[str]:
    """Project modules whose import runs one of LAZY_IMPORTS_ALLOWED (at their top or through what they import
    at their top)."""
    modules = project_modules()
    tops = {}
    for module, path in modules.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        tops[module] = _top_level_imports(tree, module, path)[0]
    heavy = {m for m, names in tops.items() if any(n.split(".")[0] in LAZY_IMPORTS_ALLOWED for n in names)}
    grown = True
    while grown:
        grown = False
        for module, names in tops.items():
            if module not in heavy and any(resolve(n, modules) in heavy for n in names):
                heavy.add(module)
                grown = True
    return heavy


def test_project_imports_are_at_module_top():
    modules, heavy = project_modules(), heavy_modules()
    bad = []
    for module, path in modules.items():
        if top(module) != "t2m":
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for name, line in _top_level_imports(tree, module, path)[1]:
            target = resolve(name, modules)
            if target is not None and target not in heavy:
                bad.append(f"{_where(module, line)}: {name} imported inside a function")
    assert not bad, ("import project modules at the module's top (only modules that import "
                     f"{', '.join(LAZY_IMPORTS_ALLOWED)} may be imported inside a function):\n" + "\n".join(bad))


def test_the_lazy_import_check_sees_heavy_modules():
    heavy = heavy_modules()
    assert "datastore.build" in heavy and "t2m.model.copy_head" in heavy  # they import torch at their top
    assert "t2m.cli" not in heavy and "t2m.data" not in heavy  # `t2m --help` and data commands start fast
