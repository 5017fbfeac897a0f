"""elm: Evolution through Large Models — MAP-Elites over programs mutated by a diff model."""

__version__ = "0.1.0"
