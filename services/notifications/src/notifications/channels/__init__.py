"""Delivery channels: adapters behind one small interface, chosen by configuration."""

from notifications.channels.base import Channel, Message, ProviderResult

__all__ = ["Channel", "Message", "ProviderResult"]
