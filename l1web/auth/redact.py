"""Keep sign-in tokens out of access logs: werkzeug logs request lines with their query."""

from __future__ import annotations

import logging
import re

#: Query parameters whose values never reach a log line.
SECRET_PARAMS = re.compile(r"((?:auth_token|token|csrf_token)=)[^&\s\"]*")
#: Loggers that write request lines (werkzeug's development server; waitress logs no queries).
ACCESS_LOGGERS = ("werkzeug",)


class RedactTokens(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        redacted = SECRET_PARAMS.sub(r"\1[redacted]", message)
        if redacted != message:
            record.msg, record.args = redacted, None
        return True


def install_log_redaction() -> None:
    for name in ACCESS_LOGGERS:
        logger = logging.getLogger(name)
        if not any(isinstance(f, RedactTokens) for f in logger.filters):
            logger.addFilter(RedactTokens())
