"""Seed programs: the ELM paper's four (Square, Radial, CPPN-Fixed, CPPN-Mutable) and extra ones;
read as text, run only in the sandbox."""
