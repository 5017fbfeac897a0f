"""Seed programs for image matching, read as text (never imported on the host)."""
