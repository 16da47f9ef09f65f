"""Shipped as package data: the subpackage relayhook._shipped.templates (pyproject.toml)."""
