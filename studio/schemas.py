"""The declared types of the team layer's API: the caller, projects, members, quotas, users, the audit log."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field
from pydantic_core import PydanticCustomError

from .audit import ACTIONS
from .audit_log import DATE_HELP, parse_moment
from .fields import Messages, Moment, Text, Username, Whole
from .pagination import INT_CURSOR

PROJECT_NAME_MAX = 120
RoleName = Literal["lead", "artist", "viewer"]


def _known_action(value: str) -> str:
    if value not in ACTIONS:
        raise PydanticCustomError("action", f"Choose one of: {', '.join(ACTIONS)}.")
    return value


ActionName = Annotated[str, Field(json_schema_extra={"enum": ACTIONS}), AfterValidator(_known_action)]
# The most a quota column holds (a 32-bit integer).
QUOTA_HELP = "Enter a whole number of at least 0, or null for unlimited."
QuotaLimit = (
    Annotated[
        int,
        Whole(0, 2**31 - 1),
        Messages(int_type=QUOTA_HELP, greater_than_equal=QUOTA_HELP),
        Field(description="null = unlimited"),
    ]
    | None
)


class ProjectIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: Annotated[str, Text(PROJECT_NAME_MAX, required=True)]


class ProjectOut(BaseModel):
    slug: str
    name: str
    role: RoleName


class DeleteProjectQuery(BaseModel):
    confirm: Annotated[
        str, Field(max_length=PROJECT_NAME_MAX, description="The project's slug or name, typed out.")
    ]


class MeOut(BaseModel):
    username: str
    is_admin: bool
    projects: list[ProjectOut]


class MemberIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    username: Annotated[str, Text(254, required=True)] = Field(
        description="A username, or the email of an account."
    )
    role: RoleName


class RoleIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    role: RoleName


class MemberOut(BaseModel):
    username: str
    role: RoleName
    project: str


class UsedAndLimit(BaseModel):
    used: float
    limit: int | None


class QuotaSummaryOut(BaseModel):
    period_start: Moment
    period_end: Moment
    images: UsedAndLimit
    gpu_seconds: UsedAndLimit


class QuotaIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    images: QuotaLimit = None
    gpu_seconds: QuotaLimit = None


class UserQuotaOut(BaseModel):
    username: str
    images: int | None
    gpu_seconds: int | None


class ProjectQuotaOut(BaseModel):
    project: str
    images: int | None
    gpu_seconds: int | None


class Usage(BaseModel):
    images: int
    gpu_seconds: float


class AdminUserOut(BaseModel):
    username: str
    is_active: bool
    is_admin: bool
    usage: Usage


class UserStateOut(BaseModel):
    username: str
    is_active: bool


DAY_OR_MOMENT = {
    "anyOf": [{"type": "string", "format": "date"}, {"type": "string", "format": "date-time"}],
    "description": "A day (YYYY-MM-DD, the studio's time zone) or an ISO 8601 date and time.",
}


def _day_or_moment(value: str) -> str:
    if parse_moment(value, end=False) is None:
        raise PydanticCustomError("date_parsing", DATE_HELP)
    return value


# A day or a date and time, as the audit filters read them (studio.audit_log).
DayOrMoment = Annotated[
    str, Field(max_length=40, json_schema_extra=DAY_OR_MOMENT), AfterValidator(_day_or_moment)
]


class AuditQuery(BaseModel):
    model_config = ConfigDict(extra="ignore")
    actor: Username | None = None
    action: ActionName | None = None
    project: Annotated[str, Field(max_length=60, pattern=r"^[-a-zA-Z0-9_]+$")] | None = None
    since: DayOrMoment | None = None
    until: DayOrMoment | None = None
    cursor: Annotated[str, Field(pattern=INT_CURSOR)] | None = None


class AuditEventOut(BaseModel):
    time: Moment
    actor: str | None
    action: str
    target: str
    project: str | None
    ip: str | None
    details: dict[str, Any]


class AuditPage(BaseModel):
    results: list[AuditEventOut]
    next: str | None
