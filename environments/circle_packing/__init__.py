"""Circle packing: place n circles in the unit square, maximising the sum of their radii."""

from environments.circle_packing.packing import CirclePacking

ENVIRONMENT = CirclePacking
