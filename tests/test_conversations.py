"""The conversations API over real sockets, on SQLite and on PostgreSQL: list, create,
read, rename, delete; owner scoping (404 that reveals nothing), CSRF, JSON errors."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from .conftest import ChatServer

API = "/chat/conversations"


class Visitor:
    """One browser: its own cookies (session, CSRF), so its own owner."""

    def __init__(self, url: str) -> None:
        self.client = httpx.Client(base_url=url, timeout=10)
        assert self.client.get("/").status_code == 200  # the CSRF cookie (a POST: the session)

    @property
    def token(self) -> str:
        return self.client.cookies["csrftoken"]

    def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        headers = {"X-CSRFToken": self.token, **kwargs.pop("headers", {})}
        return self.client.request(method, path, headers=headers, **kwargs)

    def create(self, title: str | None = None) -> dict[str, Any]:
        response = self.request("POST", API, json={} if title is None else {"title": title})
        assert response.status_code == 201, response.text
        return dict(response.json())

    def close(self) -> None:
        self.client.close()


@pytest.fixture
def visitors(chat_server: ChatServer) -> Iterator[Any]:
    made: list[Visitor] = []

    def make() -> Visitor:
        made.append(Visitor(chat_server.url))
        return made[-1]

    yield make
    for visitor in made:
        visitor.close()


def test_a_new_conversation_is_listed_and_read(visitors: Any) -> None:
    me = visitors()
    created = me.create()
    assert set(created) == {"id", "title", "updated"}
    assert created["title"] == ""
    listed = me.request("GET", API).json()
    assert listed == {"conversations": [created], "next": None}
    detail = me.request("GET", f"{API}/{created['id']}").json()
    assert detail == {
        **created, "messages": [], "earlier": None, "running": None, "starting": False,
    }  # fmt: skip


def test_a_title_given_at_creation_is_kept(visitors: Any) -> None:
    assert visitors().create("  Trip   to Lisbon ")["title"] == "Trip to Lisbon"


def test_the_list_is_newest_first_and_pages_with_limit_and_before(visitors: Any) -> None:
    me = visitors()
    ids = [me.create(f"chat {n}")["id"] for n in range(5)]
    first = me.request("GET", API, params={"limit": 2}).json()
    assert [c["id"] for c in first["conversations"]] == ids[::-1][:2]
    second = me.request("GET", API, params={"limit": 2, "before": first["next"]}).json()
    assert [c["id"] for c in second["conversations"]] == ids[::-1][2:4]
    third = me.request("GET", API, params={"limit": 2, "before": second["next"]}).json()
    assert [c["id"] for c in third["conversations"]] == ids[:1]
    assert third["next"] is None


@pytest.mark.parametrize("limit", ["0", "101", "ten", "-1", "\u00b2", "1" * 5000])
def test_a_bad_limit_is_a_json_400(visitors: Any, limit: str) -> None:
    me = visitors()
    for path in (API, f"{API}/{me.create()['id']}"):
        response = me.request("GET", path, params={"limit": limit})
        assert response.status_code == 400
        assert response.json()["code"] == "BAD_REQUEST"


def test_the_messages_page_back_from_the_latest_with_limit_and_before(visitors: Any) -> None:
    """Three turns (six messages) read two at a time, newest page first; a cursor that is
    no message of this conversation is a 404, as the list's unknown cursor is."""
    me = visitors()
    chat = me.create()["id"]
    for n in range(3):
        reply = me.request(
            "POST", "/chat/stream", json={"prompt": f"turn {n}", "conversation": chat}
        )
        assert reply.status_code == 200 and reply.text.rstrip().endswith('{"done":true}'), (
            reply.text[-300:]
        )
    path = f"{API}/{chat}"
    whole = me.request("GET", path).json()
    assert whole["earlier"] is None and len(whole["messages"]) == 6
    pages, params = [], {"limit": 2}
    while True:
        data = me.request("GET", path, params=params).json()
        pages.insert(0, data["messages"])
        if data["earlier"] is None:
            break
        params = {"limit": 2, "before": data["earlier"]}
    assert [len(page) for page in pages] == [2, 2, 2]
    assert [m for page in pages for m in page] == whole["messages"]
    assert pages[0][0]["content"] == "turn 0"
    other = me.create()["id"]
    for cursor in (whole["messages"][0]["id"], "x"):
        response = me.request("GET", f"{API}/{other}", params={"before": cursor})
        assert response.status_code == 404
        assert response.json()["code"] == "NOT_FOUND"


def test_rename(visitors: Any) -> None:
    me = visitors()
    created = me.create()
    response = me.request("PATCH", f"{API}/{created['id']}", json={"title": "Renamed"})
    assert response.status_code == 200
    assert response.json() == {**created, "title": "Renamed"}
    assert me.request("GET", API).json()["conversations"][0]["title"] == "Renamed"


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"title": ""},
        {"title": "   "},
        {"title": 7},
        {"title": "x" * 201},
        {"title": "\u200b\u200d\ufeff"},  # zero-width characters only
        {"title": "\x07\x1b \u2028"},  # controls and separators only
    ],
)
def test_a_bad_title_is_refused(visitors: Any, body: dict[str, Any]) -> None:
    me = visitors()
    created = me.create()
    response = me.request("PATCH", f"{API}/{created['id']}", json=body)
    assert response.status_code == 400
    assert response.json()["code"] == "BAD_REQUEST"
    assert me.request("GET", f"{API}/{created['id']}").json()["title"] == ""
    assert me.request("POST", API, json=body).status_code == (201 if body == {} else 400)


@pytest.mark.parametrize(
    "content",
    [
        b"not json",
        b"[1, 2]",
        b"\xff\xfe",
        # UTF-16 and UTF-32 (json.loads takes them), with a lone surrogate: a 500 before.
        '{"title": "x'.encode("utf-16-le") + b"\x00\xd8" + 'y"}'.encode("utf-16-le"),
        '{"title": "x'.encode("utf-32-le") + b"\x00\xd8\x00\x00" + 'y"}'.encode("utf-32-le"),
        b"[" * 100_000 + b"]" * 100_000,
        b'{"title": "t", "x": NaN}',
        b'{"title": "' + b"x" * 3_000_000 + b'"}',  # past DATA_UPLOAD_MAX_MEMORY_SIZE
    ],
    ids=["not-json", "array", "bad-utf8", "utf16", "utf32", "nested", "nan", "too-large"],
)
def test_a_body_that_is_not_a_json_object_is_refused(visitors: Any, content: bytes) -> None:
    """As JSON, for PATCH and POST alike (Django's HTML page or a 500 would not be)."""
    me = visitors()
    created = me.create()
    for method, path in (("PATCH", f"{API}/{created['id']}"), ("POST", API)):
        response = me.request(method, path, content=content)
        assert response.status_code == 400, response.text[:300]
        assert response.json()["code"] == "BAD_REQUEST"
        assert response.json()["error"].startswith("The request body ")
    assert [c["id"] for c in me.request("GET", API).json()["conversations"]] == [created["id"]]


def test_a_title_is_one_line_without_control_characters(visitors: Any) -> None:
    me = visitors()
    created = me.create("\x1b[31mred\x1b[0m\nchat\x07")
    assert created["title"] == "[31mred[0m chat"
    family = "\U0001f468\u200d\U0001f469\u200d\U0001f467"  # joined by zero-width joiners
    assert me.create(family)["title"] == family


def test_a_prompt_that_shows_nothing_leaves_the_conversation_untitled(visitors: Any) -> None:
    me = visitors()
    created = me.create()
    body = {"prompt": "\u200b\u200b", "conversation": created["id"], "pipeline": "passthrough"}
    assert me.request("POST", "/chat/stream", json=body).status_code == 200
    stored = me.request("GET", f"{API}/{created['id']}").json()
    assert stored["title"] == ""
    assert [m["role"] for m in stored["messages"]] == ["user", "assistant"]


def test_a_lone_surrogate_in_a_title_becomes_a_replacement_character(visitors: Any) -> None:
    me = visitors()
    created = me.create()
    body = b'{"title": "x \\ud800 y"}'
    response = me.request("PATCH", f"{API}/{created['id']}", content=body)
    assert response.status_code == 200, response.text[:300]
    assert response.json()["title"] == "x \ufffd y"
    made = me.request("POST", API, content=b'{"title": "\\udfff"}')
    assert made.status_code == 201
    assert made.json()["title"] == "\ufffd"


def test_delete(visitors: Any) -> None:
    me = visitors()
    keep, gone = me.create("keep"), me.create("gone")
    assert me.request("DELETE", f"{API}/{gone['id']}").status_code == 204
    assert me.request("GET", f"{API}/{gone['id']}").status_code == 404
    assert [c["id"] for c in me.request("GET", API).json()["conversations"]] == [keep["id"]]
    assert me.request("DELETE", f"{API}/{gone['id']}").status_code == 404


def test_another_owners_conversation_is_a_404_that_reveals_nothing(visitors: Any) -> None:
    owner, stranger = visitors(), visitors()
    theirs = owner.create("private")
    unknown = "00000000-0000-4000-8000-000000000000"
    answers = []
    for conversation_id in (theirs["id"], unknown, "not-a-uuid", "1"):
        for method, body in (("GET", None), ("PATCH", {"title": "mine"}), ("DELETE", None)):
            response = stranger.request(method, f"{API}/{conversation_id}", json=body)
            answers.append((response.status_code, response.json()))
    assert set(map(str, answers)) == {
        str((404, {"error": "No such conversation", "code": "NOT_FOUND"}))
    }
    assert stranger.request("GET", API).json()["conversations"] == []
    assert owner.request("GET", f"{API}/{theirs['id']}").json()["title"] == "private"


def test_an_id_spelled_otherwise_is_the_same_json_404(visitors: Any) -> None:
    """A conversation has one URL: upper case, braces, ``urn:uuid:``, a trailing or an
    encoded slash, an empty id are the API's own JSON 404, never an alias of it nor
    Django's HTML page."""
    me = visitors()
    created = me.create("mine")
    spellings = [
        created["id"].upper(),
        "{" + created["id"] + "}",
        "urn:uuid:" + created["id"],
        created["id"].replace("-", ""),
        created["id"] + "/",
        created["id"] + "%2F",
        created["id"] + "/messages",
        "",
        "%0A",
    ]
    for spelling in spellings:
        for method in ("GET", "DELETE"):
            response = me.request(method, f"{API}/{spelling}")
            assert response.status_code == 404, (spelling, response.text[:200])
            assert response.json() == {"error": "No such conversation", "code": "NOT_FOUND"}
    assert me.request("GET", f"{API}/{created['id']}").json()["title"] == "mine"


def test_unsafe_methods_need_the_csrf_token(visitors: Any) -> None:
    me = visitors()
    created = me.create()
    for method, path in (
        ("POST", API),
        ("PATCH", f"{API}/{created['id']}"),
        ("DELETE", f"{API}/{created['id']}"),
    ):
        for origin in (None, "http://evil.example"):
            headers = {} if origin is None else {"Origin": origin}
            response = me.client.request(method, path, json={"title": "x"}, headers=headers)
            assert response.status_code == 403
            assert response.json()["code"] == "CSRF_FAILED", response.text[:300]
    assert me.request("GET", f"{API}/{created['id']}").json()["title"] == ""


def test_another_method_is_a_json_405(visitors: Any) -> None:
    me = visitors()
    response = me.request("PUT", API, json={})
    assert response.status_code == 405
    assert response.headers["Allow"] == "GET, HEAD, POST"
    assert response.json() == {
        "error": "Method PUT is not allowed; allowed: GET, HEAD, POST",
        "code": "METHOD_NOT_ALLOWED",
    }


def test_head_answers_as_get_without_a_body(visitors: Any) -> None:
    """Over one kept-alive connection: a body after a HEAD would be read as the next
    response."""
    me = visitors()
    created = me.create("mine")
    for path in (API, f"{API}/{created['id']}"):
        head = me.request("HEAD", path)
        assert head.status_code == 200 and head.content == b""
        assert head.headers["Content-Type"] == "application/json"
        assert me.request("GET", path).json()  # the same connection still reads right
    assert me.request("HEAD", f"{API}/{created['id'].upper()}").status_code == 404


def test_an_ai_sdk_chat_id_no_chat_can_have_is_a_json_refusal(visitors: Any) -> None:
    """``chat/ui/<id>/stream``: an id no chat can have (it holds a slash, encoded or not,
    or is empty) gets the view's JSON 400, not Django's HTML 404 page."""
    me = visitors()
    for chat_id in ("a/b", "a%2Fb", "%2F", ""):
        for method in ("GET", "DELETE"):
            response = me.request(method, f"/chat/ui/{chat_id}/stream")
            assert response.status_code == 400, (chat_id, response.text[:200])
            assert response.json()["code"] == "BAD_REQUEST"


def test_a_rename_racing_a_delete_is_a_404_never_a_503(visitors: Any) -> None:
    """Whichever comes first, the rename of a conversation deleted meanwhile finds none
    (it was a 503 "The database is unavailable", and an error in the log)."""
    from concurrent.futures import ThreadPoolExecutor

    me = visitors()
    statuses: set[int] = set()
    with ThreadPoolExecutor(2) as pool:
        for _ in range(40):
            conversation_id = me.create()["id"]
            path = f"{API}/{conversation_id}"
            rename = pool.submit(me.request, "PATCH", path, json={"title": "new"})
            delete = pool.submit(me.request, "DELETE", path)
            assert delete.result().status_code in (204, 404)
            statuses.add(rename.result().status_code)
    assert statuses <= {200, 404}, statuses
