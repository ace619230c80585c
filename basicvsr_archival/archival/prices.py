"""Price tables as data: ``configs/archival/prices/<name>.py`` files read into a :class:`.cost.CostModel`.

A price table is an mmengine config with one ``cost = dict(...)`` section shaped like a study config's
``cost`` section (:meth:`.cost.CostModel.from_config` keys; tiers may carry the billing fields of
:class:`.billing.StorageTier`), each value with its source and date in a comment. Tables:

* ``ncs2023``: HotStorage '23 "Neural Cloud Storage" (three S3 tiers, two prices each, GPU $0.302/h);
  :data:`.billing.DEFAULT_TIERS`, so studies priced with it are unchanged;
* ``aws_s3``: AWS S3 Standard, Standard-IA, Glacier Instant Retrieval, Glacier Flexible Retrieval and
  Glacier Deep Archive (us-east-1) with minimum durations and sizes, per-object overheads, request
  fees and restores, plus EC2 GPU and CPU prices.

Used as ``load_prices("aws_s3")`` or ``load_prices("path/to/table.py")``.
"""

from __future__ import annotations

from pathlib import Path

from mmengine.config import Config

from .billing import CostModelError
from .cost import CostModel

PRICES_DIR = Path(__file__).resolve().parents[2] / "configs" / "archival" / "prices"


def available_prices() -> list[str]:
    """Names of the price tables in ``configs/archival/prices`` (empty outside a source checkout)."""
    return sorted(p.stem for p in PRICES_DIR.glob("*.py") if not p.name.startswith("_"))


def prices_path(name_or_path: str | Path) -> Path:
    """The file of a price table: a path to a ``.py`` file, or a name in ``configs/archival/prices``."""
    p = Path(name_or_path)
    if p.suffix == ".py" or p.parent != Path():
        if not p.is_file():
            raise CostModelError(f"{p}: price table not found")
        return p
    path = PRICES_DIR / f"{p.name}.py"
    if not path.is_file():
        known = ", ".join(available_prices()) or f"none: {PRICES_DIR} is missing"
        raise CostModelError(f"unknown price table {str(name_or_path)!r} (known: {known})")
    return path


def load_prices(name_or_path: str | Path) -> CostModel:
    """The cost model of a price table (name or path); one-line :class:`CostModelError` on bad input."""
    path = prices_path(name_or_path)
    try:
        cfg = Config.fromfile(str(path)).to_dict()
    except Exception as exc:  # mmengine raises many kinds
        msg = str(exc).strip().splitlines()
        raise CostModelError(
            f"{path}: cannot read price table ({msg[0] if msg else type(exc).__name__})"
        ) from None
    if not isinstance(cfg.get("cost"), dict):
        raise CostModelError(f"{path}: a price table needs a cost = dict(...) section")
    try:
        return CostModel.from_config(cfg["cost"])
    except CostModelError as exc:
        raise CostModelError(f"{path}: cost: {exc}") from None
