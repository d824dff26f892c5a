"""The house (issue 13): each capability in its own wing, dependencies pointing one way.

The import graph of ``pymalloc_real`` is computed from the source (``ast``), every import
included, those inside functions too: a lazy import still makes a circle, only a later
one. No circle anywhere; nothing outside the command line imports it; no module grows
past about 500 lines unless README.md's map names it as one cohesive thing; and the
README's Python tour runs as written.
"""
import ast
import os
import re
import subprocess
import sys

import pytest

from helpers import ROOT

PACKAGE = os.path.join(ROOT, "pymalloc_real")
README = os.path.join(ROOT, "README.md")
CLI = "pymalloc_real.cli"
MOST_LINES = 500


def _modules():
    """{dotted name: path} of every Python module of the package."""
    found = {}
    for directory, _, files in os.walk(PACKAGE):
        if "__pycache__" in directory:
            continue
        for name in files:
            if not name.endswith(".py"):
                continue
            path = os.path.join(directory, name)
            parts = os.path.relpath(path, ROOT)[:-3].split(os.sep)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            found[".".join(parts)] = path
    return found


MODULES = _modules()
# The compiled modules (cffi's _core, the _fastpath and _rawdecode extensions): leaves.
MODULES.update({name: None for name in ("pymalloc_real._core", "pymalloc_real._fastpath",
                                        "pymalloc_real._rawdecode")})
# `python -m pymalloc_real` is the command line's own door.
COMMAND_LINE = (CLI, "pymalloc_real.__main__")


def _is_package(module):
    return MODULES[module] is not None and MODULES[module].endswith("__init__.py")


def _imports(module):
    """The package's modules that ``module`` imports, anywhere in its body."""
    if MODULES[module] is None:
        return set()
    with open(MODULES[module], encoding="utf-8") as f:
        tree = ast.parse(f.read(), MODULES[module])
    here = module if _is_package(module) else module.rpartition(".")[0]
    targets = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = here.split(".")
                base = base[:len(base) - (node.level - 1)]
                source = ".".join(base + ([node.module] if node.module else []))
            else:
                source = node.module or ""
            # `from X import Y`: the module X.Y when there is one, else X itself.
            names = [f"{source}.{alias.name}" if f"{source}.{alias.name}" in MODULES else source
                     for alias in node.names]
        else:
            continue
        for name in names:
            # `import a.b.c` needs a.b.c; count the deepest module of ours it names.
            while name and name not in MODULES:
                name = name.rpartition(".")[0]
            if name and name != module:
                targets.add(name)
    return targets


GRAPH = {module: _imports(module) for module in MODULES}


def _cycles():
    """Every strongly connected component with more than one module (Tarjan)."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []
    counter = [0]

    def visit(node):
        index[node] = low[node] = counter[0]
        counter[0] += 1
        stack.append(node)
        on_stack.add(node)
        for target in GRAPH[node]:
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(GRAPH):
        if node not in index:
            visit(node)
    return found


def test_the_graph_sees_the_wings():
    """The walk found the wings and the edges that tie them (a broken walk would make
    every later test pass vacuously)."""
    for wing in ("pymalloc_real.kernel", "pymalloc_real.demo", "pymalloc_real.preload",
                 "pymalloc_real.bench", "pymalloc_real.trace", "pymalloc_real.lab",
                 "pymalloc_real.pagesim", CLI):
        assert wing in MODULES, sorted(MODULES)
    assert "pymalloc_real.preload.runner" in GRAPH["pymalloc_real.bench.harness"] or \
        "pymalloc_real.preload" in GRAPH["pymalloc_real.bench.harness"]
    assert "pymalloc_real.cli.demo" in GRAPH[CLI]
    assert "pymalloc_real.kernel.procfs" in GRAPH["pymalloc_real"]


def test_there_is_no_import_circle():
    assert _cycles() == []


def test_the_cycle_finder_finds_one():
    """Its check bites: two modules importing each other are a circle."""
    saved = dict(GRAPH)
    try:
        GRAPH["pymalloc_real.heap"] = saved["pymalloc_real.heap"] | {"pymalloc_real.introspect"}
        GRAPH["pymalloc_real.introspect"] = saved["pymalloc_real.introspect"] | {"pymalloc_real.heap"}
        assert ["pymalloc_real.heap", "pymalloc_real.introspect"] in _cycles()
    finally:
        GRAPH.clear()
        GRAPH.update(saved)


def test_nothing_but_the_command_line_imports_it():
    def in_command_line(module):
        return module in COMMAND_LINE or module.startswith(CLI + ".")

    offenders = {module: sorted(t for t in targets if in_command_line(t))
                 for module, targets in GRAPH.items() if not in_command_line(module)}
    assert {m: t for m, t in offenders.items() if t} == {}


def _long_modules_the_map_explains():
    """Modules README.md's map names as longer than 500 lines on purpose."""
    with open(README, encoding="utf-8") as f:
        text = f.read()
    section = text.split("## Where things are", 1)[1].split("\n## ", 1)[0]
    return set(re.findall(r"longer than 500 lines[^`]*`([\w/]+\.py)`", section))


def test_no_module_passes_500_lines_unless_the_map_says_why():
    explained = _long_modules_the_map_explains()
    too_long = {}
    for module, path in MODULES.items():
        if path is None:
            continue
        with open(path, encoding="utf-8") as f:
            lines = sum(1 for _ in f)
        relative = os.path.relpath(path, PACKAGE)
        if lines > MOST_LINES and relative not in explained:
            too_long[relative] = lines
    assert too_long == {}


def _python_tour():
    with open(README, encoding="utf-8") as f:
        text = f.read()
    section = text.split("## A tour of the Python API", 1)[1]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def test_the_readme_python_tour_runs_as_written():
    tour = _python_tour()
    assert "prm.malloc(" in tour and "prm.free(" in tour
    proc = subprocess.run([sys.executable, "-c", tour + "\nprm.check()\nprint('tour ok')\n"],
                          capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert proc.returncode == 0 and proc.stdout.strip().endswith("tour ok"), proc.stderr[-3000:]


@pytest.mark.parametrize("wing", sorted(m for m in MODULES if _is_package(m)))
def test_every_package_says_what_it_owns(wing):
    with open(MODULES[wing], encoding="utf-8") as f:
        docstring = ast.get_docstring(ast.parse(f.read()))
    assert docstring and len(docstring.split()) >= 12, f"{wing} has no docstring saying what it owns"
