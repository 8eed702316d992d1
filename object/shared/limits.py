"""What both the proxy and the storage nodes hold to: Swift's user-metadata limits (the
proxy checks a request, a node what an account or container would store) and the one
storage policy's name."""

from __future__ import annotations

MAX_META_NAME_LENGTH = 128
MAX_META_VALUE_LENGTH = 256
MAX_META_COUNT = 90
MAX_META_OVERALL_SIZE = 4096
# soko has one storage policy; Swift names its default one so when swift.conf names none
DEFAULT_POLICY = "Policy-0"
