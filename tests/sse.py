"""Reading a server-sent event stream (text/event-stream) as a client would."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass


@dataclass
class Event:
    event: str  # "" for comments
    data: object
    id: str
    comment: str = ""


def parse(lines: Iterable[str]) -> Iterator[Event]:
    """Events (and comment lines, as events named "") from the stream's lines."""
    name, data, eid = "", [], ""
    for line in lines:
        if line == "":
            if data:
                yield Event(name or "message", json.loads("\n".join(data)), eid)
            name, data = "", []
        elif line.startswith(":"):
            yield Event("", None, "", line[1:].strip())
        else:
            field, _, value = line.partition(":")
            value = value.removeprefix(" ")
            if field == "event":
                name = value
            elif field == "data":
                data.append(value)
            elif field == "id":
                eid = value
