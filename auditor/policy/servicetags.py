"""Microsoft's `ServiceTags_*.json` and the longest-prefix structure that answers "which tags?".

CIDR blocks are either nested or disjoint, so one sorted pass with a stack turns ~96k prefixes
into disjoint intervals, each carrying the (interned) tuple of every tag that covers it. A
lookup is one `bisect` per address: O(log n), independent of how many rules or tags there are.
"""
from __future__ import annotations

import json
import os
import re
from datetime import datetime, timezone
from bisect import bisect_right
from pathlib import Path
from typing import Iterable, Sequence

from auditor.addresses import parse as parse_address

from . import tagindex
from .model import PolicyError

MAX_FILE_BYTES = 64 * 1024 * 1024
DATA_DIR = Path(__file__).resolve().parent.parent / "data" / "servicetags"


def default_path() -> Path:
    """The newest bundled `ServiceTags_Public_*.json` (the file name carries the date)."""
    found = sorted(DATA_DIR.glob("ServiceTags_Public_*.json"))
    if not found:
        raise PolicyError(str(DATA_DIR), "no bundled ServiceTags_Public_*.json")
    return found[-1]


def published_date(path: str | os.PathLike) -> float | None:
    """Publication date (UTC midnight, epoch seconds) from a `ServiceTags_*_YYYYMMDD.json`
    file name, None when the name carries no date."""
    m = re.search(r"_(\d{8})\.json$", str(path))
    if not m:
        return None
    try:
        return datetime.strptime(m.group(1), "%Y%m%d").replace(tzinfo=timezone.utc).timestamp()
    except ValueError:
        return None


# (cloud, changeNumber, publication date) of files whose date is known. The top-level change
# number only grows (Microsoft: it increments whenever any tag changes), so a file whose number is
# not above an anchor's was published on or before that anchor's date. Public: the bundled
# ServiceTags_Public_20251109.json; China: ServiceTags_China_20230123.json (ryanborMSFT/
# AzureServiceTagsJson archive).
CHANGE_NUMBER_ANCHORS = (("Public", 376, "2025-11-09"), ("China", 237, "2023-01-23"))
STALE_AFTER_DAYS = 30
REFRESH_HINT = ("download the current ServiceTags_Public_YYYYMMDD.json from "
                "https://www.microsoft.com/download/details.aspx?id=56519 (or run `az network "
                "list-service-tags --location <region> > tags.json`) and pass --service-tags")


def published_bound(cloud: object, change_number: object) -> float | None:
    """Latest possible publication date (epoch seconds) of a file with this change number."""
    try:
        number = int(str(change_number))
    except ValueError:
        return None
    best = None
    for anchor_cloud, anchor_number, day in CHANGE_NUMBER_ANCHORS:
        if str(cloud).lower() == anchor_cloud.lower() and number <= anchor_number:
            when = datetime.strptime(day, "%Y-%m-%d").replace(tzinfo=timezone.utc).timestamp()
            best = when if best is None else min(best, when)
    return best


def normalise_region(region: str) -> str:
    """`East US`, `EastUS`, `east_us` -> `eastus` (ARM location names)."""
    return "".join(ch for ch in region.lower() if ch.isalnum())


def parse_prefix(text: str) -> tuple[int, int, int]:
    """(family bits, first, last) of "a.b.c.d/n" or a bare address; ValueError if malformed."""
    addr, _, length = text.strip().partition("/")
    parsed = parse_address(addr)
    if parsed is None:
        raise ValueError(f"{text!r} is not an IP prefix")
    bits, value = parsed
    n = bits if not length else int(length) if length.isdigit() else -1
    if not 0 <= n <= bits:
        raise ValueError(f"{text!r} has an invalid prefix length")
    host = (1 << (bits - n)) - 1
    first = value & ~host
    return bits, first, first | host


class PrefixTable:
    """Disjoint sorted intervals per address family, each with the labels covering it."""

    __slots__ = ("_starts", "_labels")

    def __init__(self, blocks: Iterable[tuple[int, int, int, str]] = (), *,
                 grouped: dict[tuple[int, int, int], set[str]] | None = None) -> None:
        # Merge labels of identical blocks first: many prefixes appear in several tags.
        by_block: dict[tuple[int, int, int], set[str]] = grouped if grouped is not None else {}
        for bits, first, last, label in blocks:
            by_block.setdefault((bits, first, last), set()).add(label)
        self._starts: dict[int, Sequence[int]] = {}   # a list, or an array from the index
        self._labels: dict[int, list[tuple[str, ...]]] = {}
        for bits in (32, 128):
            # (first, -last) is unique per block, so the label sets are never compared.
            items = sorted([(f, -l, lab) for (b, f, l), lab in by_block.items() if b == bits])
            self._starts[bits], self._labels[bits] = self._flatten(items)

    @staticmethod
    def _flatten(items: list) -> tuple[list[int], list[tuple[str, ...]]]:
        starts: list[int] = []
        labels: list[tuple[str, ...]] = []
        interned: dict[frozenset, tuple[str, ...]] = {frozenset(): ()}

        def emit(pos: int, tags: tuple[str, ...]) -> None:
            if starts and starts[-1] == pos:
                labels[-1] = tags
                if len(labels) > 1 and labels[-2] is tags:   # merged back into the previous run
                    starts.pop(); labels.pop()
            elif not labels or labels[-1] is not tags:
                starts.append(pos); labels.append(tags)

        stack: list[tuple[int, tuple[str, ...]]] = []   # (last address, tags) of open blocks
        for first, neg_last, own in items:
            while stack and stack[-1][0] < first:
                end, _ = stack.pop()
                emit(end + 1, stack[-1][1] if stack else ())
            parent = stack[-1][1] if stack else ()
            key = frozenset(parent).union(own)
            tags = interned.get(key)
            if tags is None:
                tags = interned[key] = tuple(sorted(key))
            emit(first, tags)
            stack.append((-neg_last, tags))
        while stack:
            end, _ = stack.pop()
            emit(end + 1, stack[-1][1] if stack else ())
        return starts, labels

    @classmethod
    def from_arrays(cls, starts: dict[int, Sequence[int]],
                    labels: dict[int, list[tuple[str, ...]]]) -> "PrefixTable":
        """A table from the intervals a built one holds (`tagindex`)."""
        table = cls.__new__(cls)
        table._starts, table._labels = starts, labels
        return table

    def lookup(self, bits: int, value: int) -> tuple[str, ...]:
        starts = self._starts[bits]
        i = bisect_right(starts, value) - 1
        return self._labels[bits][i] if i >= 0 else ()

    def __len__(self) -> int:
        return sum(len(s) for s in self._starts.values())


_LOADED: dict[tuple, "ServiceTags"] = {}


class ServiceTags:
    """A loaded service-tags file. Tag names resolve case-insensitively, regions by ARM name."""

    def __init__(self, table: PrefixTable, names: dict[str, str], *, path: str = "",
                 region: str | None = None, change_number: int | None = None,
                 cloud: str | None = None) -> None:
        self.table = table
        self._names = names          # lower-case alias -> canonical tag name
        self.path = path
        self.region = normalise_region(region) if region else None
        self.change_number = change_number
        self.cloud = cloud
        self.published = published_date(path)
        self.published_exact = self.published is not None     # False: an upper bound, or None
        if self.published is None:
            self.published = published_bound(cloud, change_number)
        self.notes: list[str] = []          # what the reader noticed about the file
        self.sizes: dict[str, int] = {}     # tag -> addresses it covers (v4 and v6 on one scale)
        self.services: dict[str, str] = {}  # tag -> its `systemService` (AzureStorage, ...)

    @classmethod
    def load(cls, path: str | os.PathLike | None = None, region: str | None = None,
             virtual_network: Iterable[str] = ()) -> "ServiceTags":
        """Read a `ServiceTags_*.json` download; `virtual_network` is the `VirtualNetwork` tag.

        The parsed table is kept for the life of the process, keyed by the file's identity
        (path, size, modification time) and the options: a second audit in one process (tests,
        the API) or a SIGHUP with an unchanged file costs nothing, a replaced file is re-read."""
        path = Path(path) if path else default_path()
        virtual_network = tuple(virtual_network)
        try:
            st = path.stat()
            key = (str(path.resolve()), st.st_size, st.st_mtime_ns, region, tuple(virtual_network))
            hit = _LOADED.get(key)
            if hit is not None:
                return hit
            if st.st_size > MAX_FILE_BYTES:
                raise PolicyError(str(path), f"service tags file larger than {MAX_FILE_BYTES} bytes")
            raw = path.read_bytes()
        except OSError as exc:
            raise PolicyError(str(path), f"cannot read service tags: {exc.strerror or exc}") from None
        digest = tagindex.key(raw, virtual_network)
        blob = tagindex.find(path, digest)
        index = tagindex.parse(blob, digest) if blob is not None else None
        if index is not None:
            tags = cls._from_index(index, path=str(path), region=region)
        else:
            tags = cls._parse(raw, path, region, virtual_network)
            tagindex.store(path, digest, tags._index(digest))
        _LOADED[key] = tags
        while len(_LOADED) > 4:
            del _LOADED[next(iter(_LOADED))]
        return tags

    @classmethod
    def _parse(cls, raw: bytes, path: Path, region: str | None,
               virtual_network: Iterable[str]) -> "ServiceTags":
        try:
            doc = json.loads(raw)
        except (ValueError, RecursionError) as exc:
            raise PolicyError(str(path), f"not a service tags JSON file: {exc}") from None
        values = doc.get("values") if isinstance(doc, dict) else None
        if not isinstance(values, list):
            empty = isinstance(doc, dict) and "nextLink" in doc
            raise PolicyError(str(path), "no service tags in this file (an empty `az network "
                                         "list-service-tags` response?)" if empty else
                                         "not a service tags file: no 'values' list")
        if not values:
            raise PolicyError(str(path), "the service tags file lists no tags")
        tags = cls.from_values(values, region=region, virtual_network=virtual_network,
                               path=str(path), change_number=doc.get("changeNumber"),
                               cloud=doc.get("cloud"))
        if doc.get("nextLink"):
            # `az network list-service-tags` does not follow nextLink: this is one page.
            tags.notes.append(f"{path}: the file has a nextLink: it is one page of the list; "
                              "tags on later pages are missing")
        return tags

    def _index(self, digest: str) -> bytes:
        table = self.table
        return tagindex.dump(digest, starts=table._starts, labels=table._labels,
                             names=self._names, services=self.services, sizes=self.sizes,
                             change_number=self.change_number, cloud=self.cloud, notes=self.notes)

    @classmethod
    def _from_index(cls, index: dict, *, path: str, region: str | None) -> "ServiceTags":
        table = PrefixTable.from_arrays(index["starts"], index["label_lists"])
        tags = cls(table, index["names"], path=path, region=region,
                   change_number=index["change_number"], cloud=index["cloud"])
        tags.services, tags.sizes = index["services"], index["sizes"]
        tags.notes = list(index["notes"])
        return tags

    @classmethod
    def from_values(cls, values: list, *, region: str | None = None,
                    virtual_network: Iterable[str] = (), path: str = "",
                    change_number: int | None = None, cloud: str | None = None) -> "ServiceTags":
        names: dict[str, str] = {}
        services: dict[str, str] = {}            # tag -> the Azure service it belongs to
        region_alias: dict[str, str] = {}
        location_to_field: dict[str, str] = {}   # "francecentral" -> "centralfrance"
        prefixes: dict[str, list[str]] = {}
        for i, tag in enumerate(values):
            try:
                name = tag["name"]
                props = tag["properties"]
                plist = props.get("addressPrefixes") or []
                # A hostile or corrupt file: wrong types must be a one-line error, not a crash.
                if not (isinstance(name, str) and isinstance(plist, list)
                        and all(isinstance(x, str) for x in plist)):
                    raise TypeError
                prefixes[name] = list(plist)
            except (KeyError, TypeError, AttributeError):
                raise PolicyError(path, f"values[{i}]: not a service tag entry (needs a string "
                                        "'name' and 'properties.addressPrefixes', a list of strings)") from None
            names[name.lower()] = name
            if isinstance(props.get("systemService"), str) and props["systemService"]:
                services[name] = props["systemService"]
            base, dot, _ = name.partition(".")
            if dot and props.get("region"):
                # The file's `region` field is an internal name (`centralfrance`) while the tag
                # suffix is the ARM location (`FranceCentral`); accept both, suffix first.
                region_alias.setdefault(f"{base}.{props['region']}".lower(), name)
                suffix = name.partition(".")[2].lower()
                if suffix != props["region"]:
                    location_to_field.setdefault(suffix, props["region"])
        for alias, name in region_alias.items():
            names.setdefault(alias, name)
        for name in list(names.values()):
            base, dot, suffix = name.partition(".")
            field = dot and next((loc for loc, f in location_to_field.items()
                                  if f == suffix.lower()), None)
            if field:   # `AzureCloud.centralfrance` is also reachable as `AzureCloud.francecentral`
                names.setdefault(f"{base}.{field}".lower(), name)
        names.setdefault("virtualnetwork", "VirtualNetwork")

        # Parse each distinct prefix once: the same block appears under many tags.
        by_text: dict[str, set[str]] = {}
        for name, plist in prefixes.items():
            base, dot, _ = name.partition(".")
            # A global tag includes all its regions, whatever the file's own lists say.
            own = (name, base) if dot and base in prefixes else (name,)
            for text in plist:
                by_text.setdefault(text, set()).update(own)
        for text in virtual_network:
            by_text.setdefault(text, set()).add("VirtualNetwork")
        grouped: dict[tuple[int, int, int], set[str]] = {}
        for text, labels in by_text.items():
            try:
                bits, first, last = parse_prefix(text)
            except ValueError as exc:
                owner = "virtual_network" if "VirtualNetwork" in labels and len(labels) == 1 \
                    else f"tag {sorted(labels)[0]!r}"
                raise PolicyError(path or "virtual_network", f"{owner}: {exc}") from None
            key = (bits, first, last)
            if key in grouped:              # same block written two ways ("1.2.3.4" vs "/32")
                grouped[key] |= labels
            else:
                grouped[key] = labels
        tags = cls(PrefixTable(grouped=grouped), names, path=path, region=region,
                   change_number=change_number, cloud=cloud)
        tags.services = services
        for (bits, first, last), labels in grouped.items():
            size = (last - first + 1) << (128 - bits)
            for lab in labels:
                tags.sizes[lab] = tags.sizes.get(lab, 0) + size
        return tags

    def age_days(self, now: float) -> float | None:
        return None if self.published is None else (now - self.published) / 86400

    def staleness(self, now: float) -> str | None:
        """A warning when the file is older than STALE_AFTER_DAYS (Microsoft republishes
        weekly, and a new address is used no sooner than a week after it is published)."""
        age = self.age_days(now)
        if age is None or age <= STALE_AFTER_DAYS:
            return None
        day = datetime.fromtimestamp(self.published or 0, timezone.utc).strftime("%Y-%m-%d")
        when = f"published {day}" if self.published_exact else \
            f"change number {self.change_number}: published on or before {day}"
        least = "" if self.published_exact else "at least "
        return (f"service tags {Path(self.path).name or 'file'} is {least}{int(age)} days "
                f"old ({when}); Microsoft republishes weekly: addresses added since are judged "
                f"denied, addresses moved since are judged by their old tag. To refresh, "
                f"{REFRESH_HINT}")

    def resolve(self, tag: str) -> str | None:
        """Canonical spelling of a tag (`microsoftcontainerregistry.eastus` -> `...EastUS`)."""
        base, dot, reg = tag.partition(".")
        found = self._names.get(tag.lower())
        if found is None and dot:
            found = self._names.get(f"{base}.{normalise_region(reg)}".lower())
        return found

    def __contains__(self, tag: str) -> bool:
        return self.resolve(tag) is not None

    def tags_for(self, ip: str) -> tuple[str, ...]:
        """Every tag (canonical names, sorted) whose prefixes contain `ip`; () if none or not an IP."""
        parsed = parse_address(ip)
        return self.table.lookup(*parsed) if parsed else ()

    def tags_for_int(self, bits: int, value: int) -> tuple[str, ...]:
        return self.table.lookup(bits, value)
