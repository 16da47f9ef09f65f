"""Shipped as package data: the subpackage relayhook._shipped.connectors (pyproject.toml)."""
