"""Writes in the team layer. Check first, then write; nothing else saves these models."""

from __future__ import annotations

import secrets
from datetime import datetime, timedelta
from typing import Any

from allauth.mfa.models import Authenticator
from django.contrib.auth import get_user_model, password_validation
from django.contrib.auth.forms import SetPasswordForm
from django.contrib.auth.validators import UnicodeUsernameValidator
from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.db import IntegrityError, transaction
from django.utils import timezone
from django.utils.text import slugify

from . import audit, permissions, signals, sockets, storage, user_sessions
from .auth import digest_token, new_token
from .boundary import validate
from .errors import Conflict, InvalidInput, NotAllowed, NotFound
from .fields import SLUG_MAX
from .models import ApiToken, Membership, Project, QuotaUsage, Role, TokenScope
from .schemas import MemberIn, ProjectIn, RoleIn

User = get_user_model()


def check_project_name(name: Any) -> str:
    """A project name as the API's type takes it (trimmed, required, at most 120 characters)."""
    return str(validate(ProjectIn, {"name": name}).name)


def _free_slug(name: str) -> str:
    """The name as a slug no project has, within the length the API's URLs take (a long name's second
    project is ``<shortened name>-2``, never longer than the first)."""
    base = slugify(name)[:SLUG_MAX] or "project"
    slug, n = base, 2
    while Project.objects.filter(slug=slug).exists():
        suffix = f"-{n}"
        slug, n = f"{base[: SLUG_MAX - len(suffix)].rstrip('-_')}{suffix}", n + 1
    return slug


def do_create_project(user: Any, name: Any, *, ip: str | None = None) -> Project:
    """Create a project with ``user`` as its first lead."""
    if not permissions.can_create_project(user):
        raise NotAllowed("You may not create projects.")
    name = check_project_name(name)
    for _ in range(5):
        try:
            with transaction.atomic():
                project = Project.objects.create(slug=_free_slug(name), name=name, created_by=user)
                Membership.objects.create(project=project, user=user, role=Role.LEAD)
                audit.record(
                    user, audit.PROJECT_CREATE, target=f"project:{project.slug}", project=project, ip=ip
                )
                return project
        except IntegrityError:
            continue  # a concurrent create took the slug; pick the next one
    raise InvalidInput("Could not find a free address for this project name; try another name.")


def check_delete_project(actor: Any, project: Project, confirm: Any) -> None:
    """NotAllowed (403) unless the actor leads the project (or is a site admin); InvalidInput (400) unless
    ``confirm`` is the project's name or slug, typed out."""
    if not permissions.can_delete_project(actor, project):
        raise NotAllowed("Only the project's leads and site admins may delete it.")
    if not isinstance(confirm, str) or confirm.strip() not in (project.name, project.slug):
        message = f"Type the project's name, {project.name}, to confirm."
        raise InvalidInput(message, {"confirm": [message]})


def project_contents(project: Project) -> dict[str, int]:
    """What deleting the project would take with it, by kind (for the page that asks to confirm)."""
    return {
        key: value
        for removal in signals.removals(project, dry_run=True)
        for key, value in removal.counts.items()
    }


def do_delete_project(actor: Any, project: Project, confirm: Any, *, ip: str | None = None) -> None:
    """Delete the project and everything in it (``check_delete_project`` first).

    Its jobs, images, thumbnails, masks, boards, tags, comments, reviews, notifications, quotas and
    memberships go in one transaction; once it commits their files leave storage and the project's open
    sockets close. One audit event records it, with how much went; the project's earlier audit events stay
    (they hold names and ids, never prompts)."""
    check_delete_project(actor, project, confirm)
    with transaction.atomic():
        if not list(Project.objects.select_for_update().filter(pk=project.pk).values_list("pk", flat=True)):
            raise NotFound("No such project.")  # deleted by someone else meanwhile
        removals = signals.removals(project)
        counts = {key: value for removal in removals for key, value in removal.counts.items()}
        names = [name for removal in removals for name in removal.storage_names]
        # Recorded while the project still exists, so the event carries it until the delete clears the link.
        audit.record(
            actor,
            audit.PROJECT_DELETE,
            target=f"project:{project.slug}",
            project=project,
            ip=ip,
            details=counts,
        )
        QuotaUsage.objects.filter(subject="project", subject_id=project.pk).delete()
        slug = project.slug
        project.delete()
        transaction.on_commit(lambda: storage.delete_stored(names))
        transaction.on_commit(lambda: sockets.recheck_access(slug))


def do_add_member(
    actor: Any, project: Project, username: Any, role: Any, *, ip: str | None = None
) -> Membership:
    """Add a user to the project, or change their role if they are already in it."""
    if not permissions.can_manage_members(actor, project):
        raise NotAllowed("Only the project's leads may add members.")
    wanted = validate(MemberIn, {"username": username, "role": role})  # the page and the API agree
    lookup, role = wanted.username, wanted.role
    user = User.objects.filter(is_active=True, username=lookup).first() or (
        User.objects.filter(is_active=True, email__iexact=lookup).first() if "@" in lookup else None
    )
    if user is None:
        raise InvalidInput("No active user has that name.", {"username": ["No active user has that name."]})
    with transaction.atomic():
        membership, created = Membership.objects.get_or_create(
            project=project, user=user, defaults={"role": role}
        )
        target = f"user:{user.get_username()}"
        if created:
            audit.record(
                actor, audit.MEMBER_ADD, target=target, project=project, ip=ip, details={"role": role}
            )
        elif membership.role != role:
            # The same locked path as do_change_role, so this cannot demote a project's last lead either.
            membership = _lock_membership(
                actor, project, user.get_username(), "Only the project's leads may add members."
            )
            _set_role(actor, project, membership, role, ip=ip)
    return membership


RETENTION_MAX_DAYS = 3650


def check_retention(actor: Any, project: Project, days: Any) -> int | None:
    """Authorize (403) and clean (400) a retention setting: whole days 1..RETENTION_MAX_DAYS, or empty or
    None to keep images until someone deletes them."""
    if not permissions.can_set_retention(actor, project):
        raise NotAllowed("Only the project's leads and site admins may change how long images are kept.")
    if days is None or (isinstance(days, str) and not days.strip()):
        return None
    message = f"Give a whole number of days from 1 to {RETENTION_MAX_DAYS}, or leave it empty to keep images."
    try:
        value = int(str(days).strip())
    except ValueError:
        raise InvalidInput("The retention is not a number of days.", {"retention_days": [message]}) from None
    if isinstance(days, bool) or not 1 <= value <= RETENTION_MAX_DAYS:
        raise InvalidInput("The retention is out of range.", {"retention_days": [message]})
    return value


def do_set_retention(actor: Any, project: Project, days: Any, *, ip: str | None = None) -> Project:
    """Set after how many days the project's drafts and rejected images are deleted (None: never); the
    purge itself is the gallery's daily task."""
    value = check_retention(actor, project, days)
    with transaction.atomic():
        before = project.retention_days
        Project.objects.filter(pk=project.pk).update(retention_days=value)
        project.retention_days = value
        audit.record(
            actor,
            audit.RETENTION_CHANGE,
            target=f"project:{project.slug}",
            project=project,
            ip=ip,
            details={"from": before, "to": value},
        )
    return project


TOKEN_MAX_DAYS = 3650


def check_token_scope(user: Any, scope: Any) -> str:
    """The scope asked for, or the default: ``generate``, or ``admin`` for a site admin (what scripts had
    before tokens had scopes). Only site admins may hold ``admin`` tokens."""
    if scope in (None, ""):
        return TokenScope.ADMIN if permissions.is_admin(user) else TokenScope.GENERATE
    if scope not in TokenScope.values:
        raise InvalidInput(
            "Unknown token scope.", {"scope": [f"Choose one of {', '.join(TokenScope.values)}."]}
        )
    if scope == TokenScope.ADMIN and not permissions.is_admin(user):
        raise InvalidInput(
            "Only site admins can create admin tokens.", {"scope": ["Choose read or generate."]}
        )
    return scope


def check_token_expiry(days: Any) -> datetime | None:
    """When a token made now with ``days`` of life expires; None (never) for an empty value."""
    if days in (None, ""):
        return None
    try:
        number = int(days)
    except (TypeError, ValueError):
        number = 0
    if isinstance(days, bool) or not 1 <= number <= TOKEN_MAX_DAYS:
        raise InvalidInput(
            "The expiry is invalid.", {"expires_in_days": [f"A whole number of days, 1 to {TOKEN_MAX_DAYS}."]}
        )
    return timezone.now() + timedelta(days=number)


def check_token_project(user: Any, slug: Any) -> Project | None:
    """The token's default project: one the user can see, or None for an empty value."""
    if slug in (None, ""):
        return None
    project = permissions.projects_visible_to(user).filter(slug=str(slug)).first()
    if project is None:
        raise InvalidInput("No such project.", {"default_project": ["Choose one of your projects, or none."]})
    return project


def do_create_token(
    user: Any,
    name: str = "",
    *,
    scope: Any = None,
    expires_in_days: Any = None,
    default_project: Any = None,
    ip: str | None = None,
) -> tuple[ApiToken, str]:
    """Create an API token; the plain token is returned once and never stored.

    ``scope``, ``expires_in_days`` and ``default_project`` (a slug) are checked here (InvalidInput naming
    the field); the scope defaults to ``generate``, or ``admin`` for a site admin."""
    scope = check_token_scope(user, scope)
    expires_at = check_token_expiry(expires_in_days)
    project = check_token_project(user, default_project)
    token = new_token()
    row = ApiToken.objects.create(
        user=user,
        name=name[:100],
        prefix=token[:12],
        digest=digest_token(token),
        scope=scope,
        expires_at=expires_at,
        default_project=project,
    )
    audit.record(
        user,
        audit.TOKEN_CREATE,
        target=f"token:{row.prefix}",
        project=project,
        ip=ip,
        details={
            "name": row.name,
            "scope": scope,
            "expires_at": expires_at.isoformat() if expires_at else None,
        },
    )
    return row, token


def do_revoke_token(user: Any, token_id: int, *, ip: str | None = None) -> None:
    row = ApiToken.objects.filter(pk=token_id, user=user, revoked_at__isnull=True).first()
    if row is None or not ApiToken.objects.filter(pk=row.pk, revoked_at__isnull=True).update(
        revoked_at=timezone.now()
    ):
        raise NotFound("No such token.")
    audit.record(user, audit.TOKEN_REVOKE, target=f"token:{row.prefix}", ip=ip)


def end_sessions(user: Any, *, keep: str | None = None) -> int:
    """End every browser session of ``user`` except the one keyed ``keep``; returns how many ended.

    The one place sessions are ended for a user (deactivation, a password change): their recorded session
    keys are deleted through the session engine, and once the transaction commits their open websockets
    close, but those of the session ``keep`` (``sockets.end_user_sockets``). API tokens are not affected.
    """
    ended = user_sessions.delete_sessions(user, keep=keep)
    user_id = user.pk
    transaction.on_commit(lambda: sockets.end_user_sockets(user_id, keep_session_key=keep))
    return ended


def do_ensure_admin(username: str, password: str | None) -> tuple[Any, bool, str | None]:
    """Create the first site admin if no admin exists.

    Returns (the admin, whether it was created now, the generated password — None when one was given)."""
    existing = User.objects.filter(is_superuser=True).first()
    if existing is not None:
        return existing, False, None
    generated = None
    if not password:
        generated = password = secrets.token_urlsafe(12)
    user = User.objects.create_superuser(username=username, email="", password=password)
    return user, True, generated


def check_token_name(name: Any) -> str:
    """A token's name is required, so that its owner can tell tokens apart when revoking one."""
    if not isinstance(name, str) or not name.strip():
        raise InvalidInput(
            "Give the token a name.", {"name": ["Enter a name, for example the script that will use it."]}
        )
    name = name.strip()
    if len(name) > 100:
        raise InvalidInput("The token name is too long.", {"name": ["At most 100 characters."]})
    return name


def do_change_password(
    user: Any,
    form_or_password: SetPasswordForm | str,
    *,
    ip: str | None = None,
    keep_session_key: str | None = None,
) -> None:
    """Set the user's password and record it.

    Takes a bound ``PasswordChangeForm``/``SetPasswordForm`` for ``user`` (its checks, the old password
    included, must pass) or the new password as a string, checked against AUTH_PASSWORD_VALIDATORS here.
    Every session of the user but ``keep_session_key`` (the one that changed the password, its key as the
    request had it) ends, and so do their open websockets (``end_sessions``); the view that keeps its own
    session calls ``update_session_auth_hash`` afterwards. API tokens are not affected.
    """
    if isinstance(form_or_password, str):
        password = form_or_password
        try:
            password_validation.validate_password(password, user)
        except ValidationError as exc:
            raise InvalidInput("Choose another password.", {"new_password1": list(exc.messages)}) from exc
    else:
        form = form_or_password
        if form.user.pk != user.pk:
            raise NotAllowed("That form changes another user's password.")
        if not form.is_valid():
            errors = {field: [str(e) for e in errs] for field, errs in form.errors.items()}
            raise InvalidInput("The password was not changed.", errors)
        password = form.cleaned_data["new_password1"]
    with transaction.atomic():
        user.set_password(password)
        user.save(update_fields=["password"])
        ended = end_sessions(user, keep=keep_session_key)
        audit.record(
            user,
            audit.PASSWORD_CHANGE,
            target=f"user:{user.get_username()}",
            ip=ip,
            details={"sessions_ended": ended},
        )
    password_validation.password_changed(password, user)


LAST_LEAD = "A project needs at least one lead."


def _lock_membership(actor: Any, project: Project, username: Any, refusal: str) -> Membership:
    """The member's row for a role change or removal, locked, with the project's lead rows locked first.

    Every change that may take a lead away locks the same rows in the same order (leads by id, then the
    target), so two of them in one project queue up instead of deadlocking, and the second one counts the
    leads the first one left. Call inside ``transaction.atomic()``.
    """
    list(
        Membership.objects.select_for_update(of=("self",))
        .filter(project=project, role=Role.LEAD)
        .order_by("pk")
    )
    # Asked again under the lock: a lead demoted by a change that committed meanwhile no longer may act.
    if not permissions.can_manage_members(actor, project):
        raise NotAllowed(refusal)
    membership = None
    if isinstance(username, str) and username:
        membership = (
            Membership.objects.select_for_update(of=("self",))
            .select_related("user")
            .filter(project=project, user__username=username)
            .first()
        )
    if membership is None:
        raise NotFound(
            f"“{username}” is not a member of this project.", {"username": ["Not a member of this project."]}
        )
    return membership


def _check_keeps_a_lead(project: Project, membership: Membership) -> None:
    """Refuse to take the lead role from ``membership`` when no other lead who can sign in would remain.

    Deactivated leads do not count: a project whose only leads cannot sign in has nobody to run it.
    The lead rows must already be locked (``_lock_membership``).
    """
    if membership.role != Role.LEAD:
        return
    others = Membership.objects.filter(project=project, role=Role.LEAD, user__is_active=True).exclude(
        pk=membership.pk
    )
    if not others.exists():
        raise Conflict(LAST_LEAD)


def _recheck_sockets_on_commit(project: Project, user_id: Any) -> None:
    """The member's open sockets of the project ask again what they may see, once the change is committed:
    a removed member's close at once, a changed role's learn it."""
    slug = project.slug
    transaction.on_commit(lambda: sockets.recheck_access(slug, user_id))


def _set_role(actor: Any, project: Project, membership: Membership, role: str, *, ip: str | None) -> None:
    """Write a role change found valid and permitted; the caller holds the locks (``_lock_membership``)."""
    if membership.role == role:
        return
    if role != Role.LEAD:
        _check_keeps_a_lead(project, membership)
    details = {"from": membership.role, "to": role}
    membership.role = role
    membership.save(update_fields=["role"])
    _recheck_sockets_on_commit(project, membership.user_id)
    audit.record(
        actor,
        audit.MEMBER_ROLE,
        target=f"user:{membership.user.get_username()}",
        project=project,
        ip=ip,
        details=details,
    )


def do_change_role(
    actor: Any, project: Project, username: Any, role: Any, *, ip: str | None = None
) -> Membership:
    """Give a member another role. 403 for non-leads, 400 for an unknown role, 404 for a non-member, 409 when
    it would leave the project without a lead."""
    refusal = "Only the project's leads may change roles."
    if not permissions.can_manage_members(actor, project):
        raise NotAllowed(refusal)
    role = validate(RoleIn, {"role": role}).role
    with transaction.atomic():
        membership = _lock_membership(actor, project, username, refusal)
        _set_role(actor, project, membership, role, ip=ip)
    return membership


def do_remove_member(actor: Any, project: Project, username: Any, *, ip: str | None = None) -> None:
    """Take a member out of the project. 403 for non-leads, 404 for a non-member, 409 for the last lead."""
    refusal = "Only the project's leads may remove members."
    if not permissions.can_manage_members(actor, project):
        raise NotAllowed(refusal)
    with transaction.atomic():
        membership = _lock_membership(actor, project, username, refusal)
        _check_keeps_a_lead(project, membership)
        role = membership.role
        membership.delete()
        _recheck_sockets_on_commit(project, membership.user_id)
        audit.record(
            actor,
            audit.MEMBER_REMOVE,
            target=f"user:{membership.user.get_username()}",
            project=project,
            ip=ip,
            details={"role": role},
        )


# --- users: the site admin area --

USERNAME_HELP = "Letters, digits and @ . + - _ only, at most 150 characters."


def check_new_user(username: Any, email: Any, password: Any, is_admin: Any) -> tuple[str, str, str, bool]:
    """Validate a new account; raises InvalidInput listing every bad field."""
    errors: dict[str, list[str]] = {}
    username = username.strip() if isinstance(username, str) else ""
    if not username:
        errors["username"] = ["Enter a username."]
    else:
        try:
            UnicodeUsernameValidator()(username)
            if len(username) > 150:
                raise ValidationError(USERNAME_HELP)
        except ValidationError:
            errors["username"] = [USERNAME_HELP]
        else:
            # Case-insensitively: "Bob" and "bob" would be two accounts nobody can tell apart.
            if User.objects.filter(username__iexact=username).exists():
                errors["username"] = ["That username is taken."]
    email = email.strip() if isinstance(email, str) else ""
    if email:
        try:
            validate_email(email)
        except ValidationError:
            errors["email"] = ["Enter a valid email address."]
        else:
            # Members are added by username or email, so an email must name one user.
            if User.objects.filter(email__iexact=email).exists():
                errors["email"] = ["Another user has that email address."]
    if not isinstance(password, str) or not password:
        errors["password"] = ["Enter a password."]
    elif "username" not in errors:
        try:
            password_validation.validate_password(password, User(username=username, email=email))
        except ValidationError as exc:
            errors["password"] = list(exc.messages)
    if not isinstance(is_admin, bool):
        errors["is_admin"] = ["Must be true or false."]
    if errors:
        raise InvalidInput("Some fields are invalid: " + ", ".join(sorted(errors)) + ".", errors)
    return username, email, password, is_admin


def do_create_user(
    actor: Any, username: Any, email: Any, password: Any, *, is_admin: Any = False, ip: str | None = None
) -> Any:
    """Create an account (a site admin when ``is_admin``). Only site admins may; audited as USER_CREATE."""
    if not permissions.can_use_admin_area(actor):
        raise NotAllowed("Only site admins may create users.")
    username, email, password, is_admin = check_new_user(username, email, password, is_admin)
    try:
        with transaction.atomic():
            user = User.objects.create_user(
                username=username, email=email, password=password, is_superuser=is_admin, is_staff=is_admin
            )
            audit.record(
                actor, audit.USER_CREATE, target=f"user:{username}", ip=ip, details={"is_admin": is_admin}
            )
    except IntegrityError as exc:  # created concurrently under the same name
        raise InvalidInput("That username is taken.", {"username": ["That username is taken."]}) from exc
    return user


def do_set_site_admin(
    user: Any, is_admin: bool, *, via: str, groups: list[str] | None = None, ip: str | None = None
) -> bool:
    """Make ``user`` a site admin or take it away, as the identity provider's groups say (``via``: what
    decided). Audited as USER_ADMIN_CHANGE when it changes anything; returns whether it did."""
    with transaction.atomic():
        changed = bool(
            User.objects.filter(pk=user.pk)
            .exclude(is_superuser=is_admin)
            .update(is_superuser=is_admin, is_staff=is_admin)
        )
        if changed:
            # Admins see every project and the admin area's live pages: their open sockets ask again.
            transaction.on_commit(lambda: sockets.recheck_user(user.pk))
            audit.record(
                None,
                audit.USER_ADMIN_CHANGE,
                target=f"user:{user.get_username()}",
                ip=ip,
                details={"from": not is_admin, "to": is_admin, "via": via, "groups": groups or []},
            )
    user.is_superuser = user.is_staff = is_admin
    return changed


def do_reset_mfa(actor: Any, user: Any, *, ip: str | None = None) -> list[str]:
    """Remove every second factor of ``user`` (authenticator app, recovery codes, passkeys), for someone
    who lost them; they set MFA up again at their next sign-in when the policy requires it. Site admins
    only; audited as MFA_ADMIN_RESET. Returns the kinds of factor removed."""
    if not permissions.can_use_admin_area(actor):
        raise NotAllowed("Only site admins may reset two-factor authentication.")
    with transaction.atomic():
        factors = Authenticator.objects.filter(user=user)
        removed = sorted(set(factors.values_list("type", flat=True)))
        factors.delete()
        if removed:
            audit.record(
                actor,
                audit.MFA_ADMIN_RESET,
                target=f"user:{user.get_username()}",
                ip=ip,
                details={"removed": removed},
            )
    return removed


def do_deactivate_user(actor: Any, user: Any, *, ip: str | None = None) -> Any:
    """Deactivate ``user`` and end every way they are connected.

    Sets ``is_active=False``, deletes their recorded sessions, revokes their API tokens, and once committed
    tells their open websockets to close (``SESSION_END`` to their user group). Idempotent: a second call on
    an inactive user ends anything left over but records no second audit event. An admin cannot deactivate
    themselves (NotAllowed), so the studio always keeps the admin who acts.
    """
    if not permissions.can_use_admin_area(actor):
        raise NotAllowed("Only site admins may deactivate users.")
    if not permissions.can_deactivate(actor, user):
        raise NotAllowed("You cannot deactivate your own account; another admin can.")
    with transaction.atomic():
        was_active = bool(User.objects.filter(pk=user.pk, is_active=True).update(is_active=False))
        sessions = end_sessions(user)
        tokens = ApiToken.objects.filter(user=user, revoked_at__isnull=True).update(revoked_at=timezone.now())
        if was_active:
            audit.record(
                actor,
                audit.USER_DEACTIVATE,
                target=f"user:{user.get_username()}",
                ip=ip,
                details={"sessions_ended": sessions, "tokens_revoked": tokens},
            )
    user.is_active = False
    return user
