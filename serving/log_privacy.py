"""With pseudonymous ids, the access log must not carry the raw user ids that callers put in
URLs: this filter rewrites them to their pseudonyms before the line is written."""

import logging
import re
from urllib.parse import quote, unquote

from streamrec.contract import pseudonymise

#: Where a user id stands in our URLs: the users resource's path and the user_id query.
USER_IN_URL = re.compile(r"(/v1/users/)([^/?#]+)|([?&]user_id=)([^&#]*)")


class PseudonymousAccessLog(logging.Filter):
    def __init__(self, key: bytes) -> None:
        super().__init__()
        self.key = key

    def rewrite(self, url: str) -> str:
        def replace(match: re.Match[str]) -> str:
            lead = match.group(1) or match.group(3)
            raw = unquote(match.group(2) or match.group(4) or "")
            return lead + quote(pseudonymise(raw, self.key), safe="")

        return USER_IN_URL.sub(replace, url)

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):  # uvicorn: (client, method, path, version, status)
            record.args = tuple(self.rewrite(arg) if isinstance(arg, str) else arg
                                for arg in record.args)
        return True
