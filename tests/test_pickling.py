"""What crosses to and from the prepare processes pickles every field: the classes that
go by the thousand define ``__reduce__`` by hand (for speed), and a field added later
must not be dropped on the way."""

from __future__ import annotations

import dataclasses
import pickle
from typing import Any

import pytest
from helpers import nonempty

from stream_eval.ingest.prepare import MessageRows
from stream_eval.records import RawMessage

# a value for each field type, none equal to a default
VALUES: dict[Any, Any] = {
    "str": "topic-x",
    "int": 7,
    "float": 12.5,
    "bytes": b"payload",
    "Mapping[str, bytes]": {"h": b"v"},
    "list[float]": [1.0, 2.0],
}


@pytest.mark.parametrize("cls", [RawMessage, MessageRows])
def test_every_field_survives_the_trip(cls: type) -> None:
    fields = dataclasses.fields(cls)
    assert fields, "no fields to check"
    kwargs = {f.name: VALUES[f.type] for f in fields}
    obj = cls(**kwargs)
    back = pickle.loads(pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL))
    for f in nonempty(fields):
        assert getattr(back, f.name) == kwargs[f.name], f.name
    assert back == obj
