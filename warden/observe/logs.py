"""Log lines: the command line's setup (one line per record, to stderr), and the two formats
the gateway writes (`logging.format`: text or JSON lines).

Stable JSON fields, on every line: `ts` (UTC, ISO 8601, milliseconds), `level`, `logger`,
`msg`; `exc` when an exception is logged; a structured line (the start-up and shutdown lines,
the access log) adds its own fields at the top level, `event` among them (`start`, `stop`,
`access`). A structured line carries them in its record's `fields` (`extra={"fields": ...}`);
in text they follow the message as `key=value`."""

from __future__ import annotations

import logging
import re
import time

import orjson

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def configure(level: str = "INFO") -> None:
    logging.basicConfig(level=level.upper(), format=TEXT_FORMAT)


# A value written as it is: printable ASCII but `"` and `=` (anything else is JSON-quoted).
_PLAIN = re.compile(r'[\x21\x23-\x3c\x3e-\x7e]+')


class TextFormatter(logging.Formatter):
    """The text line, and a structured record's fields after its message as `key=value`."""

    def __init__(self) -> None:
        super().__init__(TEXT_FORMAT)

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        fields = getattr(record, "fields", None)
        if not fields:
            return line
        return line + "".join(f" {key}={_text(value)}" for key, value in fields.items())


def _text(value: object) -> str:
    if isinstance(value, str):  # (quoted unless plain: a client's newline forges no line)
        return value if _PLAIN.fullmatch(value) else orjson.dumps(value).decode()
    if value is None:
        return "-"
    if isinstance(value, dict | list | tuple):
        return orjson.dumps(value, default=str).decode()
    return str(value)


class JsonFormatter(logging.Formatter):
    """One JSON object per line, with the stable fields above."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, object] = {
            "ts": _utc(record.created), "level": record.levelname, "logger": record.name,
            "msg": record.getMessage()}
        if record.exc_info:
            line["exc"] = self.formatException(record.exc_info)
        elif record.exc_text:
            line["exc"] = record.exc_text
        fields = getattr(record, "fields", None)
        if fields:
            for key, value in fields.items():
                if key not in line:  # (the stable fields are never overwritten)
                    line[key] = value
        return orjson.dumps(line, default=str).decode()


def _utc(created: float) -> str:
    seconds = int(created)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + \
        f".{int((created - seconds) * 1000):03d}Z"


def formatter(name: str) -> logging.Formatter:
    """`logging.format`'s formatter."""
    return JsonFormatter() if name == "json" else TextFormatter()
