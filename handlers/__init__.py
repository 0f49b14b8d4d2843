"""pixhook's built-in handlers, written as ordinary plugins.

Handlers run from the durable task queue when a job changes state (download, Slack,
follow-up jobs, forwarding signed events). They arrive with the handlers issue and are
registered through the ``pixhook.handlers`` entry-point group, the same way a third-party
package adds its own.
"""
