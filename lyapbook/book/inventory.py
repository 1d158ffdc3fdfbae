"""The project's list of what the book reproduces (``inventory.yml`` beside this module)."""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import yaml

__all__ = ["INVENTORY_FILE", "BookItem", "Claim", "InventoryItem", "Inventory", "load_inventory"]

INVENTORY_FILE = Path(__file__).with_name("inventory.yml")
FIELDS = ("id", "chapter", "what", "claim", "paper", "default")
CLAIM_FIELDS = ("key", "text", "paper", "value", "direction", "null_value", "tolerance", "scale")


@dataclass(frozen=True)
class Claim:
    """One claim of the dissertation that the book judges, stated before anything is computed.

    ``text``: the claim in our words; ``paper``: what the dissertation reports. For a claim of an
    effect, ``direction`` (+1 or -1) is the claimed sign of (quantity - ``null``) (``null_value:`` in
    the YAML file, where a key ``null`` would be read as nothing) and ``value`` the
    dissertation's size of it (if it gives one); for a claimed value, ``value`` alone (and
    ``tolerance``, the agreement that counts as the same). ``scale``: ``"exact"`` for mathematics
    (judged the same at every profile), else None (the profile of the run).
    """

    key: str
    text: str
    paper: str
    value: float | None = None
    direction: int | None = None
    null: float | None = None
    tolerance: float | None = None
    scale: str | None = None


@dataclass(frozen=True)
class InventoryItem:
    """One figure, table or check of the dissertation, under its stable ID, with the claims judged on it."""

    id: str
    chapter: int
    what: str
    claim: str
    paper: str
    default: str
    claims: tuple[Claim, ...] = ()


@dataclass(frozen=True)
class BookItem:
    """A figure or table the book adds, with no counterpart in the dissertation (judges no claim)."""

    id: str
    chapter: int
    what: str


@dataclass(frozen=True)
class Inventory:
    chapters: dict[int, str]  # dissertation chapter -> title
    items: tuple[InventoryItem, ...]
    book_items: tuple[BookItem, ...] = ()

    def publishes(self, item_id: str) -> bool:
        """Whether a chapter may publish ``item_id``: a dissertation item or one the book adds."""
        return item_id in self or any(item.id == item_id for item in self.book_items)

    def __contains__(self, item_id: str) -> bool:
        return any(item.id == item_id for item in self.items)

    def item(self, item_id: str) -> InventoryItem:
        for item in self.items:
            if item.id == item_id:
                return item
        raise KeyError(f"{item_id!r} is not an item of {INVENTORY_FILE.name}")

    def claim(self, item_id: str, key: str) -> Claim:
        """The claim ``key`` of item ``item_id``; a clear error when either is unknown."""
        if item_id not in self:
            raise ValueError(f"item {item_id!r} is not listed in lyapbook/book/inventory.yml: add it there first")
        claims = self.item(item_id).claims
        for claim in claims:
            if claim.key == key:
                return claim
        known = ", ".join(c.key for c in claims) or "none yet"
        raise ValueError(f"{item_id} has no claim {key!r} in lyapbook/book/inventory.yml (its claims: {known}); "
                         "state the claim there, with the dissertation's value, before judging it")


def _claim(item_id: str, raw: dict, path: Path) -> Claim:
    unknown = set(raw) - set(CLAIM_FIELDS)
    if unknown or not raw.get("key") or not raw.get("text") or not raw.get("paper"):
        raise ValueError(f"{path}: a claim of {item_id} needs key, text and paper (and may have {', '.join(CLAIM_FIELDS[3:])}); "
                         f"got {sorted(map(str, raw))}")
    direction = raw.get("direction")
    if direction not in (None, 1, -1):
        raise ValueError(f"{path}: {item_id}/{raw['key']}: direction must be 1 or -1, got {direction!r}")
    if (direction is None) != (raw.get("null_value") is None):
        raise ValueError(f"{path}: {item_id}/{raw['key']}: a claimed effect needs both direction and null")
    if direction is None and raw.get("value") is None and raw.get("scale") != "exact":
        raise ValueError(f"{path}: {item_id}/{raw['key']}: a claim needs a direction and null, or a value")
    number = lambda key: None if raw.get(key) is None else float(raw[key])  # noqa: E731
    return Claim(key=str(raw["key"]), text=" ".join(str(raw["text"]).split()), paper=" ".join(str(raw["paper"]).split()),
                 value=number("value"), direction=direction, null=number("null_value"), tolerance=number("tolerance"),
                 scale=raw.get("scale"))


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
        claims = tuple(_claim(raw["id"], c, path) for c in raw.get("claims") or [])
        keys = [c.key for c in claims]
        if len(set(keys)) != len(keys):
            raise ValueError(f"{path}: item {raw['id']} lists a claim key twice: {keys}")
        items.append(InventoryItem(**{name: raw[name] for name in FIELDS}, claims=claims))
    book_items = []
    for raw in data.get("book_items") or []:
        if not raw.get("id") or not raw.get("what") or raw.get("chapter") not in chapters:
            raise ValueError(f"{path}: a book item needs id, chapter (one of {sorted(chapters)}) and what; got {raw}")
        if raw["id"] in seen:
            raise ValueError(f"{path}: item {raw['id']} is listed twice")
        seen.add(raw["id"])
        book_items.append(BookItem(id=raw["id"], chapter=raw["chapter"], what=" ".join(str(raw["what"]).split())))
    return Inventory(chapters=chapters, items=tuple(items), book_items=tuple(book_items))
