"""Seed programs for circle packing, read as text (never imported on the host)."""
