"""The local Slack stand-in lives in the service (the demo uses it too)."""

from __future__ import annotations

from service.slack_receiver import SlackReceiver

__all__ = ["SlackReceiver"]
