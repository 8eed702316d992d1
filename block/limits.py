"""The block API's input rules, in one place so the API validates and ``/info`` publishes
the same numbers; every violation is a ``BadRequest`` that says which value and why."""

from __future__ import annotations

import re

from soko.common.errors import BadRequest
from soko.common.validation import check_text, check_whole

NAME_MAX = 255
DESCRIPTION_MAX = 255
METADATA_KEY_MAX = 255
METADATA_VALUE_MAX = 255
METADATA_ITEMS_MAX = 128
IQN_MAX = 223  # RFC 3720 §3.2.6.1
# RFC 3720/3721 iSCSI names: iqn.YYYY-MM.reversed.domain[:unique] (letters, digits and only
# '-', '.' and ':' as RFC 3722's profile allows), eui.<16 hex> or naa.<16 or 32 hex>.
IQN_PATTERN = re.compile(
    r"^(iqn\.\d{4}-(0[1-9]|1[0-2])\.[a-z0-9]([a-z0-9.-]*[a-z0-9])?(:[a-z0-9.:-]+)?"
    r"|eui\.[0-9a-f]{16}|naa\.([0-9a-f]{16}|[0-9a-f]{32}))$", re.IGNORECASE)


def check_size(value, what: str = "size") -> int:
    """Whole GiB in the database's range; quota (413) and the pool (400) bound it further."""
    return check_whole(value, f"{what} (GiB)", minimum=1)


def check_metadata(value) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise BadRequest("metadata must be an object of string keys and values")
    if len(value) > METADATA_ITEMS_MAX:
        raise BadRequest(f"metadata has {len(value)} items; the limit is {METADATA_ITEMS_MAX}")
    for key, item in value.items():
        if not key:
            raise BadRequest("metadata keys must not be empty")
        check_text(key, "a metadata key", METADATA_KEY_MAX)
        check_text(item, f"metadata value of {key!r}", METADATA_VALUE_MAX)
    return dict(value)


def check_iqn(value) -> str:
    if not isinstance(value, str) or not value:
        raise BadRequest("connector.initiator must be the initiator's iSCSI name (iqn....)")
    if len(value) > IQN_MAX or not IQN_PATTERN.match(value):
        raise BadRequest(f"connector.initiator {value[:IQN_MAX]!r} is not an iSCSI name "
                         "(iqn.YYYY-MM.domain[:id], eui.<16 hex> or naa.<16|32 hex>, at most "
                         "223 characters)")
    return value


def published() -> dict[str, int]:
    return {"name_max": NAME_MAX, "description_max": DESCRIPTION_MAX,
            "metadata_items_max": METADATA_ITEMS_MAX, "metadata_key_max": METADATA_KEY_MAX,
            "metadata_value_max": METADATA_VALUE_MAX, "initiator_max": IQN_MAX}
