"""The console's notice after an action: the text a redirect's `?notice=&id=` asks for."""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.testclient import TestClient

from services.insights.console.operations_pages import notice_of


def _app(id_length: int) -> FastAPI:
    app = FastAPI()

    @app.get("/page")
    def page(notice: str | None = notice_of(id_length=id_length)) -> dict[str, str | None]:
        return {"notice": notice}

    return app


def test_a_known_notice_names_the_item_and_an_unknown_one_shows_nothing() -> None:
    client = TestClient(_app(100))
    released = client.get("/page", params={"notice": "released", "id": "sub-1"})
    assert released.json() == {"notice": "Released submission sub-1: it is a lead now."}
    assert client.get("/page", params={"notice": "bogus", "id": "x"}).json() == {"notice": None}
    assert client.get("/page").json() == {"notice": None}


def test_each_page_bounds_the_id_and_the_notice_code() -> None:
    client = TestClient(_app(5))
    assert client.get("/page", params={"notice": "rejected", "id": "x" * 5}).status_code == 200
    assert client.get("/page", params={"notice": "rejected", "id": "x" * 6}).status_code == 422
    assert client.get("/page", params={"notice": "x" * 21}).status_code == 422
