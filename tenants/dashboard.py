"""The Overview page's tiles: a registry each app fills from its `AppConfig.ready`, so the
dashboard (a tenants page) shows every product's figures without tenants importing the apps above.

A tile is a template and a function that builds its context for the request; the function returns
None when the tile has nothing to show this member (a product the tenant does not use, a role that
may not see it). Tiles are drawn in `order`; `alerts` tiles are drawn first, across the page."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from tenants.access import TenantRequest
from tenants.models import Role

TileContext = Callable[[TenantRequest], dict[str, Any] | None]


@dataclass(frozen=True)
class Tile:
    name: str  # unique; registering the same name again replaces the tile
    template: str
    context: TileContext
    order: int = 50
    roles: tuple[Role, ...] = (Role.ADMIN, Role.MEMBER, Role.FINANCE)
    alerts: bool = False  # drawn first, across the page: things that need action


_REGISTRY: dict[str, Tile] = {}


def register(*tiles: Tile) -> None:
    for tile in tiles:
        _REGISTRY[tile.name] = tile


@dataclass(frozen=True)
class RenderedTile:
    name: str
    template: str
    context: dict[str, Any]
    alerts: bool


def tiles_for(request: TenantRequest) -> list[RenderedTile]:
    """The tiles this member sees, in order, each with its context built once."""
    shown = []
    for tile in sorted(_REGISTRY.values(), key=lambda t: (not t.alerts, t.order, t.name)):
        if request.membership.role not in tile.roles:
            continue
        context = tile.context(request)
        if context is not None:
            shown.append(RenderedTile(tile.name, tile.template, context, tile.alerts))
    return shown
