"""Archival tools: LR preprocessing/encoding (``codec``) and the storage-tier cost model (``cost``)."""
