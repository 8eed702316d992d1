"""End-to-end fixtures: the areas' real stacks, shared rather than rebuilt."""

from tests.compute.conftest import driver, guest_image, real_block, stack  # noqa: F401
