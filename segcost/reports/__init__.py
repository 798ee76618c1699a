"""Renderers of result objects (table, JSON, CSV, Markdown); no cost is computed here."""
