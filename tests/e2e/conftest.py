"""End-to-end fixtures: the areas' real stacks, shared rather than rebuilt."""

from tests.compute.conftest import driver, real_block, stack  # noqa: F401
from tests.e2e.allinone import allinone  # noqa: F401  (one soko up for the session)
from tests.image.conftest import guest_image, image_stack  # noqa: F401
