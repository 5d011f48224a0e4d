"""The ``ExternalStore`` operations once, as SQL that SQLite and PostgreSQL both run.

Built on ``integration.store.sql.SqlSeenStore``'s two primitives and error
mapping, so the back-ends are the integration store's own connections with
these tables beside its tables. Every state change is one conditional
statement, so nodes sharing a PostgreSQL database never both win: a
dispatch is leased to one sender, a bucket token is taken once, and a
result moves in_progress -> completed once.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from integration.external.allowlist import RepoKey
from integration.external.levels import Level
from integration.external.records import (
    COMPLETED,
    IN_PROGRESS,
    PENDING,
    SENT,
    CachedAllowlist,
    DispatchRecord,
    Health,
    ResultKey,
    ResultRecord,
    ResultReport,
    Trusted,
    UpstreamCheck,
    dumps,
)
from integration.store.sql import SqlSeenStore

# Kept a day after its last use, an idle bucket is full again anyway.
BUCKET_IDLE = 24 * 3600.0

_DISPATCH_COLUMNS = ("id, delivery, downstream, upstream, installation_id, sha, ref, pr_number, event, action, level, "
                     "body, state, attempts, next_at, last_error, created_at, sent_at, finished_at")
_RESULT_COLUMNS = ("downstream, delivery, run_id, run_attempt, job_id, trusted, status, conclusion, first_seen_at, "
                   "completed_seen_at, updated_at, untrusted")
_HEALTH_COLUMNS = "downstream, failures, unhealthy_since, last_error, last_success_at, last_failure_at"
_CHECK_COLUMNS = ("key, upstream, sha, installation_id, name, external_id, shown_rank, wanted_rank, wanted, attempts, "
                  "next_at, last_error")


def _opt_float(value: object) -> float | None:
    return None if value is None else float(value)  # type: ignore[arg-type]


def _dispatch(row: tuple[Any, ...]) -> DispatchRecord:
    (id_, delivery, downstream, upstream, installation_id, sha, ref, pr_number, event, action, level, body, state,
     attempts, next_at, last_error, created_at, sent_at, finished_at) = row
    return DispatchRecord(
        str(id_), str(delivery), RepoKey.parse(str(downstream)), RepoKey.parse(str(upstream)),
        int(installation_id), str(sha), str(ref), int(pr_number), str(event), str(action),
        Level(int(level)), str(body), str(state), int(attempts), float(next_at), str(last_error),
        float(created_at), _opt_float(sent_at), _opt_float(finished_at),
    )


def _result(row: tuple[Any, ...]) -> ResultRecord:
    (downstream, delivery, run_id, run_attempt, job_id, trusted, status, conclusion, first_seen_at,
     completed_seen_at, updated_at, untrusted) = row
    key = ResultKey(RepoKey.parse(str(downstream)), str(delivery), str(run_id), int(run_attempt), str(job_id))
    return ResultRecord(
        key, Trusted.from_json(json.loads(str(trusted))), str(status), str(conclusion) or None,
        float(first_seen_at), _opt_float(completed_seen_at), float(updated_at),
        ResultReport.from_json(json.loads(str(untrusted))),
    )


def _health(row: tuple[Any, ...]) -> Health:
    downstream, failures, unhealthy_since, last_error, last_success_at, last_failure_at = row
    return Health(RepoKey.parse(str(downstream)), int(failures), _opt_float(unhealthy_since), str(last_error),
                  _opt_float(last_success_at), _opt_float(last_failure_at))


def _check(row: tuple[Any, ...]) -> UpstreamCheck:
    key, upstream, sha, installation_id, name, external_id, shown, wanted_rank, wanted, attempts, next_at, error = row
    return UpstreamCheck(str(key), RepoKey.parse(str(upstream)), str(sha), int(installation_id), str(name),
                         str(external_id), int(shown), int(wanted_rank), str(wanted), int(attempts),
                         float(next_at), str(error))


def _key_args(key: ResultKey) -> tuple[object, ...]:
    return str(key.downstream), key.delivery, key.run_id, key.run_attempt, key.job_id


_KEY_WHERE = "downstream = ? AND delivery = ? AND run_id = ? AND run_attempt = ? AND job_id = ?"


class SqlExternalStore(SqlSeenStore):
    """``ExternalStore`` on the integration store's primitives; subclasses connect and apply ``schema``."""

    async def save_allowlist(self, cached: CachedAllowlist) -> None:
        await self._run(
            "cannot keep the allowlist",
            "INSERT INTO external_allowlist (source, body, digest, loaded_at) VALUES (?, ?, ?, ?) "
            "ON CONFLICT (source) DO UPDATE SET body = excluded.body, digest = excluded.digest, "
            "loaded_at = excluded.loaded_at",
            cached.source, cached.body, cached.digest, cached.loaded_at,
        )

    async def load_allowlist(self, source: str) -> CachedAllowlist | None:
        rows = await self._rows("cannot read the kept allowlist",
                                "SELECT source, body, digest, loaded_at FROM external_allowlist WHERE source = ?",
                                source)
        if not rows:
            return None
        source_, body, digest, loaded_at = rows[0]
        return CachedAllowlist(str(source_), str(body), str(digest), float(loaded_at))

    # -- dispatches ------------------------------------------------------------

    async def record_dispatches(self, records: Sequence[DispatchRecord], expires_at: float) -> list[DispatchRecord]:
        inserted = []
        for r in records:
            changed = await self._run(
                f"cannot record the dispatch of {r.delivery} to {r.downstream}",
                f"INSERT INTO external_dispatches ({_DISPATCH_COLUMNS}, expires_at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
                "ON CONFLICT (delivery, downstream) DO NOTHING",
                r.id, r.delivery, str(r.downstream), str(r.upstream), r.installation_id, r.sha, r.ref, r.pr_number,
                r.event, r.action, int(r.level), r.body, r.state, r.attempts, r.next_at, r.last_error, r.created_at,
                r.sent_at, r.finished_at, expires_at,
            )
            if changed == 1:
                inserted.append(r)
        return inserted

    async def take_due_dispatches(self, now: float, lease: float, limit: int) -> list[DispatchRecord]:
        rows = await self._rows(
            "cannot read the due dispatches",
            "UPDATE external_dispatches SET next_at = ? WHERE id IN "
            "(SELECT id FROM external_dispatches WHERE state = ? AND next_at <= ? "
            f"ORDER BY next_at LIMIT ?{self.lock_due}) "
            f"RETURNING {_DISPATCH_COLUMNS}",
            now + lease, PENDING, now, limit,
        )
        return sorted((_dispatch(row) for row in rows), key=lambda d: d.created_at)

    async def dispatch_sent(self, dispatch_id: str, at: float) -> None:
        await self._run(f"cannot record dispatch {dispatch_id} as sent",
                        "UPDATE external_dispatches SET state = ?, sent_at = ?, last_error = '' "
                        "WHERE id = ? AND state = ?", SENT, at, dispatch_id, PENDING)

    async def dispatch_retry(self, dispatch_id: str, attempts: int, next_at: float, error: str) -> None:
        await self._run(f"cannot reschedule dispatch {dispatch_id}",
                        "UPDATE external_dispatches SET attempts = ?, next_at = ?, last_error = ? "
                        "WHERE id = ? AND state = ?", attempts, next_at, error, dispatch_id, PENDING)

    async def dispatch_finished(self, dispatch_id: str, state: str, attempts: int, at: float, error: str) -> None:
        await self._run(f"cannot record dispatch {dispatch_id} as {state}",
                        "UPDATE external_dispatches SET state = ?, attempts = ?, finished_at = ?, last_error = ? "
                        "WHERE id = ? AND state = ?", state, attempts, at, error, dispatch_id, PENDING)

    async def find_dispatch(self, delivery: str, downstream: RepoKey) -> DispatchRecord | None:
        rows = await self._rows(f"cannot read the dispatch of {delivery}",
                                f"SELECT {_DISPATCH_COLUMNS} FROM external_dispatches "
                                "WHERE delivery = ? AND downstream = ?", delivery, str(downstream))
        return _dispatch(rows[0]) if rows else None

    async def dispatches_of(self, upstream: RepoKey, sha: str | None = None,
                            pr_number: int | None = None) -> list[DispatchRecord]:
        where, args = self._upstream_where(upstream, sha, pr_number)
        rows = await self._rows(f"cannot read the dispatches of {upstream}",
                                f"SELECT {_DISPATCH_COLUMNS} FROM external_dispatches WHERE {where} "
                                "ORDER BY created_at, downstream", *args)
        return [_dispatch(row) for row in rows]

    @staticmethod
    def _upstream_where(upstream: RepoKey, sha: str | None, pr_number: int | None) -> tuple[str, list[object]]:
        where = "upstream = ?"
        args: list[object] = [str(upstream)]
        if sha is not None:
            where += " AND sha = ?"
            args.append(sha)
        if pr_number is not None:
            where += " AND pr_number = ?"
            args.append(pr_number)
        return where, args

    # -- health ----------------------------------------------------------------

    async def note_dispatch(self, downstream: RepoKey, ok: bool, at: float, error: str,
                            unhealthy_after: int) -> Health:
        what = f"cannot record the health of {downstream}"
        await self._run(what, f"INSERT INTO external_health ({_HEALTH_COLUMNS}) VALUES (?, 0, NULL, '', NULL, NULL) "
                              "ON CONFLICT (downstream) DO NOTHING", str(downstream))
        if ok:
            await self._run(what, "UPDATE external_health SET failures = 0, unhealthy_since = NULL, "
                                  "last_success_at = ? WHERE downstream = ?", at, str(downstream))
        else:
            # One statement: concurrent failures each count, and the first to cross the line sets the time.
            await self._run(
                what,
                "UPDATE external_health SET failures = failures + 1, last_error = ?, last_failure_at = ?, "
                "unhealthy_since = CASE WHEN unhealthy_since IS NULL AND failures + 1 >= ? THEN ? "
                "ELSE unhealthy_since END WHERE downstream = ?",
                error, at, unhealthy_after, at, str(downstream),
            )
        return await self.health(downstream)

    async def health(self, downstream: RepoKey) -> Health:
        rows = await self._rows(f"cannot read the health of {downstream}",
                                f"SELECT {_HEALTH_COLUMNS} FROM external_health WHERE downstream = ?", str(downstream))
        return _health(rows[0]) if rows else Health(downstream)

    async def all_health(self) -> list[Health]:
        rows = await self._rows("cannot read the downstreams' health",
                                f"SELECT {_HEALTH_COLUMNS} FROM external_health ORDER BY downstream")
        return [_health(row) for row in rows]

    # -- rate limit ------------------------------------------------------------

    async def take_token(self, repo: str, now: float, per_second: float, burst: int) -> float:
        what = f"cannot count the requests of {repo}"
        await self._run(what, "INSERT INTO external_rate (repo, tokens, updated_at) VALUES (?, ?, ?) "
                              "ON CONFLICT (repo) DO NOTHING", repo, float(burst), now)
        # The bucket refilled up to now (a clock behind the last writer's adds nothing), capped at burst.
        refilled = ("(CASE WHEN tokens + (CASE WHEN ? > updated_at THEN ? - updated_at ELSE 0 END) * ? > ? "
                    "THEN ? ELSE tokens + (CASE WHEN ? > updated_at THEN ? - updated_at ELSE 0 END) * ? END)")
        refill_args = (now, now, per_second, float(burst), float(burst), now, now, per_second)
        taken = await self._run(
            what,
            f"UPDATE external_rate SET tokens = {refilled} - 1, "
            "updated_at = CASE WHEN ? > updated_at THEN ? ELSE updated_at END "
            f"WHERE repo = ? AND {refilled} >= 1",
            *refill_args, now, now, repo, *refill_args,
        )
        if taken == 1:
            return 0.0
        rows = await self._rows(what, f"SELECT {refilled} FROM external_rate WHERE repo = ?", *refill_args, repo)
        level = float(rows[0][0]) if rows else 0.0
        return max((1.0 - level) / per_second, 0.001)

    # -- results ---------------------------------------------------------------

    async def count_results(self, downstream: RepoKey) -> int:
        rows = await self._rows(f"cannot count the results of {downstream}",
                                "SELECT COUNT(*) FROM external_results WHERE downstream = ?", str(downstream))
        return int(rows[0][0])

    async def get_result(self, key: ResultKey) -> ResultRecord | None:
        rows = await self._rows(f"cannot read the result {key}",
                                f"SELECT {_RESULT_COLUMNS} FROM external_results WHERE {_KEY_WHERE}", *_key_args(key))
        return _result(rows[0]) if rows else None

    async def insert_result(self, record: ResultRecord, expires_at: float) -> bool:
        t = record.trusted
        changed = await self._run(
            f"cannot store the result {record.key}",
            f"INSERT INTO external_results ({_RESULT_COLUMNS}, upstream, sha, pr_number, expires_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
            "ON CONFLICT (downstream, delivery, run_id, run_attempt, job_id) DO NOTHING",
            *_key_args(record.key), dumps(t.to_json()), record.status, record.conclusion or "",
            record.first_seen_at, record.completed_seen_at, record.updated_at, dumps(record.report.to_json()),
            str(t.upstream), t.sha, t.pr_number, expires_at,
        )
        return changed == 1

    async def complete_result(self, record: ResultRecord) -> bool:
        changed = await self._run(
            f"cannot store the result {record.key}",
            "UPDATE external_results SET status = ?, conclusion = ?, completed_seen_at = ?, updated_at = ?, "
            f"trusted = ?, untrusted = ? WHERE {_KEY_WHERE} AND status = ?",
            COMPLETED, record.conclusion or "", record.completed_seen_at, record.updated_at,
            dumps(record.trusted.to_json()), dumps(record.report.to_json()), *_key_args(record.key), IN_PROGRESS,
        )
        return changed == 1

    async def results_of_upstream(self, upstream: RepoKey, sha: str | None = None,
                                  pr_number: int | None = None) -> list[ResultRecord]:
        where, args = self._upstream_where(upstream, sha, pr_number)
        rows = await self._rows(f"cannot read the results of {upstream}",
                                f"SELECT {_RESULT_COLUMNS} FROM external_results WHERE {where} "
                                "ORDER BY downstream, first_seen_at", *args)
        return [_result(row) for row in rows]

    async def results_of_commits(self, upstream: RepoKey, shas: Sequence[str]) -> list[ResultRecord]:
        if not shas:
            return []
        marks = ", ".join("?" for _ in shas)
        rows = await self._rows(f"cannot read the results of {upstream}",
                                f"SELECT {_RESULT_COLUMNS} FROM external_results "
                                f"WHERE upstream = ? AND sha IN ({marks}) "
                                "ORDER BY downstream, first_seen_at", str(upstream), *shas)
        return [_result(row) for row in rows]

    async def results_of_downstream(self, downstream: RepoKey, since: float, limit: int) -> list[ResultRecord]:
        rows = await self._rows(f"cannot read the results of {downstream}",
                                f"SELECT {_RESULT_COLUMNS} FROM external_results WHERE downstream = ? "
                                "AND updated_at >= ? ORDER BY updated_at DESC LIMIT ?", str(downstream), since, limit)
        return [_result(row) for row in rows]

    async def downstream_totals(self, since: float) -> list[tuple[RepoKey, int, int, float]]:
        rows = await self._rows(
            "cannot sum up the downstreams' results",
            "SELECT downstream, SUM(CASE WHEN status = ? THEN 1 ELSE 0 END), "
            "SUM(CASE WHEN status = ? AND conclusion = 'success' THEN 1 ELSE 0 END), MAX(updated_at) "
            "FROM external_results WHERE updated_at >= ? GROUP BY downstream ORDER BY downstream",
            COMPLETED, COMPLETED, since,
        )
        return [(RepoKey.parse(str(d)), int(done or 0), int(ok or 0), float(last))
                for d, done, ok, last in rows]

    # -- upstream checks -------------------------------------------------------

    async def want_upstream_check(self, check: UpstreamCheck, expires_at: float) -> UpstreamCheck:
        what = f"cannot record the upstream check of {check.key}"
        await self._run(
            what,
            f"INSERT INTO external_upstream_checks ({_CHECK_COLUMNS}, expires_at) "
            "VALUES (?, ?, ?, ?, ?, '', 0, ?, ?, 0, ?, '', ?) ON CONFLICT (key) DO UPDATE SET "
            "wanted_rank = excluded.wanted_rank, wanted = excluded.wanted, next_at = excluded.next_at, attempts = 0 "
            "WHERE external_upstream_checks.wanted_rank < excluded.wanted_rank",
            check.key, str(check.upstream), check.sha, check.installation_id, check.name, check.wanted_rank,
            check.wanted, check.next_at, expires_at,
        )
        stored = await self.get_upstream_check(check.key)
        assert stored is not None
        return stored

    async def upstream_check_shown(self, key: str, external_id: str, rank: int) -> None:
        await self._run(f"cannot record the upstream check of {key}",
                        "UPDATE external_upstream_checks SET external_id = ?, "
                        "shown_rank = CASE WHEN shown_rank > ? THEN shown_rank ELSE ? END, last_error = '' "
                        "WHERE key = ?", external_id, rank, rank, key)

    async def upstream_check_retry(self, key: str, attempts: int, next_at: float, error: str) -> None:
        await self._run(f"cannot reschedule the upstream check of {key}",
                        "UPDATE external_upstream_checks SET attempts = ?, next_at = ?, last_error = ? WHERE key = ?",
                        attempts, next_at, error, key)

    async def take_due_upstream_checks(self, now: float, lease: float, limit: int) -> list[UpstreamCheck]:
        rows = await self._rows(
            "cannot read the due upstream checks",
            "UPDATE external_upstream_checks SET next_at = ? WHERE key IN "
            "(SELECT key FROM external_upstream_checks WHERE shown_rank < wanted_rank AND next_at <= ? "
            f"ORDER BY next_at LIMIT ?{self.lock_due}) RETURNING {_CHECK_COLUMNS}",
            now + lease, now, limit,
        )
        return [_check(row) for row in rows]

    async def get_upstream_check(self, key: str) -> UpstreamCheck | None:
        rows = await self._rows(f"cannot read the upstream check of {key}",
                                f"SELECT {_CHECK_COLUMNS} FROM external_upstream_checks WHERE key = ?", key)
        return _check(rows[0]) if rows else None

    # -- retention -------------------------------------------------------------

    async def purge(self, now: float) -> int:
        purged = 0
        for table in ("external_dispatches", "external_results", "external_upstream_checks"):
            purged += await self._run(f"cannot purge {table}", f"DELETE FROM {table} WHERE expires_at <= ?", now)
        purged += await self._run("cannot purge idle rate buckets",
                                  "DELETE FROM external_rate WHERE updated_at <= ?", now - BUCKET_IDLE)
        return purged
