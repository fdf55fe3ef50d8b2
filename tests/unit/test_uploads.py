"""Uploaded images: decoded and written again as plain PNGs (no metadata, nothing appended), with size and
pixel limits, a clear error for anything that is not an image, and the project's roles respected."""

from __future__ import annotations

import io

import pytest
from PIL import Image

from gallery.models import Asset
from studio.models import AuditEvent

pytestmark = pytest.mark.django_db

URL = "/api/v1/projects/poster/uploads"
NOT_AN_IMAGE = "That file is not an image we can read (PNG, JPEG or WebP)."


def image_file(fmt="PNG", size=(40, 30), colour=(10, 120, 200), mode="RGB", name=None, **save):
    buffer = io.BytesIO()
    Image.new(mode, size, colour).save(buffer, format=fmt, **save)
    buffer.seek(0)
    buffer.name = name or f"picture.{fmt.lower()}"
    return buffer


def raw_file(data: bytes, name="picture.png"):
    buffer = io.BytesIO(data)
    buffer.name = name
    return buffer


def stored(asset_id: str) -> tuple[bytes, Image.Image]:
    asset = Asset.objects.get(id=asset_id)
    with asset.file.open("rb") as fh:
        data = fh.read()
    image = Image.open(io.BytesIO(data))
    image.load()
    return data, image


@pytest.fixture
def artist(client, team):
    client.force_login(team["bob"])
    return client


def test_an_artist_uploads_a_png_and_gets_an_asset_of_kind_upload(artist, team):
    response = artist.post(URL, {"image": image_file()})
    assert response.status_code == 201, response.content
    data = response.json()
    assert data["kind"] == "upload"
    assert (data["width"], data["height"]) == (40, 30)
    assert data["parent"] is None
    assert data["created_by"] == "bob"
    assert data["project"] == "poster"
    _, image = stored(data["id"])
    assert image.format == "PNG"
    assert image.mode == "RGB"
    assert image.getpixel((5, 5)) == (10, 120, 200)
    # It is an image of the project like the others: in the gallery, with a thumbnail, and downloadable.
    assert data["id"] in artist.get("/p/poster/gallery/").content.decode()
    assert artist.get(data["thumbnail_url"]).status_code == 200
    assert artist.get(data["image_url"]).status_code == 200
    # And the audit trail says who brought it in.
    event = AuditEvent.objects.get(action="asset.upload")
    assert (event.actor_name, event.target, event.project_slug) == ("bob", f"asset:{data['id']}", "poster")
    assert event.details["width"] == 40


def test_a_lead_may_upload_too(client, team):
    client.force_login(team["alice"])
    assert client.post(URL, {"image": image_file()}).status_code == 201


@pytest.mark.parametrize(("who", "status"), [("vera", 403), ("charlie", 404)])
def test_viewers_and_outsiders_may_not(client, team, who, status):
    client.force_login(team[who])
    response = client.post(URL, {"image": image_file()})
    assert response.status_code == status
    assert response.json()["error"]
    assert Asset.objects.count() == 0


def test_anonymous_callers_are_told_to_sign_in(client, team):
    assert client.post(URL, {"image": image_file()}).status_code == 401


def test_exif_is_dropped(artist):
    exif = Image.Exif()
    exif[0x010F] = "SecretCam"  # Make
    exif[0x0131] = "Editor 1.0"  # Software
    upload = image_file("JPEG", exif=exif.tobytes())
    assert b"SecretCam" in upload.getvalue()
    response = artist.post(URL, {"image": upload})
    assert response.status_code == 201
    data, image = stored(response.json()["id"])
    assert b"SecretCam" not in data
    assert "exif" not in image.info
    assert dict(image.getexif()) == {}
    assert response.json()["params"]["format"] == "JPEG"


def test_text_chunks_and_bytes_appended_after_the_image_are_dropped(artist):
    from PIL.PngImagePlugin import PngInfo

    info = PngInfo()
    info.add_text("Comment", "hidden words")
    png = image_file(pnginfo=info).getvalue()
    payload = png + b"PK\x03\x04appended archive payload"
    response = artist.post(URL, {"image": raw_file(payload)})
    assert response.status_code == 201, response.content
    data, image = stored(response.json()["id"])
    assert b"appended archive payload" not in data
    assert b"hidden words" not in data
    assert data.endswith(b"IEND\xaeB`\x82")
    assert getattr(image, "text", {}) == {}


def test_transparency_is_laid_on_white(artist):
    response = artist.post(URL, {"image": image_file(mode="RGBA", colour=(255, 0, 0, 0))})
    _, image = stored(response.json()["id"])
    assert image.mode == "RGB"
    assert image.getpixel((3, 3)) == (255, 255, 255)


def test_webp_is_accepted(artist):
    response = artist.post(URL, {"image": image_file("WEBP", lossless=True)})
    assert response.status_code == 201
    assert response.json()["params"]["format"] == "WEBP"


@pytest.mark.parametrize(
    "payload",
    [
        b"hello, this is plain text",
        b"%PDF-1.4 not an image",
        b"",
        b"\x89PNG\r\n\x1a\n" + b"\x00" * 40,  # a PNG signature and nothing sensible after it
    ],
    ids=["text", "pdf", "empty", "broken-png"],
)
def test_a_file_that_is_not_an_image_is_refused_clearly(artist, payload):
    response = artist.post(URL, {"image": raw_file(payload, "notes.png")})
    assert response.status_code == 400, response.content
    body = response.json()
    assert body["error"] == NOT_AN_IMAGE
    assert body["errors"]["image"] == [NOT_AN_IMAGE]
    assert Asset.objects.count() == 0


def test_a_truncated_image_is_refused(artist):
    data = image_file("JPEG", size=(200, 200), colour=(1, 2, 3)).getvalue()
    response = artist.post(URL, {"image": raw_file(data[: len(data) // 2], "cut.jpg")})
    assert response.status_code == 400
    assert response.json()["error"] == NOT_AN_IMAGE


def test_a_gif_is_not_among_the_accepted_formats(artist):
    response = artist.post(URL, {"image": image_file("GIF", mode="P", colour=1)})
    assert response.status_code == 400
    assert response.json()["error"] == NOT_AN_IMAGE


def test_too_many_pixels_is_refused_before_decoding(artist, settings):
    settings.STUDIO_UPLOAD_MAX_PIXELS = 1000
    response = artist.post(URL, {"image": image_file(size=(50, 50))})
    assert response.status_code == 400
    body = response.json()
    assert "too large" in body["error"]
    assert "50 × 50" in body["error"]
    assert "image" in body["errors"]


def test_too_many_bytes_is_refused(artist, settings):
    settings.STUDIO_UPLOAD_MAX_BYTES = 1024 * 1024
    big = image_file(size=(1200, 1200), compress_level=0)
    assert len(big.getvalue()) > 1024 * 1024
    response = artist.post(URL, {"image": big})
    assert response.status_code == 400
    assert "too large" in response.json()["error"]
    assert "1 MB" in response.json()["error"]


def test_a_request_without_a_file_names_the_field(artist):
    response = artist.post(URL, {"picture": image_file()})
    assert response.status_code == 400
    assert response.json()["errors"]["image"] == ["This field is required."]


def test_uploads_count_against_no_quota(artist, team):
    from studio import quotas

    before = quotas.summary(team["bob"])
    assert artist.post(URL, {"image": image_file()}).status_code == 201
    assert quotas.summary(team["bob"]) == before


def test_an_upload_shows_as_such_on_its_page(artist):
    data = artist.post(URL, {"image": image_file(name="moodboard.png")}).json()
    page = artist.get(data["page_url"]).content.decode()
    assert "Uploaded image (moodboard.png)" in page
    assert 'id="inpaint"' in page  # an artist may start from it
    # No generation parameters it never had: no seed, steps or model rows.
    assert ">Seed<" not in page and ">Model sha256<" not in page and ">Steps<" not in page


def test_an_upload_card_in_the_gallery_names_the_file_not_a_seed(artist, team):
    artist.post(URL, {"image": image_file(name="moodboard.png")})
    page = artist.get("/p/poster/gallery/").content.decode()
    card = page[page.index('class="asset-card"') :]
    assert "Uploaded · moodboard.png" in card
    assert "seed 0" not in card
