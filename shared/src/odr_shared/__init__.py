"""Contracts and infrastructure shared by the ODR services (no domain logic, no service tables)."""
