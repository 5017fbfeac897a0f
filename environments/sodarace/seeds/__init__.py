"""Seed programs (Square, Radial, CPPN-Fixed, CPPN-Mutable); read as text, run only in the sandbox."""
