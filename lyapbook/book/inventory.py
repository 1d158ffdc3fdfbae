"""The project's list of what the book reproduces (``inventory.yml`` beside this module)."""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import yaml

__all__ = ["INVENTORY_FILE", "InventoryItem", "Inventory", "load_inventory"]

INVENTORY_FILE = Path(__file__).with_name("inventory.yml")
FIELDS = ("id", "chapter", "what", "claim", "paper", "default")


@dataclass(frozen=True)
class InventoryItem:
    """One figure, table or check of the dissertation, under its stable ID."""

    id: str
    chapter: int
    what: str
    claim: str
    paper: str
    default: str


@dataclass(frozen=True)
class Inventory:
    chapters: dict[int, str]  # dissertation chapter -> title
    items: tuple[InventoryItem, ...]

    def __contains__(self, item_id: str) -> bool:
        return any(item.id == item_id for item in self.items)

    def item(self, item_id: str) -> InventoryItem:
        for item in self.items:
            if item.id == item_id:
                return item
        raise KeyError(f"{item_id!r} is not an item of {INVENTORY_FILE.name}")


@lru_cache(maxsize=4)
def load_inventory(path: Path = INVENTORY_FILE) -> Inventory:
    """The inventory, checked: every item has all fields, IDs are unique, chapters are known."""
    data = yaml.safe_load(Path(path).read_text())
    chapters = {int(k): str(v) for k, v in data["chapters"].items()}
    items, seen = [], set()
    for raw in data["items"]:
        missing = [name for name in FIELDS if raw.get(name) in (None, "")]
        if missing:
            raise ValueError(f"{path}: item {raw.get('id', '?')} lacks {', '.join(missing)}")
        if raw["id"] in seen:
            raise ValueError(f"{path}: item {raw['id']} is listed twice")
        if raw["chapter"] not in chapters:
            raise ValueError(f"{path}: item {raw['id']} names unknown chapter {raw['chapter']}")
        seen.add(raw["id"])
        items.append(InventoryItem(**{name: raw[name] for name in FIELDS}))
    return Inventory(chapters=chapters, items=tuple(items))
