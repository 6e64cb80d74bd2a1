"""Configurable gazetteer: districts → streets (街道) → roads and communities.

:func:`locate` finds the places named in a normalised transcript and resolves
them against each other: a community fixes its street and district, a road
that exists in one district only fixes the district, an explicit district
narrows an ambiguous road. Conflicting mentions are dropped, never guessed.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gateway.drafting.data_files import DATA_DIR, DataFileError, load_yaml, require

__all__ = ["DEFAULT_GAZETTEER", "Gazetteer", "Location", "load_gazetteer", "locate"]

DEFAULT_GAZETTEER = DATA_DIR / "gazetteer.yaml"

# 幸福路123号 → 123; right after a road, 12号楼下 is still the road number (12号 + 楼下)
_NUMBER_AFTER_ROAD = re.compile(r"^(?:的)?(\d+)(?:号|弄)")
_BUILDING = re.compile(r"(\d+)(?:号楼|栋|幢)(?![下上前后])")
_UNIT = re.compile(r"(\d+)单元")
_ROOM = re.compile(r"(?:单元|楼|栋)(\d{3,4})(?:室|号)?")

Pair = tuple[str, str]  # (district, street)


@dataclass(frozen=True)
class Place:
    kind: str  # district | street | road | community
    name: str
    pairs: frozenset[Pair]  # where it lies; districts use (district, "")


@dataclass(frozen=True)
class Gazetteer:
    city: str
    places: tuple[Place, ...]
    # spoken form -> canonical places (one road name may be listed in several streets)
    forms: dict[str, tuple[Place, ...]]
    source: str = ""

    def words(self) -> set[str]:
        return set(self.forms)

    def all_pairs(self) -> frozenset[Pair]:
        return frozenset(p for pl in self.places if pl.kind != "district" for p in pl.pairs)


@dataclass(frozen=True)
class Location:
    district: str | None = None
    street: str | None = None
    road: str | None = None
    number: str | None = None
    community: str | None = None
    building: str | None = None
    unit: str | None = None
    room: str | None = None
    mentions: tuple[str, ...] = ()
    conflicts: tuple[str, ...] = ()

    @property
    def found(self) -> bool:
        return any((self.district, self.street, self.road, self.community))

    @property
    def text(self) -> str:
        parts = [self.district or "", self.street or "", self.road or ""]
        if self.road and self.number:
            parts.append(f"{self.number}号")
        parts.append(self.community or "")
        if self.building:
            parts.append(f"{self.building}号楼")
        if self.unit:
            parts.append(f"{self.unit}单元")
        if self.room:
            parts.append(f"{self.room}室")
        return "".join(parts)

    def as_dict(self) -> dict[str, Any]:
        return {
            "district": self.district, "street": self.street, "road": self.road, "number": self.number,
            "community": self.community, "building": self.building, "unit": self.unit, "room": self.room,
            "text": self.text, "mentions": list(self.mentions),
        }


def _find_mentions(gaz: Gazetteer, text: str) -> list[tuple[int, int, str]]:
    """Longest non-overlapping occurrences of known place forms, in text order."""
    hits = []
    for form in gaz.forms:
        start = text.find(form)
        while start >= 0:
            hits.append((start, start + len(form), form))
            start = text.find(form, start + 1)
    hits.sort(key=lambda h: (-(h[1] - h[0]), h[0]))
    chosen: list[tuple[int, int, str]] = []
    for h in hits:
        if all(h[1] <= c[0] or h[0] >= c[1] for c in chosen):
            chosen.append(h)
    return sorted(chosen)


def locate(gaz: Gazetteer, text: str) -> Location:
    """Resolve the places named in ``text`` (normalised, digits as ASCII)."""
    mentions = _find_mentions(gaz, text)
    if not mentions:
        return Location()
    candidates = gaz.all_pairs()
    conflicts: list[str] = []
    picked: dict[str, Place] = {}
    road_end = -1
    order = {"district": 0, "community": 1, "street": 2, "road": 3}
    places = sorted(((pl, end) for _, end, form in mentions for pl in gaz.forms[form]),
                    key=lambda x: order[x[0].kind])
    by_kind: dict[str, list[tuple[Place, int]]] = {}
    for pl, end in places:
        by_kind.setdefault(pl.kind, []).append((pl, end))
    for kind in ("district", "community", "street", "road"):
        group = by_kind.get(kind, [])
        if not group:
            continue
        # one spoken form can denote several places of the same kind (a road in two streets)
        names = {pl.name for pl, _ in group}
        for name in sorted(names, key=lambda n: min(e for p, e in group if p.name == n)):
            pairs = frozenset().union(*(p.pairs for p, _ in group if p.name == name))
            if kind == "district":
                narrowed = frozenset(p for p in candidates if p[0] in {d for d, _ in pairs})
            else:
                narrowed = candidates & pairs
            if not narrowed:
                conflicts.append(name)
                if kind == "road" and "road" not in picked:
                    # keep what the caller said; it just does not narrow the area
                    picked[kind] = next(p for p, _ in group if p.name == name)
                    road_end = min(e for p, e in group if p.name == name)
                continue
            if kind in picked and picked[kind].name != name:
                conflicts.append(name)
                continue
            candidates = narrowed
            picked[kind] = next(p for p, _ in group if p.name == name)
            if kind == "road":
                road_end = min(e for p, e in group if p.name == name)
    districts = {d for d, _ in candidates}
    streets = {s for _, s in candidates}
    number = None
    tail_start = max(road_end, 0)
    if "road" in picked and road_end >= 0:
        m = _NUMBER_AFTER_ROAD.match(text[road_end:])
        if m:
            number = m.group(1)
            tail_start = road_end + m.end()
    tail = text[tail_start:]
    building = _BUILDING.search(tail)
    unit = _UNIT.search(tail)
    room = _ROOM.search(tail)
    return Location(
        district=next(iter(districts)) if len(districts) == 1 else None,
        street=next(iter(streets)) if len(streets) == 1 and {"street", "community", "road"} & picked.keys() else None,
        road=picked["road"].name if "road" in picked else None,
        number=number,
        community=picked["community"].name if "community" in picked else None,
        building=building.group(1) if building else None,
        unit=unit.group(1) if unit else None,
        room=room.group(1) if room else None,
        mentions=tuple(form for _, _, form in mentions),
        conflicts=tuple(conflicts),
    )


# ---------------------------------------------------------------- loading

def _names(path: Path, where: str, entry: Any) -> tuple[str, list[str]]:
    """An entry is a bare name or {name:, aliases: [...]}."""
    if isinstance(entry, str) and entry.strip():
        return entry.strip(), []
    name = require(path, where, entry, "name", str)
    aliases = entry.get("aliases") or []
    if not isinstance(aliases, list) or not all(isinstance(a, str) and a.strip() for a in aliases):
        raise DataFileError(path, f"{where} ({name})", "'aliases' must be a list of non-empty strings")
    return name.strip(), [a.strip() for a in aliases]


def load_gazetteer(path: Path | str | None = None) -> Gazetteer:
    """Read and validate a gazetteer file (default: the packaged one)."""
    path = Path(path) if path is not None else DEFAULT_GAZETTEER
    data = load_yaml(path)
    city = require(path, "", data, "city", str)
    districts = require(path, "", data, "districts", list)
    if not districts:
        raise DataFileError(path, "districts", "must list at least one district")
    where_pairs: dict[tuple[str, str], set[Pair]] = {}  # (kind, name) -> pairs
    spoken: dict[str, set[tuple[str, str]]] = {}  # form -> {(kind, name)}
    kind_of: dict[str, tuple[str, str]] = {}  # canonical name -> (kind, where first defined)

    def add(kind: str, name: str, aliases: list[str], pair: Pair, where: str) -> None:
        if name in kind_of and kind_of[name][0] != kind:
            raise DataFileError(path, where, f"'{name}' is already a {kind_of[name][0]} at {kind_of[name][1]}")
        if kind in ("district", "street", "community") and (kind, name) in where_pairs:
            raise DataFileError(path, where, f"duplicate {kind} '{name}' (first at {kind_of[name][1]})")
        kind_of.setdefault(name, (kind, where))
        where_pairs.setdefault((kind, name), set()).add(pair)
        for form in (name, *aliases):
            spoken.setdefault(form, set()).add((kind, name))

    for i, d_entry in enumerate(districts):
        where = f"districts[{i}]"
        district, aliases = _names(path, where, d_entry)
        where = f"districts[{i}] ({district})"
        add("district", district, aliases, (district, ""), where)
        streets = require(path, where, d_entry, "streets", list)
        for j, s_entry in enumerate(streets):
            s_where = f"{where}.streets[{j}]"
            street, s_aliases = _names(path, s_where, s_entry)
            s_where = f"{where}.streets[{j}] ({street})"
            add("street", street, s_aliases, (district, street), s_where)
            for k, road_entry in enumerate(s_entry.get("roads") or []):
                road, r_aliases = _names(path, f"{s_where}.roads[{k}]", road_entry)
                add("road", road, r_aliases, (district, street), f"{s_where}.roads[{k}] ({road})")
            for k, c_entry in enumerate(s_entry.get("communities") or []):
                c_where = f"{s_where}.communities[{k}]"
                community, c_aliases = _names(path, c_where, c_entry)
                add("community", community, c_aliases, (district, street), f"{c_where} ({community})")

    places = {key: Place(key[0], key[1], frozenset(pairs)) for key, pairs in where_pairs.items()}
    forms = {form: tuple(places[k] for k in sorted(keys)) for form, keys in spoken.items()}
    return Gazetteer(city=city, places=tuple(places.values()), forms=forms, source=str(path))
