"""Sodarace: evolve programs that build walkers; fitness is the distance walked."""

from environments.sodarace.environment import Sodarace

ENVIRONMENT = Sodarace
