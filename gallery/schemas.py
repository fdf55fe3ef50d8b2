"""The declared types of the gallery's API: assets, reviews, comments, boards, tags, favourites,
notifications, and the queries that filter and export them (the gallery page reads ``AssetQuery`` too)."""

from __future__ import annotations

import uuid
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from studio.fields import Day, Moment, Text
from studio.pagination import UUID_CURSOR

from .models import BOARD_NAME_MAX, TAG_NAME_MAX

COMMENT_MAX = 5000
SEARCH_MAX = 200

AssetStatusName = Literal["draft", "submitted", "approved", "rejected", "changes_requested"]
AssetKindName = Literal["generated", "upload"]
DecisionName = Literal["approve", "reject", "changes_requested"]
Order = Literal["newest", "oldest"]
Cursor = Annotated[
    str, Field(pattern=UUID_CURSOR, description="The `next` of the previous page, as it came.")
]


class AssetOut(BaseModel):
    id: uuid.UUID
    project: str
    job: uuid.UUID | None
    image_url: str
    thumbnail_url: str
    page_url: str
    width: int
    height: int
    seed: int
    prompt: str
    negative_prompt: str
    params: dict = Field(description="The job's parameters as used (see Job.params).")
    model: str
    model_name: str
    model_sha256: str
    status: AssetStatusName
    created_by: str
    created_at: Moment
    kind: AssetKindName
    parent: uuid.UUID | None
    mask_url: str | None


class AssetDetailOut(AssetOut):
    tags: list[str]
    favourite: bool


class AssetPage(BaseModel):
    results: list[AssetOut]
    next: str | None


class AssetQuery(BaseModel):
    """Filters of a project's images (the gallery page and ``GET /projects/{slug}/assets``)."""

    model_config = ConfigDict(extra="ignore")
    status: AssetStatusName | None = None
    author: Annotated[str, Field(max_length=150, pattern=r"^[\w.@+-]+$")] | None = Field(
        None, description="A member's username."
    )
    model: Annotated[str, Field(max_length=100, pattern=r"^[\w.\-]+$")] | None = None
    since: Day | None = Field(None, description="From this day on (YYYY-MM-DD, the studio's time zone).")
    until: Day | None = Field(None, description="Up to and including this day.")
    q: Annotated[str, Text(SEARCH_MAX)] | None = Field(
        None, description='Search the prompts: words, "quoted phrases", -not, or.'
    )
    order: Order = "newest"
    favourites: bool = Field(False, description="Only the caller's starred images.")
    board: Annotated[int, Field(ge=1, le=2**62)] | None = None
    tag: Annotated[str, Text(TAG_NAME_MAX)] | None = None
    cursor: Cursor | None = None


class ExportQuery(BaseModel):
    status: AssetStatusName | Literal["all"] | None = Field(
        None, description="Default: approved, or all when ids are given."
    )
    ids: (
        Annotated[
            str,
            Field(
                max_length=37 * 100,
                pattern=r"^[0-9a-fA-F-]{32,36}(,[0-9a-fA-F-]{32,36})*$",
                description="At most 100 asset ids of this project, separated by commas.",
            ),
        ]
        | None
    ) = None


class ReviewIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    decision: DecisionName
    comment: Annotated[str, Text(COMMENT_MAX)] | None = None


class ReviewOut(BaseModel):
    decision: DecisionName
    comment: str
    by: str
    at: Moment


class CommentIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    text: Annotated[str, Text(COMMENT_MAX, required=True)]


class CommentOut(BaseModel):
    id: int
    text: str
    by: str
    at: Moment


class NotificationOut(BaseModel):
    id: int
    kind: str
    text: str
    asset: uuid.UUID | None
    project: str
    created_at: Moment
    read: bool


class NotificationsOut(BaseModel):
    unread: int
    results: list[NotificationOut]


class BoardIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: Annotated[str, Text(BOARD_NAME_MAX, required=True)]


class BoardOut(BaseModel):
    id: int
    project: str
    name: str
    created_by: str
    created_at: Moment
    page_url: str
    items: int


class BoardDetailOut(BoardOut):
    assets: list[AssetOut]


class BoardItemIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    asset: uuid.UUID = Field(description="An image of the board's project.")


class TagIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    tag: Annotated[str, Text(TAG_NAME_MAX, required=True)]


class TagsOut(BaseModel):
    tags: list[str]


class FavouriteOut(BaseModel):
    favourite: bool
