"""Relayhook: a self-hosted webhook bridge."""

__version__ = "0.1.0"
