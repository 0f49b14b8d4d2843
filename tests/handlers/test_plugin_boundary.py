"""The built-in handlers are plugins like any other: they import pixhook only through
``service.handler_api``, so what a third-party handler can do, they can do, and the rest of
``service`` can change without breaking them."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
HANDLERS = ROOT / "handlers"
ALLOWED: frozenset[str] = frozenset({"service.handler_api"})


def _imported_modules(tree: ast.AST) -> Iterator[tuple[int, str]]:
    """``(line, module)`` for every absolute import, however nested (``TYPE_CHECKING``
    blocks and function bodies included). ``from service import x`` counts as ``service.x``."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            if node.module == "service":
                for alias in node.names:
                    yield node.lineno, f"service.{alias.name}"
            else:
                yield node.lineno, node.module


def boundary_violations(path: Path, root: Path = ROOT) -> list[str]:
    """``file:line: module`` for each import of ``service`` other than the handler API."""
    tree = ast.parse(path.read_text(), filename=str(path))
    return [f"{path.relative_to(root)}:{line}: imports {module}"
            for line, module in _imported_modules(tree)
            if (module == "service" or module.startswith("service."))
            and module not in ALLOWED]


def test_handlers_import_only_the_handler_api() -> None:
    files = sorted(HANDLERS.rglob("*.py"))
    assert files, f"no handler modules under {HANDLERS}"
    violations = [line for path in files for line in boundary_violations(path)]
    assert not violations, ("handlers may import pixhook only through service.handler_api "
                            "(re-export what they need there):\n" + "\n".join(violations))


@pytest.mark.parametrize(("source", "flagged"), [
    ("from service.handler_api import Job", False),
    ("import service.handler_api as api", False),
    ("from service import handler_api", False),
    ("from . import download", False),
    ("from .download import DownloadError", False),
    ("import httpx", False),
    ("import servicex", False),
    ("from service.settings import Settings", True),
    ("from service import settings", True),
    ("import service", True),
    ("import service.store", True),
    ("if TYPE_CHECKING:\n    from service.store import Store", True),
    ("def f():\n    from service.media import MediaLinks", True),
])
def test_the_check_sees_what_it_should(tmp_path: Path, source: str, flagged: bool) -> None:
    module = tmp_path / "handler.py"
    module.write_text(source + "\n")
    assert bool(boundary_violations(module, root=tmp_path)) is flagged
