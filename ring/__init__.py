"""The consistent-hash ring: the builder that assigns partitions to devices by weight and failure domain, the ring file format, fast lookups with handoffs, and the ``soko ring`` commands."""

from soko.ring.builder import RING_NAMES, RingBuilder, build_rings
from soko.ring.errors import RingError, RingFileError
from soko.ring.ring import Ring

__all__ = ["RING_NAMES", "Ring", "RingBuilder", "RingError", "RingFileError", "build_rings"]
