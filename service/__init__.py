"""pixhook: a webhook-driven event service for PixVerse video generation.

Where things live:

* ``service.pixverse``  -- the PixVerse contract (vocabularies, typed requests, error codes,
  webhook signatures) and the async client.
* ``service.simulator`` -- a local stand-in for PixVerse that speaks the same contract.
* ``service.cli``       -- the ``pixhook`` command.
"""

from __future__ import annotations

__version__ = "0.1.0"
