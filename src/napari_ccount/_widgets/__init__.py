"""Dock widgets: prepare, count, overlay."""
