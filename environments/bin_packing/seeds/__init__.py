"""Seed priority functions for online bin packing, read as text (never imported on the host)."""
