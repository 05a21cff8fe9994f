"""Named actions flows can run; importing this package registers all of them."""

from engine.actions import auth, catalog, privacy, ticket_conversation, ticket_moves, tickets
from engine.actions.registry import REGISTRY, ActionInfo, ActionRegistry, action

__all__ = ["REGISTRY", "ActionInfo", "ActionRegistry", "action", "auth", "catalog", "privacy", "ticket_conversation",
           "ticket_moves", "tickets"]
