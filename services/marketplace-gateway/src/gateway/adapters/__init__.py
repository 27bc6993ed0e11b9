"""One adapter per marketplace kind: its signing recipe, its payloads and status vocabulary."""

from __future__ import annotations

from gateway.adapters.base import Adapter, PlatformConfig
from gateway.adapters.lazada import LazadaAdapter
from gateway.adapters.shopee import ShopeeAdapter
from gateway.adapters.shopify import haravan, sapo, shopify
from gateway.adapters.standard import StandardAdapter
from gateway.adapters.tiktok import TikTokAdapter

ADAPTERS: dict[str, Adapter] = {
    a.kind: a
    for a in (
        StandardAdapter(),
        ShopeeAdapter(),
        LazadaAdapter(),
        TikTokAdapter(),
        shopify(),
        haravan(),
        sapo(),
    )
}

__all__ = ["ADAPTERS", "Adapter", "PlatformConfig", "StandardAdapter"]
