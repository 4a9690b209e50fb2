"""A reader of server-sent events (``text/event-stream``, per the WHATWG
HTML standard's event stream format), for ``GET /v1/jobs/{id}/events``."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass


@dataclass(frozen=True)
class Event:
    """An event (``event`` is its name, "message" when unnamed) or, with
    ``event == ""``, a comment line (``comment``: keep-alives and notes)."""

    event: str
    data: str
    id: str
    comment: str = ""


def parse(lines: Iterable[str]) -> Iterator[Event]:
    """Events from the stream's lines (without their line endings)."""
    name, last_id = "", ""
    data: list[str] = []
    for line in lines:
        if line == "":
            if data:
                yield Event(name or "message", "\n".join(data), last_id)
            name, data = "", []
            continue
        if line.startswith(":"):
            yield Event("", "", last_id, line[1:].strip())
            continue
        field, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if field == "event":
            name = value
        elif field == "data":
            data.append(value)
        elif field == "id" and "\0" not in value:
            last_id = value
