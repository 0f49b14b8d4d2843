"""The exception tree drawn in ``service.exceptions`` is the one the code defines."""

from __future__ import annotations

import importlib
import pkgutil

import handlers
import service
from service import exceptions
from service.exceptions import ServiceError
from service.handler_api import HandlerError, PermanentError, Retry, TransientError

#: Modules left out of the walk: optional backends whose driver may not be installed.
SKIP = ("service.store.postgres",)


def _import_everything() -> None:
    for package in (service, handlers):
        for module in pkgutil.walk_packages(package.__path__, f"{package.__name__}."):
            if not module.name.startswith(SKIP):
                importlib.import_module(module.name)


def _subclasses(root: type[BaseException]) -> set[type[BaseException]]:
    found: set[type[BaseException]] = set()
    pending = [root]
    while pending:
        for sub in pending.pop().__subclasses__():
            if sub not in found:
                found.add(sub)
                pending.append(sub)
    return found


def test_every_service_error_is_in_the_drawing() -> None:
    _import_everything()
    ours = {cls for cls in _subclasses(ServiceError)
            if cls.__module__.split(".")[0] in ("service", "handlers")}
    assert ours, "no ServiceError subclasses found"
    drawing = exceptions.__doc__ or ""
    missing = sorted(f"{cls.__module__}.{cls.__qualname__}" for cls in ours
                     if cls.__name__ not in drawing)
    assert not missing, f"service/exceptions.py's tree lacks {missing}"


def test_handler_errors_that_mean_later_share_one_base() -> None:
    from handlers.download import DownloadError
    from handlers.forward import DeliveryError
    from handlers.slack import SlackDeliveryError

    for cls in (DownloadError, DeliveryError, SlackDeliveryError):
        assert issubclass(cls, TransientError) and issubclass(cls, ServiceError)
    # The worker ends a run early only on Retry and PermanentError; everything else backs off.
    assert issubclass(TransientError, HandlerError)
    assert not issubclass(TransientError, Retry | PermanentError)
