"""Price-table side of the cost model: storage tiers, billed objects and how store files map to them.

A :class:`StorageTier` is one storage class of a provider: USD per GB-month and per GB retrieved (the
two prices of HotStorage '23 "Neural Cloud Storage"), plus the billing rules of a real price list
(AWS S3 pricing, https://aws.amazon.com/s3/pricing/): a minimum storage duration, a minimum billable
object size, a per-object overhead (S3 Glacier Flexible Retrieval / Deep Archive store 32 KB per
object at the archive price and 8 KB at S3 Standard's), request fees per 1,000 PUT / GET / restore
requests, and whether a retrieval first restores a temporary copy (billed at Standard's price).
Every extra field defaults to 0 / False, so a two-price tier costs exactly what it did before.

A :class:`BilledObject` is one object the provider bills: its size and the share of it charged to
one video. Store files map to objects (see :mod:`.store`): every member (LR stream, audio stream,
manifest) is an object of share 1, and a model shared by N videos is one object of share 1/N
(storage, retrieval and requests of that object are split N ways, as :func:`.cost.sr_archive_bytes`
splits its bytes). ``packing`` of a scenario may instead pack a video's own members (share 1) into one
object, e.g. a tar, in every tier (``"packed"``) or only in tiers that need a restore
(``"packed_cold"``, where per-object overheads and restore requests make small objects dear).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, fields
from typing import Any


class CostModelError(ValueError):
    """Invalid cost-model configuration or scenario input."""


def _check_nonneg(name: str, value: float, allow_inf: bool = False) -> float:
    """``value`` as float; :class:`CostModelError` if negative, NaN or (unless allowed) infinite."""
    try:
        v = float(value)
    except (TypeError, ValueError) as exc:
        raise CostModelError(f"{name} must be a number, got {value!r}") from exc
    if math.isnan(v) or v < 0 or (math.isinf(v) and not allow_inf):
        raise CostModelError(f"{name} must be a finite number >= 0, got {value!r}")
    return v


@dataclass(frozen=True)
class StorageTier:
    """One storage class: prices (USD), minimums, per-object overheads and request fees.

    ``storage_usd_per_gb_month`` and ``retrieval_usd_per_gb`` are the prices of stored and retrieved GB;
    ``min_storage_days``: each write is billed at least this many days; ``min_object_bytes``: each object
    is billed at least this size; ``overhead_bytes`` / ``overhead_standard_bytes``: bytes added to each
    object at this tier's / the model's standard tier's price; ``put_usd_per_1000``,
    ``get_usd_per_1000``, ``restore_usd_per_1000``: USD per 1,000 requests (a PUT per object written, a
    GET and a restore request per object retrieved); ``needs_restore``: a retrieval restores a temporary
    copy first (billed at the standard tier's price for the scenario's ``restore_copy_days``);
    ``restore_hours``: typical hours until the first byte (informational, not priced).
    """

    name: str
    storage_usd_per_gb_month: float
    retrieval_usd_per_gb: float
    min_storage_days: float = 0.0
    min_object_bytes: float = 0.0
    overhead_bytes: float = 0.0
    overhead_standard_bytes: float = 0.0
    put_usd_per_1000: float = 0.0
    get_usd_per_1000: float = 0.0
    restore_usd_per_1000: float = 0.0
    needs_restore: bool = False
    restore_hours: float = 0.0

    def __post_init__(self) -> None:
        """Reject negative or non-finite prices, sizes and durations."""
        _check_nonneg(f"tier {self.name!r} storage price", self.storage_usd_per_gb_month)
        _check_nonneg(f"tier {self.name!r} retrieval price", self.retrieval_usd_per_gb)
        for f in fields(self)[3:]:
            if f.name == "needs_restore":
                if not isinstance(self.needs_restore, bool):
                    raise CostModelError(f"tier {self.name!r} needs_restore must be True or False")
            else:
                object.__setattr__(
                    self, f.name, _check_nonneg(f"tier {self.name!r} {f.name}", getattr(self, f.name))
                )

    @property
    def has_standard_charges(self) -> bool:
        """True if this tier bills anything at the standard tier's price (overhead or restore copies)."""
        return self.needs_restore or self.overhead_standard_bytes > 0


TIER_FIELDS = tuple(f.name for f in fields(StorageTier))

# AWS S3 tiers as used by Neural Cloud Storage (HotStorage '23); configs/archival/prices/ncs2023.py.
DEFAULT_TIERS: tuple[StorageTier, ...] = (
    StorageTier("Frequent", 0.021, 0.0),
    StorageTier("Infrequent", 0.0125, 0.01),
    StorageTier("Archive", 0.004, 0.03),
)


def parse_tiers(spec: Any) -> tuple[StorageTier, ...]:
    """Tiers from ``{name: [storage, retrieval]}``, ``{name: {field: value}}`` or a list of field dicts."""
    if isinstance(spec, Mapping):
        items = [(str(name), value) for name, value in spec.items()]
    elif isinstance(spec, (list, tuple)):
        items = [(None, t) for t in spec]
    else:
        raise CostModelError(f"bad tiers config: expected a dict or a list, got {type(spec).__name__}")
    return tuple(_parse_tier(name, value) for name, value in items)


def _parse_tier(name: str | None, value: Any) -> StorageTier:
    """One tier of :func:`parse_tiers`."""
    if isinstance(value, StorageTier):
        return value
    if isinstance(value, Mapping):
        kwargs = dict(value) if name is None else {"name": name, **value}
        unknown = sorted(set(kwargs) - set(TIER_FIELDS))
        if unknown:
            raise CostModelError(f"bad tiers config: tier {kwargs.get('name')!r}: unknown key(s) {unknown}")
        missing = [k for k in TIER_FIELDS[:3] if k not in kwargs]
        if missing:
            raise CostModelError(f"bad tiers config: tier {kwargs.get('name')!r}: missing {missing}")
        return StorageTier(**kwargs)
    if name is not None and isinstance(value, (list, tuple)) and len(value) == 2:
        return StorageTier(name, value[0], value[1])
    raise CostModelError(
        f"bad tiers config: tier {name!r}: expected [storage_usd_per_gb_month, retrieval_usd_per_gb] "
        f"or a dict of {list(TIER_FIELDS[1:])}, got {value!r}"
    )


def tier_config(tier: StorageTier) -> dict[str, Any]:
    """Field dict of a tier for :func:`parse_tiers`: the name, both prices and every non-default field."""
    out: dict[str, Any] = {}
    for f in fields(tier):
        v = getattr(tier, f.name)
        if f.name in TIER_FIELDS[:3] or v != f.default:
            out[f.name] = v
    return out


@dataclass(frozen=True)
class BilledObject:
    """One object the provider bills: ``nbytes`` stored, ``share`` of it charged to one video (0 < s <= 1).

    ``grows``: its size grows with the video's length (a stream: LR bitstream, audio), unlike the model
    and the manifest.
    """

    nbytes: float
    share: float = 1.0
    grows: bool = False

    def __post_init__(self) -> None:
        """Validate the size and the share."""
        _check_nonneg("object bytes", self.nbytes)
        if not 0 < float(self.share) <= 1:
            raise CostModelError(f"object share must be in (0, 1], got {self.share!r}")


def sr_archive_objects(
    lr_bytes: float, model_bytes: float, manifest_bytes: float = 0, model_shared_by: int = 1
) -> tuple[BilledObject, ...]:
    """Objects of one video's SR archive, one per store member: LR stream, model (share 1/N), manifest.

    Members of 0 bytes are left out; the share-weighted sum is :func:`.cost.sr_archive_bytes`.
    """
    if model_shared_by < 1:
        raise CostModelError(f"model_shared_by must be >= 1, got {model_shared_by}")
    objs = [BilledObject(float(lr_bytes), grows=True)]
    if model_bytes > 0:
        objs.append(BilledObject(float(model_bytes), 1.0 / model_shared_by))
    if manifest_bytes > 0:
        objs.append(BilledObject(float(manifest_bytes)))
    return tuple(objs)


def pack(objects: Iterable[BilledObject]) -> tuple[BilledObject, ...]:
    """A video's own objects (share 1) packed into one; shared objects (share < 1) stay separate."""
    objs = tuple(objects)
    own = [o for o in objs if o.share == 1]
    if len(own) < 2:
        return objs
    return (BilledObject(sum(o.nbytes for o in own)), *(o for o in objs if o.share != 1))


PACKINGS = ("per_member", "packed", "packed_cold")


def objects_in_tier(
    objects: Iterable[BilledObject], packing: str, tier: StorageTier
) -> tuple[BilledObject, ...]:
    """Objects billed in ``tier`` under ``packing`` (``packed_cold``: packed where a restore is needed)."""
    if packing == "packed" or (packing == "packed_cold" and tier.needs_restore):
        return pack(objects)
    return tuple(objects)
