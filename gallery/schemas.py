"""The declared types of the gallery's API: assets, reviews, comments, boards, tags, favourites,
notifications, and the queries that filter and export them (the gallery page reads ``AssetQuery`` too)."""

from __future__ import annotations

import uuid
from typing import Annotated, Any, Literal

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
    control_map_urls: list[str] = Field(
        [],
        description="The control maps its ControlNet units steered with, in the order of params.controlnets.",
    )
    credentials: Literal["signed", "unsigned", "none"] = Field(
        description="Whether the PNG carries the studio's Content Credentials (unsigned: signing failed)."
    )
    sha256: str = Field(description="The stored PNG's sha256 (empty for images made before it was recorded).")


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
    # ASCII spelled out: a model id is ASCII, and JSON Schema's \w (ECMA 262) is ASCII where Python's is not.
    model: Annotated[str, Field(max_length=100, pattern=r"^[A-Za-z0-9_.\-]+$")] | None = None
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


# --- Content Credentials --


class AssetRefOut(BaseModel):
    id: uuid.UUID
    project: str
    project_name: str
    status: AssetStatusName
    page_url: str


class CredentialStepOut(BaseModel):
    """One manifest of an image's chain of edits, newest first."""

    title: str
    generator: str
    actions: list[str]
    source_type: str | None
    signed_by: str
    author: str | None
    project: str | None
    model: dict[str, Any] | None = Field(description="The model's id, name and sha256.")
    parameters: dict[str, Any] | None
    review: dict[str, Any] | None = Field(description="Who approved and when, for an exported file.")
    review_summary: str | None
    asset: AssetRefOut | None = Field(
        description="The visible asset this manifest belongs to (trusted only)."
    )


class VerifyOut(BaseModel):
    credentials: bool = Field(description="Whether the file carries Content Credentials.")
    state: Literal["trusted", "valid", "invalid", "none"]
    valid: bool
    trusted: bool
    summary: str
    problems: list[str]
    sha256: str
    made_by: CredentialStepOut | None
    chain: list[CredentialStepOut]
    match: AssetRefOut | None = Field(description="An image of a project the caller sees with this sha256.")
    made_from: AssetRefOut | None = Field(description="Without a match: a visible image this was made from.")
