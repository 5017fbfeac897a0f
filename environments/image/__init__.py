"""Image matching: a program draws a small RGB image that should look like a target."""

from environments.image.matching import ImageMatching

ENVIRONMENT = ImageMatching
