"""pixhook's built-in handlers, written as ordinary plugins.

Each module holds one handler and imports only :mod:`service.handler_api` (plus the PixVerse
contract in :mod:`service.pixverse` where it needs it). They are registered in pyproject.toml
under the ``pixhook.handlers`` entry-point group, the same way a third-party package adds its
own:

* :mod:`handlers.download`  stream the finished video into ``PIXHOOK_MEDIA_DIR``
* :mod:`handlers.slack`     post a Block Kit message on success and failure
* :mod:`handlers.followup`  submit the next step of a ``then`` chain
* :mod:`handlers.forward`   deliver each transition to the job's ``callback_url``, signed
"""
