"""Boards, tags, favourites, compare and remix: Bob (artist) and Alice (lead) gather Bob's images on boards
and tag them; Vera (viewer) stars what she likes but rearranges nothing; Charlie, outside, sees none of it."""

from __future__ import annotations

import json

import pytest

from gallery import services
from gallery.board_views import compare_rows
from gallery.models import AssetTag, Board, BoardItem, Favourite, Tag
from studio.errors import InvalidInput, NotAllowed
from tests import factories

pytestmark = pytest.mark.django_db


def send(client, method, url, body=None):
    return getattr(client, method)(url, data=json.dumps(body or {}), content_type="application/json")


@pytest.fixture
def images(team):
    return [factories.asset(team["project"], team["bob"], prompt=f"image {i}") for i in range(4)]


@pytest.fixture
def elsewhere(team):
    """Charlie's own project, with an image in it."""
    other = factories.project(team["charlie"], name="Other")
    return factories.asset(other, team["charlie"])


@pytest.fixture
def board(team):
    return services.do_create_board(team["bob"], team["project"], "Shortlist")


# --- services --


def test_an_artist_makes_a_board_and_fills_it(team, images, board):
    services.do_add_to_board(team["bob"], board, images[0])
    services.do_add_to_board(team["bob"], board, str(images[1].id))
    services.do_add_to_board(team["alice"], board, images[0])  # twice is harmless
    assert set(board.assets.all()) == {images[0], images[1]}
    assert services.do_remove_from_board(team["bob"], board, images[0]) is True
    assert services.do_remove_from_board(team["bob"], board, images[0]) is False
    assert list(board.assets.all()) == [images[1]]


@pytest.mark.parametrize(
    ("name", "field"), [("", "name"), ("   ", "name"), ("x" * 101, "name"), (None, "name"), (7, "name")]
)
def test_board_names_must_be_given_and_short(team, name, field):
    with pytest.raises(InvalidInput) as exc:
        services.do_create_board(team["bob"], team["project"], name)
    assert field in exc.value.errors
    assert not Board.objects.exists()


def test_board_names_are_unique_per_project_whatever_the_case(team, board, elsewhere):
    with pytest.raises(InvalidInput, match="already a board"):
        services.do_create_board(team["alice"], team["project"], "shortlist")
    # Another project may use the name.
    services.do_create_board(team["charlie"], elsewhere.project, "Shortlist")


def test_images_of_another_project_cannot_go_on_a_board(team, board, elsewhere):
    for raw in (elsewhere, str(elsewhere.id), "not-a-uuid", "", None):
        with pytest.raises(InvalidInput) as exc:
            services.do_add_to_board(team["bob"], board, raw)
        assert "asset" in exc.value.errors
    assert not BoardItem.objects.exists()


def test_viewers_change_no_boards_or_tags_and_only_leads_delete_boards(team, images, board):
    vera, bob = team["vera"], team["bob"]
    with pytest.raises(NotAllowed):
        services.do_create_board(vera, team["project"], "Mine")
    with pytest.raises(NotAllowed):
        services.do_add_to_board(vera, board, images[0])
    with pytest.raises(NotAllowed):
        services.do_tag(vera, images[0], "hero")
    with pytest.raises(NotAllowed):
        services.do_delete_board(bob, board)
    services.do_delete_board(team["alice"], board)
    assert not Board.objects.exists()
    assert images[0].__class__.objects.count() == 4  # the images stay


def test_tags_are_lowercased_and_shared_in_the_project(team, images):
    services.do_tag(team["bob"], images[0], "  Hero   Shot ")
    services.do_tag(team["alice"], images[1], "hero shot")
    services.do_tag(team["alice"], images[1], "HERO SHOT")  # twice is harmless
    assert list(Tag.objects.values_list("name", flat=True)) == ["hero shot"]
    assert AssetTag.objects.count() == 2
    assert services.do_untag(team["bob"], images[0], "Hero Shot") is True
    assert list(images[0].tags.all()) == []
    with pytest.raises(InvalidInput):
        services.do_tag(team["bob"], images[0], "")
    with pytest.raises(InvalidInput):
        services.do_tag(team["bob"], images[0], "t" * 51)


def test_favourites_are_personal(team, images):
    services.do_favourite(team["vera"], images[0])
    services.do_favourite(team["vera"], images[0])
    services.do_favourite(team["bob"], images[1])
    assert list(Favourite.objects.filter(user=team["vera"]).values_list("asset", flat=True)) == [images[0].id]
    assert services.do_unfavourite(team["bob"], images[0]) is False  # Vera's star is not Bob's to take
    assert Favourite.objects.filter(user=team["vera"]).exists()
    with pytest.raises(NotAllowed):
        services.do_favourite(team["charlie"], images[0])


# --- pages --


def test_the_boards_page_and_a_board_page(client, team, images, board, django_assert_max_num_queries):
    for image in images:
        services.do_add_to_board(team["bob"], board, image)
    services.do_favourite(team["vera"], images[2])
    client.force_login(team["vera"])
    with django_assert_max_num_queries(8):
        page = client.get("/p/poster/boards/")
    assert page.status_code == 200
    text = page.content.decode()
    assert "Shortlist" in text and 'id="board-create"' not in text  # viewers create none
    with django_assert_max_num_queries(9):
        page = client.get(f"/boards/{board.id}/")
    text = page.content.decode()
    assert all(f'data-asset-id="{i.id}"' in text for i in images)
    assert text.count('class="star on"') == 1 and "Remove from board" not in text
    assert 'id="delete-board"' not in text

    # More images cost no more queries.
    more = [factories.asset(team["project"], team["bob"]) for _ in range(6)]
    for image in more:
        services.do_add_to_board(team["bob"], board, image)
        services.do_favourite(team["vera"], image)
    with django_assert_max_num_queries(9):
        assert client.get(f"/boards/{board.id}/").status_code == 200
    with django_assert_max_num_queries(8):
        assert client.get("/p/poster/boards/").status_code == 200


def test_a_lead_sees_the_delete_and_remove_buttons(client, team, images, board):
    services.do_add_to_board(team["bob"], board, images[0])
    client.force_login(team["alice"])
    text = client.get(f"/boards/{board.id}/").content.decode()
    assert 'id="delete-board"' in text and "Remove from board" in text
    response = client.post(f"/boards/{board.id}/remove/", {"asset": str(images[0].id)})
    assert response.status_code == 302 and not board.items.exists()
    response = client.post(f"/boards/{board.id}/delete/")
    assert response.status_code == 302 and response["Location"] == "/p/poster/boards/"
    assert not Board.objects.exists()


def test_creating_a_board_from_the_page(client, team):
    client.force_login(team["bob"])
    response = client.post("/p/poster/boards/new/", {"name": "Moods"})
    board = Board.objects.get()
    assert response.status_code == 302 and response["Location"] == f"/boards/{board.id}/"
    response = client.post("/p/poster/boards/new/", {"name": "moods"})
    assert response.status_code == 400 and "already a board" in response.content.decode()
    client.force_login(team["vera"])
    assert client.post("/p/poster/boards/new/", {"name": "Vera's"}).status_code == 403


def test_the_asset_page_adds_to_boards_tags_and_stars(client, team, images, board):
    image = images[0]
    client.force_login(team["bob"])
    text = client.get(f"/assets/{image.id}/").content.decode()
    assert 'id="board-form"' in text and 'id="tag-form"' in text and "fav-form" in text
    assert client.post(f"/assets/{image.id}/boards/", {"board": str(board.id)}).status_code == 302
    assert client.post(f"/assets/{image.id}/boards/", {"new_board": "Fresh"}).status_code == 302
    assert set(image.boards.values_list("name", flat=True)) == {"Shortlist", "Fresh"}
    assert client.post(f"/assets/{image.id}/boards/", {"board": "999"}).status_code == 400
    assert client.post(f"/assets/{image.id}/tags/", {"tag": "Hero"}).status_code == 302
    text = client.get(f"/assets/{image.id}/").content.decode()
    assert 'data-tag="hero"' in text
    assert client.post(f"/assets/{image.id}/tags/remove/", {"tag": "hero"}).status_code == 302
    response = client.post(f"/assets/{image.id}/tags/", {"tag": "x" * 60})
    assert response.status_code == 400 and "too long" in response.content.decode()

    # Vera stars it; she has no board or tag forms.
    client.force_login(team["vera"])
    text = client.get(f"/assets/{image.id}/").content.decode()
    assert 'id="board-form"' not in text and 'id="tag-form"' not in text
    response = client.post(
        f"/assets/{image.id}/favourite/", {"favourite": "1", "next": "/p/poster/gallery/?status=draft"}
    )
    assert response.status_code == 302 and response["Location"] == "/p/poster/gallery/?status=draft"
    assert Favourite.objects.filter(user=team["vera"], asset=image).exists()
    response = client.post(f"/assets/{image.id}/favourite/", {"favourite": "0", "next": "https://evil.test/"})
    assert response["Location"] == f"/assets/{image.id}/"
    assert not Favourite.objects.exists()
    assert client.post(f"/assets/{image.id}/tags/", {"tag": "mine"}).status_code == 403


def test_the_gallery_card_shows_the_callers_star_only(client, team, images):
    services.do_favourite(team["vera"], images[0])
    client.force_login(team["bob"])
    assert 'class="star on"' not in client.get("/p/poster/gallery/").content.decode()
    client.force_login(team["vera"])
    assert client.get("/p/poster/gallery/").content.decode().count('class="star on"') == 1


def test_the_gallery_offers_compare_on_the_selection(client, team, images):
    client.force_login(team["bob"])
    text = client.get("/p/poster/gallery/").content.decode()
    assert 'id="compare-selected"' in text and "gallery/compare.js" in text


# --- compare --


def test_compare_highlights_the_parameters_that_differ(client, team, images, django_assert_max_num_queries):
    a, b = images[0], images[1]
    a.params = {"prompt": a.prompt, "seed": 1, "steps": 20, "scheduler": "Euler"}
    b.params = {"prompt": b.prompt, "seed": 1, "steps": 30, "scheduler": "Euler"}
    a.save()
    b.save()
    client.force_login(team["vera"])
    with django_assert_max_num_queries(7):
        response = client.get(f"/p/poster/compare/?ids={a.id},{b.id}")
    assert response.status_code == 200
    text = response.content.decode()
    assert '<tr data-param="steps" class="differs">' in text
    assert '<tr data-param="prompt" class="differs">' in text
    assert '<tr data-param="scheduler">' in text and '<tr data-param="seed">' in text
    with django_assert_max_num_queries(7):
        assert client.get(f"/p/poster/compare/?ids={','.join(str(i.id) for i in images)}").status_code == 200


def test_compare_rows_put_values_side_by_side(team, images):
    rows = {r["key"]: r for r in compare_rows(images[:2])}
    assert rows["prompt"]["values"] == ["image 0", "image 1"] and rows["prompt"]["differs"]
    assert rows["seed"]["values"] == ["1", "1"] and not rows["seed"]["differs"]


@pytest.mark.parametrize("count", [0, 1, 5])
def test_compare_needs_two_to_four_images(client, team, count):
    images = [factories.asset(team["project"], team["bob"]) for _ in range(count)]
    client.force_login(team["bob"])
    response = client.get(f"/p/poster/compare/?ids={','.join(str(i.id) for i in images)}")
    assert response.status_code == 400
    assert "Select 2 to 4 images" in response.content.decode()


@pytest.mark.parametrize("bad", ["elsewhere", "nonsense"])
def test_compare_refuses_images_of_another_project(client, team, images, elsewhere, bad):
    other = str(elsewhere.id) if bad == "elsewhere" else "nonsense"
    client.force_login(team["alice"])
    response = client.get(f"/p/poster/compare/?ids={images[0].id},{other}")
    assert response.status_code == 400
    assert 'id="compare-error"' in response.content.decode()


def test_compare_is_invisible_to_outsiders(client, team, images):
    client.force_login(team["charlie"])
    assert client.get(f"/p/poster/compare/?ids={images[0].id},{images[1].id}").status_code == 404


# --- remix --


def test_remix_drops_the_seed_and_reproduce_keeps_it(client, team, demo_model_dir):
    image = factories.asset(team["project"], team["bob"])
    image.params = {"prompt": "a red circle", "seed": 1234, "steps": 12, "num_images": 1}
    image.save()
    client.force_login(team["bob"])
    page = client.get(f"/assets/{image.id}/").content.decode()
    assert f"?from={image.id}&amp;remix=1" in page and 'id="remix"' in page
    reproduce = client.get(f"/p/poster/?from={image.id}").context["initial_json"]
    remix = client.get(f"/p/poster/?from={image.id}&remix=1").context["initial_json"]
    assert json.loads(reproduce)["seed"] == 1234
    assert "seed" not in json.loads(remix)
    assert json.loads(remix)["prompt"] == "a red circle" and json.loads(remix)["steps"] == 12


# --- API --


def test_the_api_for_boards(client, team, images, elsewhere):
    client.force_login(team["bob"])
    response = send(client, "post", "/api/v1/projects/poster/boards", {"name": "Keepers"})
    assert response.status_code == 201
    board_id = response.json()["id"]
    assert response.json()["items"] == 0
    response = send(client, "post", f"/api/v1/boards/{board_id}/items", {"asset": str(images[0].id)})
    assert response.status_code == 200 and response.json()["items"] == 1
    response = send(client, "post", f"/api/v1/boards/{board_id}/items", {"asset": str(elsewhere.id)})
    assert response.status_code == 400 and response.json()["errors"]["asset"]
    listing = client.get("/api/v1/projects/poster/boards").json()
    assert [(b["name"], b["items"]) for b in listing] == [("Keepers", 1)]
    detail = client.get(f"/api/v1/boards/{board_id}").json()
    assert [a["id"] for a in detail["assets"]] == [str(images[0].id)]
    response = send(client, "delete", f"/api/v1/boards/{board_id}/items", {"asset": str(images[0].id)})
    assert response.json()["items"] == 0
    assert client.delete(f"/api/v1/boards/{board_id}").status_code == 403  # artists keep boards
    client.force_login(team["alice"])
    assert client.delete(f"/api/v1/boards/{board_id}").status_code == 204
    client.force_login(team["charlie"])
    assert client.get(f"/api/v1/boards/{board_id}").status_code == 404


def test_the_api_for_tags_and_favourites(client, team, images):
    image = images[0]
    client.force_login(team["bob"])
    response = send(client, "post", f"/api/v1/assets/{image.id}/tags", {"tag": "Night"})
    assert response.status_code == 200 and response.json() == {"tags": ["night"]}
    response = send(client, "post", f"/api/v1/assets/{image.id}/tags", {"tag": ""})
    assert response.status_code == 400 and response.json()["errors"]["tag"]
    assert send(client, "post", f"/api/v1/assets/{image.id}/favourite").json() == {"favourite": True}
    detail = client.get(f"/api/v1/assets/{image.id}").json()
    assert detail["tags"] == ["night"] and detail["favourite"] is True

    client.force_login(team["vera"])
    assert client.get(f"/api/v1/assets/{image.id}").json()["favourite"] is False
    assert send(client, "post", f"/api/v1/assets/{image.id}/tags", {"tag": "x"}).status_code == 403
    assert send(client, "post", f"/api/v1/assets/{image.id}/favourite").status_code == 200
    assert send(client, "delete", f"/api/v1/assets/{image.id}/favourite").json() == {"favourite": False}
    client.force_login(team["bob"])
    assert send(client, "delete", f"/api/v1/assets/{image.id}/tags", {"tag": "NIGHT"}).json() == {"tags": []}
    assert client.get(f"/api/v1/assets/{image.id}").json()["favourite"] is True  # Bob's star stands


def test_the_openapi_schema_describes_boards_tags_and_favourites(client, team):
    client.force_login(team["bob"])
    paths = client.get("/api/v1/openapi.json").json()["paths"]
    assert set(paths["/projects/{slug}/boards"]) == {"get", "post"}
    assert set(paths["/boards/{id}"]) == {"get", "delete"}
    assert set(paths["/boards/{id}/items"]) == {"post", "delete"}
    assert set(paths["/assets/{id}/tags"]) == {"post", "delete"}
    assert set(paths["/assets/{id}/favourite"]) == {"post", "delete"}


def test_the_gallery_filters_by_board_tag_and_favourites(client, team, images, board):
    """The links the board page and tag chips make, through gallery/queries.py's hooks."""
    services.do_add_to_board(team["bob"], board, images[0])
    services.do_tag(team["bob"], images[1], "night")
    services.do_favourite(team["vera"], images[2])
    client.force_login(team["vera"])
    cases = ((f"board={board.id}", images[0]), ("tag=night", images[1]), ("favourites=1", images[2]))
    for query, expected in cases:
        text = client.get(f"/p/poster/gallery/?{query}").content.decode()
        shown = [i for i in images if f'data-asset-id="{i.id}"' in text]
        assert shown == [expected], query


def test_the_tag_filter_ignores_letter_case(client, team):
    asset = factories.asset(team["project"], team["bob"])
    services.do_tag(team["bob"], asset, "Night")
    client.force_login(team["vera"])
    found = client.get("/api/v1/projects/poster/assets?tag=NIGHT").json()["results"]
    assert [a["id"] for a in found] == [str(asset.id)]


def test_the_filter_bar_offers_boards_tags_and_favourites(client, team):
    board = services.do_create_board(team["bob"], team["project"], "Keepers")
    client.force_login(team["bob"])
    page = client.get(f"/p/poster/gallery/?board={board.id}&tag=night&favourites=1").content.decode()
    assert f'<option value="{board.id}" selected>Keepers</option>' in page
    assert 'id="f-tag" name="tag" value="night"' in page
    assert 'name="favourites" value="1" checked' in page
