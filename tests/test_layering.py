"""The package layering, enforced: a module imports only its own layer or lower ones.

Bottom up: ``paper, ops, codecs < models < baselines < data < evaluation < engine < harness < export
< report < cli``. What counts as an import: ``import`` and ``from ... import`` statements anywhere in a
module (top level, inside functions, under ``TYPE_CHECKING``), ``importlib.import_module("...")`` and
``__import__("...")`` with a literal name, and module names in strings, which is how a subprocess runs a
module (``[sys.executable, "-m", "mamkpd.cli"]``, ``"python -m mamkpd.cli train"``). The README's layout
section draws the same order.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("mamkpd", "baselines")
LAYERS: tuple[tuple[str, ...], ...] = (
    ("paper", "ops", "codecs"),
    ("models",),
    ("baselines",),
    ("data",),
    ("evaluation",),
    ("engine",),
    ("harness",),
    ("export",),
    ("report",),
    ("cli",),
)
RANK = {name: rank for rank, names in enumerate(LAYERS) for name in names}
# a whole string that is a module name (a subprocess argument, an importlib target); prose never matches
MODULE_STRING = re.compile(r"(?:mamkpd|baselines)(?:\.[A-Za-z_]\w*)+|baselines")
# "-m MODULE" inside a command written as one string
RUN_MODULE = re.compile(r"-m\s+((?:mamkpd|baselines)(?:\.[A-Za-z_]\w*)*)")


def layer_of(module: str) -> str | None:
    """The layer of a module of this repository; None for third-party ones, "?" for an unassigned one."""
    parts = module.split(".")
    if parts[0] == "baselines":
        return "baselines"
    if parts[0] != "mamkpd":
        return None
    if len(parts) == 1:
        return "models"  # the package root re-exports the models layer's API
    if parts[1] == "__main__":
        return "cli"  # python -m mamkpd runs the command line
    return parts[1] if parts[1] in RANK else "?"


def module_name(path: Path, root: Path) -> tuple[str, bool]:
    """Dotted name of the module at ``path`` under ``root``, and whether it is a package (``__init__``)."""
    parts = list(path.relative_to(root).with_suffix("").parts)
    is_package = parts[-1] == "__init__"
    if is_package:
        parts.pop()
    return ".".join(parts), is_package


def _resolve(name: str | None, level: int, module: str, is_package: bool) -> str:
    if not level:
        return name or ""
    package = module.split(".") if is_package else module.split(".")[:-1]
    base = package[: len(package) - (level - 1)]
    return ".".join(base + ([name] if name else []))


def _run_module(name: str) -> str:
    """What ``python -m NAME`` executes: a package runs its ``__main__``."""
    return f"{name}.__main__" if name in PACKAGES else name


def dependencies(source: str, module: str, is_package: bool) -> list[tuple[int, str, str]]:
    """(line, imported module, how) for every import of ``source`` as the module docstring describes."""
    found: list[tuple[int, str, str]] = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name, "import") for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = _resolve(node.module, node.level, module, is_package)
            for alias in node.names:
                # `from mamkpd import harness` imports a subpackage; `from mamkpd import create_model` the root
                sub = f"{base}.{alias.name}"
                target = sub if layer_of(sub) not in (None, "?") and layer_of(base) != layer_of(sub) else base
                found.append((node.lineno, target, "from-import"))
        elif isinstance(node, ast.Call):
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else ""
            first = node.args[0] if node.args else None
            if name in ("import_module", "__import__") and isinstance(first, ast.Constant):
                if isinstance(first.value, str):
                    found.append((node.lineno, _resolve(first.value.lstrip("."), 0, module, is_package), name))
        if isinstance(node, (ast.List, ast.Tuple)):
            items = node.elts
            for flag, value in zip(items, items[1:], strict=False):
                if (
                    isinstance(flag, ast.Constant)
                    and flag.value == "-m"
                    and isinstance(value, ast.Constant)
                    and isinstance(value.value, str)
                ):
                    found.append((node.lineno, _run_module(value.value), "-m argument"))
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            if MODULE_STRING.fullmatch(node.value):
                found.append((node.lineno, node.value, "module name string"))
            found += [(node.lineno, _run_module(m), "-m in a command string") for m in RUN_MODULE.findall(node.value)]
    return found


def violations(root: Path, packages: tuple[str, ...] = PACKAGES) -> list[str]:
    """Every import of a higher layer (and every module outside the layering) under ``root``."""
    out = []
    for package in packages:
        for path in sorted((root / package).rglob("*.py")):
            module, is_package = module_name(path, root)
            own = layer_of(module)
            where = path.relative_to(root)
            if own == "?":
                out.append(f"{where}: module {module} belongs to no layer")
                continue
            for line, target, how in sorted(set(dependencies(path.read_text(encoding="utf-8"), module, is_package))):
                theirs = layer_of(target)
                if theirs is None:
                    continue
                if theirs == "?":
                    out.append(f"{where}:{line}: {how} of {target}, which belongs to no layer")
                elif RANK[theirs] > RANK[own]:
                    out.append(f"{where}:{line}: {own} -> {theirs} ({how} of {target})")
    return out


def argument_parsing_outside_cli(root: Path) -> list[str]:
    """Every import of argparse by a module of ``mamkpd/`` outside the command line (``mamkpd/cli``,
    ``mamkpd/__main__.py``): only the command line parses arguments; the library takes typed requests."""
    out = []
    for path in sorted((root / "mamkpd").rglob("*.py")):
        module, is_package = module_name(path, root)
        if layer_of(module) == "cli":
            continue
        for line, target, how in sorted(set(dependencies(path.read_text(encoding="utf-8"), module, is_package))):
            if target.split(".")[0] == "argparse":
                out.append(f"{path.relative_to(root)}:{line}: {how} of {target}")
    return out


def layering_text() -> str:
    return " < ".join(", ".join(names) for names in LAYERS)


def test_no_module_imports_a_higher_layer():
    assert violations(REPO) == []


def test_the_checker_sees_every_module():
    modules = {module_name(p, REPO)[0] for package in PACKAGES for p in (REPO / package).rglob("*.py")}
    assert {"mamkpd.models.registry", "mamkpd.harness.jobs.launch", "baselines.rtmo", "mamkpd.cli"} <= modules
    assert {layer_of(m) for m in modules} == set(RANK)  # every layer has modules, none is unassigned


PLANTED = {
    "mamkpd/models/planted.py": """\
import subprocess
import sys
from importlib import import_module

from mamkpd.harness import results  # top level, absolute
from ..codecs import build_codec  # allowed: a lower layer
import numpy  # third party: not ours


def hidden():
    from ..engine import train  # inside a function, relative
    import_module("mamkpd.report.build")
    subprocess.run([sys.executable, "-m", "mamkpd.cli", "report"])
    subprocess.run("python -m mamkpd.cli train --epochs 1", shell=True)
    subprocess.run([sys.executable, "-m", "mamkpd", "fps"])
    return __import__("baselines")
""",
    "mamkpd/models/__init__.py": "from .. import export  # a subpackage through the root\n",
    "mamkpd/__init__.py": "",
    "mamkpd/harness/__init__.py": "from ..data import roots  # allowed\nfrom ..models import planted  # allowed\n",
    "mamkpd/extras/__init__.py": "",
    "baselines/__init__.py": "from mamkpd.data.roots import find_mpii_gt\nOWN = ('baselines',)  # its own layer\n",
}


def test_a_planted_upward_import_is_caught(tmp_path):
    for name, text in PLANTED.items():
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    found = violations(tmp_path)
    assert found == [
        "mamkpd/extras/__init__.py: module mamkpd.extras belongs to no layer",
        "mamkpd/models/__init__.py:1: models -> export (from-import of mamkpd.export)",
        "mamkpd/models/planted.py:5: models -> harness (from-import of mamkpd.harness)",
        "mamkpd/models/planted.py:11: models -> engine (from-import of mamkpd.engine)",
        "mamkpd/models/planted.py:12: models -> report (import_module of mamkpd.report.build)",
        "mamkpd/models/planted.py:12: models -> report (module name string of mamkpd.report.build)",
        "mamkpd/models/planted.py:13: models -> cli (-m argument of mamkpd.cli)",
        "mamkpd/models/planted.py:13: models -> cli (module name string of mamkpd.cli)",
        "mamkpd/models/planted.py:14: models -> cli (-m in a command string of mamkpd.cli)",
        "mamkpd/models/planted.py:15: models -> cli (-m argument of mamkpd.__main__)",
        "mamkpd/models/planted.py:16: models -> baselines (__import__ of baselines)",
        "mamkpd/models/planted.py:16: models -> baselines (module name string of baselines)",
        "baselines/__init__.py:1: baselines -> data (from-import of mamkpd.data.roots)",
    ]


def package_imports(root: Path, package: str) -> dict[str, set[str]]:
    """Each module of ``package`` (dotted, under ``root``, its subpackages included) -> the modules of that
    package it imports, anywhere in the file; ``from . import x`` imports module ``x`` where there is one."""
    paths = {module_name(p, root)[0]: p for p in (root / package.replace(".", "/")).rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for module, path in paths.items():
        is_package = path.name == "__init__.py"
        targets = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                targets |= {alias.name for alias in node.names}
            elif isinstance(node, ast.ImportFrom):
                base = _resolve(node.module, node.level, module, is_package)
                targets |= {f"{base}.{a.name}" if f"{base}.{a.name}" in paths else base for a in node.names}
        graph[module] = {t for t in targets if t in paths and t != module}
    return graph


def import_cycles(root: Path, package: str) -> list[str]:
    """Every circle of imports between the files of ``package``, each as "a -> b -> a" from its least module."""
    graph = package_imports(root, package)
    cycles = set()

    def walk(path: list[str]) -> None:
        for nxt in sorted(graph[path[-1]]):
            if nxt == path[0]:
                cycles.add(" -> ".join(path + [nxt]))
            elif nxt not in path and nxt > path[0]:  # each circle once, from its least module
                walk(path + [nxt])

    for start in sorted(graph):
        walk([start])
    return sorted(cycles)


def test_no_import_circle_between_the_files_of_models():
    # the registry must not import what registers into it: MamKPD's variants register from the package's
    # __init__, the baselines through the entry points
    assert import_cycles(REPO, "mamkpd.models") == []


def test_a_planted_import_circle_is_caught(tmp_path):
    files = {
        "registry.py": "def load():\n    from . import variants  # inside a function still counts\n",
        "variants.py": "from .registry import load\nfrom .layers import Block\n",
        "layers/__init__.py": "from .block import Block\n",
        "layers/block.py": "import torch\nfrom ..variants import load  # back up through a subpackage\n",
        "__init__.py": "from . import registry, variants  # the package importing its files is no circle\n",
    }
    for name, text in files.items():
        path = tmp_path / "mamkpd" / "models" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    assert import_cycles(tmp_path, "mamkpd.models") == [
        "mamkpd.models.layers -> mamkpd.models.layers.block -> mamkpd.models.variants -> mamkpd.models.layers",
        "mamkpd.models.registry -> mamkpd.models.variants -> mamkpd.models.registry",
    ]


def test_readme_draws_the_layering_the_test_enforces():
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    assert layering_text() in readme, f"README's layout section should show: {layering_text()}"


def test_only_the_command_line_parses_arguments():
    assert argument_parsing_outside_cli(REPO) == []


def test_a_planted_argument_parser_outside_the_cli_is_caught(tmp_path):
    planted = {
        "mamkpd/harness/planted.py": "def main():\n    from argparse import ArgumentParser\n",
        "mamkpd/engine/planted.py": "import importlib\n\nimportlib.import_module('argparse')\n",
        "mamkpd/cli/planted.py": "import argparse  # allowed: the command line\n",
        "mamkpd/__main__.py": "import argparse  # allowed: python -m mamkpd\n",
    }
    for name, text in planted.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    assert argument_parsing_outside_cli(tmp_path) == [
        "mamkpd/engine/planted.py:3: import_module of argparse",
        "mamkpd/harness/planted.py:2: from-import of argparse",
    ]
