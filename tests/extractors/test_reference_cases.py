"""Every case of the reference's ``extractor-cases.json``, each its own test.

A case builds ``extractor(*args)``, pushes each chunk and checks what each push returns
(or the ``StreamError`` code it raises), ``done`` after each push and then ``flush()``.
``compare == "joined"`` cases (text outside the BMP, where the reference counts UTF-16
units) check only the concatenation of the outputs and the flush.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from streaming.errors import StreamError
from streaming.extractors import (
    ActionStreamFilter,
    PassthroughExtractor,
    ResponseStreamExtractor,
    StreamExtractor,
    XmlTagExtractor,
)

#: The ElizaOS reference's extractor cases, copied into this repository.
CASES_FILE = Path(__file__).parent.parent / "reference" / "extractor-cases.json"

EXTRACTORS: dict[str, Any] = {
    "PassthroughExtractor": PassthroughExtractor,
    "XmlTagExtractor": XmlTagExtractor,
    "ResponseStreamExtractor": ResponseStreamExtractor,
    "ActionStreamFilter": ActionStreamFilter,
}


CASES: list[dict[str, Any]] = json.loads(CASES_FILE.read_text(encoding="utf-8"))["cases"]


def _throws(expected: Any) -> str | None:
    """The expected error code of one push, or ``None`` when it returns text."""
    if isinstance(expected, dict):
        return str(expected["throws"]["code"])
    return None


@pytest.mark.parametrize("case", CASES, ids=[case["id"] for case in CASES])
def test_reference_case(case: dict[str, Any]) -> None:
    extractor: StreamExtractor = EXTRACTORS[case["extractor"]](*case["args"])
    outputs: list[Any] = []
    done: list[bool] = []
    for chunk, expected in zip(case["chunks"], case["outputs"], strict=True):
        code = _throws(expected)
        if code is None:
            outputs.append(extractor.push(chunk))
        else:
            with pytest.raises(StreamError) as raised:
                extractor.push(chunk)
            assert str(raised.value.code) == code
            outputs.append(expected)
        done.append(extractor.done)
    flushed = extractor.flush()

    assert done == case["done_after_each"]
    if case["compare"] == "exact":
        assert outputs == case["outputs"]
        if case["flush"] is not None:
            assert flushed == case["flush"]
    else:
        assert case["compare"] == "joined"
        texts = [out for out in case["outputs"] if isinstance(out, str)]
        got = [out for out in outputs if isinstance(out, str)]
        assert "".join(got) + flushed == "".join(texts) + (case["flush"] or "")
