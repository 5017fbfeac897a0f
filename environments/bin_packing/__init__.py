"""Online bin packing: evolve the priority function that picks a bin for each item."""

from environments.bin_packing.packing import OnlineBinPacking

ENVIRONMENT = OnlineBinPacking
