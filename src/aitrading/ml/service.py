"""ML service service.

Today it runs the standard service shell (health, readiness of its dependencies, metrics, version) so the
platform starts, deploys and is monitored as a whole; its domain capabilities are listed as planned in
README.md and arrive with their issues.
"""

from __future__ import annotations

from aitrading.common.service import Service

__all__ = ["MLService"]


class MLService(Service):
    """ML service: the service shell with readiness over its dependencies."""

    name = "ml"
