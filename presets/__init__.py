"""Shipped as package data: the subpackage relayhook._shipped.presets (pyproject.toml)."""
