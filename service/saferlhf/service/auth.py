"""Bearer tokens scoped to projects (DESIGN §11).

A tokens file (YAML) holds, per token, a name, the sha256 of the token (never the token itself)
and its roles by project (read < write < admin; project "*" = every project):

    tokens:
      - name: ci
        sha256: 9f86d0…
        projects: {safety-team: write}

`saferlhf tokens create` appends an entry and prints the token once. Without a tokens file the
service runs in the embedded mode: every caller is an admin of every project — allowed only on
a loopback bind (saferlhf.service.api.server refuses otherwise unless forced).
"""

from __future__ import annotations

import hashlib
import os
import secrets
import tempfile
from collections.abc import Iterable
from pathlib import Path

import yaml
from saferlhf.service.controlplane import Principal
from saferlhf.service.errors import FieldViolation, PermissionDenied, SpecError, Unauthenticated

ROLES = ("read", "write", "admin")
_RANK = {r: i for i, r in enumerate(ROLES)}
TOKEN_PREFIX = "srl_"
EMBEDDED_ADMIN = Principal(name="local", projects={"*": "admin"})


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def role_allows(role: str | None, needed: str) -> bool:
    """read < write < admin: a role allows everything a lower one does."""
    return role is not None and _RANK.get(role, -1) >= _RANK[needed]


def require_role(principal: Principal, project: str, needed: str) -> None:
    if not role_allows(principal.role_in(project), needed):
        raise PermissionDenied(
            f"{principal.name!r} needs the {needed} role in project {project!r}; ask an admin "
            f"for a token with it (saferlhf tokens create --project {project} --role {needed})"
        )


def can_see(principal: Principal, project: str) -> bool:
    return role_allows(principal.role_in(project), "read")


def readable_projects(principal: Principal) -> list[str] | None:
    """Projects the principal may list; None means all of them."""
    if role_allows(principal.projects.get("*"), "read"):
        return None
    return sorted(p for p, r in principal.projects.items() if role_allows(r, "read"))


def bearer(metadata: Iterable[tuple[str, str | bytes]] | None) -> str | None:
    """The token of an `authorization: Bearer <token>` metadata entry, if any."""
    for key, value in metadata or ():
        if key.lower() == "authorization":
            text = value.decode() if isinstance(value, bytes) else value
            scheme, _, token = text.partition(" ")
            if scheme.lower() == "bearer" and token.strip():
                return token.strip()
    return None


class TokenAuth:
    """Resolves bearer tokens to principals. `TokenAuth(None)` is the embedded mode."""

    def __init__(self, tokens_file: str | Path | None) -> None:
        self.tokens_file = Path(tokens_file) if tokens_file else None
        self._by_hash: dict[str, Principal] = {}
        if self.tokens_file is not None:
            for entry in load_entries(self.tokens_file):
                self._by_hash[entry["sha256"]] = Principal(
                    name=entry["name"], projects=dict(entry["projects"])
                )

    @property
    def enabled(self) -> bool:
        return self.tokens_file is not None

    def authenticate(self, metadata: Iterable[tuple[str, str | bytes]] | None) -> Principal:
        if not self.enabled:
            return EMBEDDED_ADMIN
        token = bearer(metadata)
        if token is None:
            raise Unauthenticated(
                "no bearer token: pass --token or set SAFERLHF_TOKEN "
                "(the call needs `authorization: Bearer <token>` metadata)"
            )
        principal = self._by_hash.get(hash_token(token))
        if principal is None:
            raise Unauthenticated("unknown or revoked token; ask an admin for a new one")
        return principal


def load_entries(path: Path) -> list[dict]:
    """Read and check a tokens file; errors name the file, entry and field."""
    if not path.exists():
        return []
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise SpecError([FieldViolation(str(path), f"not valid YAML: {exc}")]) from exc
    entries = data.get("tokens", []) if isinstance(data, dict) else None
    if not isinstance(entries, list):
        raise SpecError([FieldViolation(f"{path}: tokens", "expected a list of token entries")])
    problems = []
    for i, e in enumerate(entries):
        where = f"{path}: tokens[{i}]"
        if not isinstance(e, dict):
            problems.append(FieldViolation(where, "expected a mapping"))
            continue
        if not isinstance(e.get("name"), str) or not e["name"]:
            problems.append(FieldViolation(where + ".name", "expected a non-empty string"))
        sha = e.get("sha256")
        if not (isinstance(sha, str) and len(sha) == 64):
            problems.append(FieldViolation(where + ".sha256", "expected 64 hex characters"))
        projects = e.get("projects")
        if not isinstance(projects, dict) or not projects:
            problems.append(FieldViolation(where + ".projects", "expected {project: role}"))
            continue
        for p, r in projects.items():
            if r not in ROLES:
                problems.append(FieldViolation(
                    f"{where}.projects.{p}", f"expected one of {', '.join(ROLES)}, got {r!r}"))
    if problems:
        raise SpecError(problems, "invalid tokens file:\n  " + "\n  ".join(
            f"{v.field}: {v.description}" for v in problems))
    return entries


def create_token(path: str | Path, *, name: str, project: str, role: str) -> str:
    """Append a new token for (project, role) to the tokens file; returns the token (shown once)."""
    if role not in ROLES:
        expected = ", ".join(ROLES)
        raise SpecError([FieldViolation("role", f"expected one of {expected}, got {role!r}")])
    if not project:
        raise SpecError([FieldViolation("project", "expected a project name or *")])
    path = Path(path)
    entries = load_entries(path)
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    entries.append({"name": name, "sha256": hash_token(token), "projects": {project: role}})
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tokens-")
    with os.fdopen(fd, "w") as f:
        yaml.safe_dump({"tokens": entries}, f, sort_keys=False)
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)
    return token
