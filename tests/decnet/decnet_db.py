#!/usr/bin/env python3
"""Drive DECNET's own database layer for ttp-worker's integration tests.

This file is ttp-worker's (MIT), not DECNET's: it only *calls* DECNET's code, which the
test harness installs from PyPI (decnet==1.0.0, AGPL-3.0) into a cached venv
(tests/common/decnet.rs). Run it with that venv's interpreter:

    decnet_db.py create URL
    decnet_db.py seed URL WORLD.json CORPUS.jsonl
    decnet_db.py add-attacker URL IP UUID
    decnet_db.py read URL WHAT [ARG]
    decnet_db.py insert-tags URL TAGS.jsonl

URL is either a SQLite file path or mysql://user:password@host:port/database. Every
subcommand prints one JSON value on stdout; diagnostics go to stderr; a failure exits
non-zero.

The backend is chosen the way a DECNET deployment chooses it: through the DECNET_DB_*
environment variables its repository factory reads, then `get_repository()`.
"""
from __future__ import annotations

import asyncio
import json
import os
import sys
import tempfile
from datetime import datetime, timezone
from pathlib import Path
from urllib.parse import urlsplit


def _configure_env(url: str) -> dict:
    """Set the environment DECNET reads at import time; return get_repository() kwargs."""
    # DECNET refuses to import its web layer without these two secrets (its startup
    # checks reject short or well-known values); they protect nothing here.
    os.environ.setdefault("DECNET_ADMIN_PASSWORD", "ttp-worker-harness-admin-pw")
    os.environ.setdefault("DECNET_JWT_SECRET", "ttp-worker-harness-jwt-secret-0123456789abcdef")
    # Production path: no DECNET_TESTING, so the schema comes from DECNET's Alembic
    # migrations, as at a real boot, not from a bare metadata.create_all.
    os.environ.pop("DECNET_TESTING", None)
    # DECNET's file logger defaults to /var/log/decnet; keep it out of the host.
    os.environ.setdefault(
        "DECNET_LOG_FILE", os.path.join(tempfile.gettempdir(), "ttp-worker-decnet-harness.log")
    )
    if url.startswith("mysql://") or url.startswith("mysql+"):
        parts = urlsplit(url)
        # DECNET's MySQL engine speaks asyncmy; a plain mysql:// URL names the same server.
        driver_url = "mysql+asyncmy://" + url.split("://", 1)[1]
        os.environ["DECNET_DB_TYPE"] = "mysql"
        os.environ["DECNET_DB_URL"] = driver_url
        os.environ["DECNET_DB_HOST"] = parts.hostname or "127.0.0.1"
        os.environ["DECNET_DB_PORT"] = str(parts.port or 3306)
        os.environ["DECNET_DB_NAME"] = parts.path.lstrip("/")
        os.environ["DECNET_DB_USER"] = parts.username or ""
        os.environ["DECNET_DB_PASSWORD"] = parts.password or ""
        # The factory picks the URL up from DECNET_DB_URL, as a deployment does.
        return {}
    path = url[len("sqlite:///"):] if url.startswith("sqlite:///") else url
    path = str(Path(path).absolute())
    os.environ["DECNET_DB_TYPE"] = "sqlite"
    os.environ["DECNET_DB_PATH"] = path
    # SQLiteRepository takes its file as an argument (its default is inside the package);
    # DECNET_DB_PATH above is what DECNET's Alembic environment and workers read.
    return {"db_path": path}


def _offline_attack_catalogue() -> None:
    """Answer ATT&CK name/URL look-ups with "unknown" instead of fetching MITRE's bundle.

    DECNET's rollup queries decorate each row with a technique name and attack.mitre.org
    URL from MITRE's STIX bundle (about 50 MB, downloaded on first use, parsed by
    mitreattack-python). Those two fields are not read from the database, so the harness
    leaves them out (None) rather than download the bundle: everything that comes from
    the database is unchanged.
    """
    import decnet.ttp.attack_stix as attack_stix

    attack_stix._attack_pattern_by_id = lambda _technique_id: None


def _repo(url: str):
    kwargs = _configure_env(url)
    _offline_attack_catalogue()
    from decnet.web.db.factory import get_repository

    return get_repository(**kwargs)


def _dump(value) -> None:
    json.dump(value, sys.stdout, default=_json_default, sort_keys=False)
    sys.stdout.write("\n")
    sys.stdout.flush()


def _json_default(o):
    if isinstance(o, datetime):
        return o.isoformat()
    if hasattr(o, "model_dump"):
        return o.model_dump(mode="json")
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def _models(rows):
    return [r.model_dump(mode="json") for r in rows]


# ── create ──────────────────────────────────────────────────────────────────────────


async def cmd_create(url: str) -> dict:
    repo = _repo(url)
    try:
        # What DECNET's API runs at startup: Alembic upgrade to head (under an advisory
        # lock on MySQL), then the admin user.
        await repo.initialize()
        tables = await _tables(repo)
    finally:
        await repo.engine.dispose()
    return {"ok": True, "backend": os.environ["DECNET_DB_TYPE"], "tables": tables}


async def _tables(repo) -> list[str]:
    from sqlalchemy import inspect

    async with repo.engine.connect() as conn:
        return sorted(await conn.run_sync(lambda c: inspect(c).get_table_names()))


# ── seed ────────────────────────────────────────────────────────────────────────────


def _corpus_references(corpus_path: str):
    """Attacker and identity UUIDs the corpus' payloads name, in first-seen order.

    attacker_uuid, attacker_uuids (credential reuse) and member_attacker_uuids (identity
    events) name Attacker rows; identity_uuid, winner_uuid and loser_uuid (identity
    merges) name AttackerIdentity rows. observation_uuids are left alone: ttp_tag never
    points at them.
    Also returns identity -> members from identity.formed / identity.merged events.
    """
    attackers: dict[str, None] = {}
    identities: dict[str, None] = {}
    members: dict[str, list[str]] = {}

    def walk(node):
        if isinstance(node, dict):
            for key, value in node.items():
                if key == "attacker_uuid" and isinstance(value, str):
                    attackers.setdefault(value)
                elif key in ("attacker_uuids", "member_attacker_uuids") and isinstance(value, list):
                    for v in value:
                        if isinstance(v, str):
                            attackers.setdefault(v)
                elif key in ("identity_uuid", "winner_uuid", "loser_uuid") and isinstance(value, str):
                    identities.setdefault(value)
                walk(value)
        elif isinstance(node, list):
            for v in node:
                walk(v)

    with open(corpus_path, encoding="utf-8") as f:
        for line in f:
            line = line.strip()
            if not line:
                continue
            envelope = json.loads(line)
            payload = envelope.get("payload")
            walk(payload)
            if isinstance(payload, dict):
                ident = payload.get("identity_uuid") or payload.get("winner_uuid")
                listed = payload.get("member_attacker_uuids")
                if isinstance(ident, str) and isinstance(listed, list):
                    members.setdefault(ident, [])
                    for m in listed:
                        if isinstance(m, str) and m not in members[ident]:
                            members[ident].append(m)
    return list(attackers), list(identities), members


def _documentation_ip(n: int) -> str:
    """The n-th address of the RFC 5737 documentation ranges (never a corpus IP)."""
    nets = ("192.0.2.", "198.51.100.", "203.0.113.")
    return nets[(n // 254) % 3] + str(n % 254 + 1)


# The corpus was recorded on 2026-05-01; attackers are dated the evening before so every
# event falls after their first sighting.
_SEEN = datetime(2026, 4, 30, 23, 0, 0, tzinfo=timezone.utc)


async def cmd_seed(url: str, world_path: str, corpus_path: str) -> dict:
    from decnet.web.db.models import Attacker, AttackerIdentity

    with open(world_path, encoding="utf-8") as f:
        world = json.load(f)
    ip_map: dict[str, str] = world["ip_map"]
    intel_rows: dict[str, dict] = world["intel_rows"]
    corpus_attackers, corpus_identities, members = _corpus_references(corpus_path)

    attackers: dict[str, str] = {}  # uuid -> ip
    for ip, uuid in ip_map.items():
        attackers.setdefault(uuid, ip)
    extra = 0
    for uuid in list(intel_rows) + corpus_attackers:
        if uuid not in attackers:
            # Not in the world's ip_map: the attacker exists, but its IP must not be one
            # the corpus uses (those left out of ip_map are deliberately unknown), so it
            # gets a documentation address.
            attackers[uuid] = _documentation_ip(extra)
            extra += 1

    repo = _repo(url)
    try:
        # Identities first: attackers.identity_id references them. Only the columns
        # the corpus tells: uuid, and the members' first/last seen; the rest is DECNET's
        # defaults (schema_version 1, no campaign, no fingerprints yet).
        for uuid in corpus_identities:
            await repo.create_attacker_identity({
                "uuid": uuid,
                "first_seen_at": _SEEN,
                "last_seen_at": _SEEN,
                "observation_count": len(members.get(uuid, [])),
            })
        # Attacker rows with the caller's UUIDs (DECNET's upsert_attacker would mint
        # new ones): one per IP, seen once, no services/deckies recorded yet.
        async with repo.session_factory() as session:
            for uuid, ip in attackers.items():
                session.add(Attacker(
                    uuid=uuid,
                    ip=ip,
                    first_seen=_SEEN,
                    last_seen=_SEEN,
                    event_count=1,
                ))
            await session.commit()
        # Link members to their identity as DECNET's clusterer does, so by-identity
        # reads also cover tags anchored on member attackers. A later event wins.
        linked = 0
        for ident, listed in members.items():
            if ident not in corpus_identities:
                continue
            for m in listed:
                if m in attackers:
                    await repo.set_attacker_identity_id(m, ident)
                    linked += 1
        # attacker_intel: the world's columns as given; cached now, valid for a day
        # (DECNET's enrichment TTL), so nothing looks stale during a test.
        now = datetime.now(timezone.utc)
        from datetime import timedelta

        for uuid, row in intel_rows.items():
            data = dict(row)
            data["attacker_uuid"] = uuid
            data.setdefault("attacker_ip", attackers[uuid])
            data.setdefault("cached_at", now)
            data.setdefault("expires_at", now + timedelta(days=1))
            await repo.upsert_attacker_intel(data)
    finally:
        await repo.engine.dispose()
    return {
        "attackers": len(attackers),
        "attackers_without_ip_map": extra,
        "identities": len(corpus_identities),
        "identity_links": linked,
        "intel_rows": len(intel_rows),
    }


async def cmd_add_attacker(url: str, ip: str, uuid: str) -> dict:
    from decnet.web.db.models import Attacker

    repo = _repo(url)
    try:
        now = datetime.now(timezone.utc)
        async with repo.session_factory() as session:
            session.add(Attacker(uuid=uuid, ip=ip, first_seen=now, last_seen=now, event_count=1))
            await session.commit()
        # Read back through DECNET's own lookup, the one its TTP worker resolves IPs with.
        resolved = await repo.get_attacker_uuid_by_ip(ip)
    finally:
        await repo.engine.dispose()
    return {"uuid": uuid, "ip": ip, "resolved": resolved}


# ── read ────────────────────────────────────────────────────────────────────────────


async def cmd_read(url: str, what: str, arg: str | None):
    from sqlalchemy import inspect, select

    from decnet.web.db.models import NavigatorLayer, NavigatorTechnique, TTPTag

    def need_arg():
        if arg is None:
            raise SystemExit(f"read {what}: needs an argument")
        return arg

    repo = _repo(url)
    try:
        if what == "all-tags":
            # Every row as DECNET's model reads it back (JSON mode: ISO datetimes,
            # evidence as an object), in primary-key order.
            async with repo.session_factory() as session:
                res = await session.execute(select(TTPTag).order_by(TTPTag.uuid))
                return _models(res.scalars().all())
        if what == "by-attacker":  # GET /api/v1/ttp/by-attacker/{uuid}
            return _models(await repo.list_techniques_by_attacker(need_arg()))
        if what == "by-identity":  # GET /api/v1/ttp/by-identity/{uuid}
            return _models(await repo.list_techniques_by_identity(need_arg()))
        if what == "by-session":  # GET /api/v1/ttp/by-session/{id}
            return _models(await repo.list_techniques_by_session(need_arg()))
        if what == "by-campaign":  # GET /api/v1/ttp/by-campaign/{uuid}
            return _models(await repo.list_techniques_by_campaign(need_arg()))
        if what == "techniques":  # GET /api/v1/ttp/techniques
            return _models(await repo.list_distinct_techniques())
        if what == "tags-by-attacker":  # raw rows, newest first (STIX export)
            return await repo.list_ttp_tags_by_attacker(need_arg())
        if what == "navigator":
            # GET /api/v1/ttp/export/navigator[/identity/{uuid}]: DECNET's router builds
            # its layer from list_distinct_techniques (or the identity rollup), one entry
            # per row with the row's count as score.
            if arg is None:
                rows = await repo.list_distinct_techniques()
                name = "DECNET TTP coverage — fleet"
            else:
                rows = await repo.list_techniques_by_identity(arg)
                name = f"DECNET TTP coverage — identity {arg}"
            layer = NavigatorLayer(
                name=name,
                techniques=[
                    NavigatorTechnique(techniqueID=r.technique_id, score=r.count) for r in rows
                ],
            )
            return layer.model_dump(mode="json")
        if what == "schema":
            # ttp_tag's columns as DECNET's model declares them and as the database has them.
            model_columns = [c.name for c in TTPTag.__table__.columns]
            async with repo.engine.connect() as conn:
                db_columns = await conn.run_sync(
                    lambda c: [col["name"] for col in inspect(c).get_columns("ttp_tag")]
                )
            return {
                "model_columns": model_columns,
                "db_columns": db_columns,
                "tables": await _tables(repo),
            }
        if what == "attacker-by-ip":
            return await repo.get_attacker_uuid_by_ip(need_arg())
        raise SystemExit(f"read: unknown WHAT {what!r}")
    finally:
        await repo.engine.dispose()


# ── insert-tags ─────────────────────────────────────────────────────────────────────


async def cmd_insert_tags(url: str, tags_path: str) -> dict:
    from decnet.web.db.models import TTPTag

    repo = _repo(url)
    try:
        rows = []
        with open(tags_path, encoding="utf-8") as f:
            for line in f:
                line = line.strip()
                if not line:
                    continue
                tag = json.loads(line)
                if "attack_release" not in tag:
                    # What DECNET's tagger stamps on every tag it emits.
                    from decnet.ttp.impl.rule_engine import _ATTACK_RELEASE

                    tag["attack_release"] = _ATTACK_RELEASE
                if isinstance(tag.get("created_at"), str):
                    tag["created_at"] = datetime.fromisoformat(tag["created_at"])
                rows.append(TTPTag(**tag))
        # DECNET's own insert path: confidence floor, then INSERT OR IGNORE / INSERT IGNORE.
        inserted = await repo.insert_tags(rows)
    finally:
        await repo.engine.dispose()
    return {"given": len(rows), "inserted": inserted}


def main(argv: list[str]) -> int:
    usage = (
        "usage: decnet_db.py create URL | seed URL WORLD CORPUS | add-attacker URL IP UUID"
        " | read URL WHAT [ARG] | insert-tags URL TAGS.jsonl"
    )
    if len(argv) < 2:
        print(usage, file=sys.stderr)
        return 2
    cmd, args = argv[0], argv[1:]
    if cmd == "create" and len(args) == 1:
        out = asyncio.run(cmd_create(*args))
    elif cmd == "seed" and len(args) == 3:
        out = asyncio.run(cmd_seed(*args))
    elif cmd == "add-attacker" and len(args) == 3:
        out = asyncio.run(cmd_add_attacker(*args))
    elif cmd == "read" and len(args) in (2, 3):
        out = asyncio.run(cmd_read(args[0], args[1], args[2] if len(args) == 3 else None))
    elif cmd == "insert-tags" and len(args) == 2:
        out = asyncio.run(cmd_insert_tags(*args))
    else:
        print(usage, file=sys.stderr)
        return 2
    _dump(out)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
