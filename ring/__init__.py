"""The consistent-hash ring: the builder that assigns partitions to devices by weight and failure domain, the ring file format, fast lookups with handoffs, and the ``soko ring`` commands."""
