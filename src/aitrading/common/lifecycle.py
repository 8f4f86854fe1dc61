"""Component lifecycle: every long-lived part starts, runs, may degrade or fault, and stops.

The kernel owns the components and drives them; health endpoints read their state.
"""

from __future__ import annotations

import enum
from abc import ABC, abstractmethod

import structlog

__all__ = ["Component", "ComponentState"]


class ComponentState(enum.StrEnum):
    """Where a component is in its life."""

    CREATED = "created"
    STARTING = "starting"
    RUNNING = "running"
    DEGRADED = "degraded"
    STOPPING = "stopping"
    STOPPED = "stopped"
    FAULTED = "faulted"


class Component(ABC):
    """A part of the system with a managed lifecycle.

    Subclasses implement `_on_start` and `_on_stop`; they call `degrade` or `fault` when their dependencies
    misbehave, and `recover` when they heal.
    """

    name: str = "component"

    def __init__(self) -> None:
        self._state = ComponentState.CREATED
        self._reason = ""
        self._log = structlog.get_logger().bind(component=self.name)

    @property
    def state(self) -> ComponentState:
        return self._state

    @property
    def reason(self) -> str:
        """Why the component is degraded or faulted (empty otherwise)."""
        return self._reason

    @property
    def is_ready(self) -> bool:
        return self._state is ComponentState.RUNNING

    async def start(self) -> None:
        """Start the component; a failure leaves it FAULTED and re-raises."""
        if self._state in (ComponentState.RUNNING, ComponentState.DEGRADED, ComponentState.STARTING):
            return
        self._set(ComponentState.STARTING)
        try:
            await self._on_start()
        except BaseException as exc:
            self._set(ComponentState.FAULTED, f"start failed: {exc}")
            raise
        self._set(ComponentState.RUNNING)

    async def stop(self) -> None:
        """Stop the component, flushing what it holds; stopping twice is harmless."""
        if self._state in (ComponentState.STOPPED, ComponentState.CREATED):
            self._set(ComponentState.STOPPED)
            return
        self._set(ComponentState.STOPPING)
        try:
            await self._on_stop()
        finally:
            self._set(ComponentState.STOPPED)

    def degrade(self, reason: str) -> None:
        """Mark the component as running with reduced capability."""
        if self._state is ComponentState.RUNNING:
            self._set(ComponentState.DEGRADED, reason)

    def recover(self) -> None:
        """Mark a degraded component healthy again."""
        if self._state is ComponentState.DEGRADED:
            self._set(ComponentState.RUNNING)

    def fault(self, reason: str) -> None:
        """Mark the component as failed; it needs a restart."""
        self._set(ComponentState.FAULTED, reason)

    def _set(self, state: ComponentState, reason: str = "") -> None:
        if state is not self._state:
            self._log.info("component_state", state=state.value, reason=reason or None)
        self._state = state
        self._reason = reason

    @abstractmethod
    async def _on_start(self) -> None:
        """Acquire resources and begin work."""

    @abstractmethod
    async def _on_stop(self) -> None:
        """Flush and release resources."""
