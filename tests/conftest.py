from __future__ import annotations

import os

import pytest


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every test starts without pixhook or PixVerse settings from the caller's shell."""
    for name in list(os.environ):
        # PIXHOOK_TEST_* and PIXHOOK_REQUIRE_* configure the test run itself (which database
        # server to test against), not pixhook.
        if name.startswith(("PIXHOOK_TEST_", "PIXHOOK_REQUIRE_")):
            continue
        if name.startswith(("PIXHOOK_", "PIXVERSE_")):
            monkeypatch.delenv(name)


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--slow", action="store_true",
                     help="also run the tests marked slow (soak and scale; .ci/run does)")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # The soak and scale tests take about 1.5 minutes together; the everyday suite skips them.
    if config.getoption("--slow"):
        return
    skip = pytest.mark.skip(reason="slow soak/scale test; run with --slow (.ci/run does)")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


def pytest_configure(config: pytest.Config) -> None:
    # Tests load only pixhook's own handlers, never plugins that happen to be installed.
    from service import registry

    registry.builtin_only = True
