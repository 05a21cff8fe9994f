"""Named actions flows can run; importing this package registers all of them."""

from engine.actions import auth, tickets
from engine.actions.registry import REGISTRY, ActionInfo, ActionRegistry, action

__all__ = ["REGISTRY", "ActionInfo", "ActionRegistry", "action", "auth", "tickets"]
