"""Every Redis key L1 uses, built in this one place (prefix `artdag:`), with every TTL.

Other modules never write a key literal: they call these builders. `tests/test_state_keys.py`
pins the exact shapes, because other L1 nodes and operators' scripts read them.
"""

from __future__ import annotations

PREFIX = "artdag:"

#: Seconds a revoked token's hash is remembered (30 days, as in the seed).
REVOKED_TTL = 30 * 24 * 3600
#: Seconds a render claim lives unless renewed by its holder.
CLAIM_TTL = 60
#: Seconds a positive token verification from L2 is trusted before asking L2 again.
TOKEN_VERIFY_TTL = 60
#: Seconds a content-store item lock lives (the file work under it takes milliseconds).
CACHE_LOCK_TTL = 30
#: Seconds a cached analysis or plan is kept (they are cheap to recompute).
ANALYSIS_TTL = 30 * 24 * 3600
#: Seconds a step's progress hash lives after its last write (it is rewritten while rendering).
STEP_PROGRESS_TTL = 24 * 3600
#: Seconds a step's log is kept after its last line.
STEP_LOG_TTL = 7 * 24 * 3600
#: Seconds a run's list of notification deliveries is kept after the last one.
DELIVERIES_TTL = 30 * 24 * 3600
#: Seconds a removed chunk stays listed for other hosts to sweep their copies (1 day).
CHUNKS_REMOVED_TTL = 24 * 3600


# Content store index ------------------------------------------------------------------------
def cache_item(digest: str) -> str:
    """Hash: metadata of one stored item."""
    return f"{PREFIX}cache:item:{digest}"


def cache_index() -> str:
    """Sorted set: every stored digest, scored by creation time."""
    return f"{PREFIX}cache:index"


def cache_owner_index(owner: str) -> str:
    """Sorted set: digests uploaded by one user, scored by creation time."""
    return f"{PREFIX}cache:owner:{owner}"


def cache_owner_indexes() -> str:
    """SCAN pattern: every user's `cache_owner_index` (who holds an item, when it is quarantined)."""
    return cache_owner_index("*")


def cache_refs(digest: str) -> str:
    """Set: what references an item (`run:<id>`), which forbids deleting it."""
    return f"{PREFIX}cache:refs:{digest}"


def cache_published() -> str:
    """Set: digests published to L2, which may never be deleted."""
    return f"{PREFIX}cache:published"


def cache_shared() -> str:
    """Sorted set: digests their owners shared with every signed-in user, scored by creation time."""
    return f"{PREFIX}cache:shared"


def cache_lock(digest: str) -> str:
    """Lock (SET NX PX): held while an item's file and index entry change together."""
    return f"{PREFIX}cache:lock:{digest}"


def cache_quarantine() -> str:
    """Hash: digest → JSON {reason, at, size, and who could see it: owner, holders, asset,
    published, shared}, for items whose bytes stopped matching their name."""
    return f"{PREFIX}cache:quarantine"


def assets() -> str:
    """Hash: asset name (such as `cat`) → digest."""
    return f"{PREFIX}assets"


def samples_lock() -> str:
    """Lock (redis-py Lock): held by the one process making the sample assets at first start."""
    return f"{PREFIX}samples:lock"


def stats() -> str:
    """Hash: counters (cache hits and misses, bytes ingested)."""
    return f"{PREFIX}stats"


# Engine ------------------------------------------------------------------------------------
def result(cache_id: str) -> str:
    """String: the digest of the output rendered for a step's cache id."""
    return f"{PREFIX}result:{cache_id}"


def claim(cache_id: str) -> str:
    """String: `<fence>:<holder>` while a worker renders this cache id."""
    return f"{PREFIX}claim:{cache_id}"


def fence(cache_id: str) -> str:
    """Counter: monotonically increasing fencing token per cache id."""
    return f"{PREFIX}fence:{cache_id}"


def analysis(analysis_id: str) -> str:
    return f"{PREFIX}analysis:{analysis_id}"


def plan(plan_id: str) -> str:
    return f"{PREFIX}plan:{plan_id}"


# Runs and configs --------------------------------------------------------------------------
def run(run_id: str) -> str:
    """Hash: one run (seed name)."""
    return f"{PREFIX}run:{run_id}"


def run_changes(run_id: str) -> str:
    """Pub/sub channel: a run's new status, published by every status change (`GET /runs/<id>?wait=`)."""
    return f"{PREFIX}run:{run_id}:changes"


def run_steps(run_id: str) -> str:
    """Hash: step id → JSON state of each step of a run."""
    return f"{PREFIX}run:{run_id}:steps"


def run_step_status(run_id: str) -> str:
    """Hash: step id → status of each step of a run (changed only by compare-and-set)."""
    return f"{PREFIX}run:{run_id}:status"


def step_progress(run_id: str, step_id: str) -> str:
    """Hash: a rendering step's progress (frames, total_frames, percent, fps, eta…), with a TTL."""
    return f"{PREFIX}run:{run_id}:progress:{step_id}"


def step_preview(run_id: str, step_id: str) -> str:
    """String: a JPEG of the last frame a running step rendered (frame loops), with a TTL."""
    return f"{PREFIX}run:{run_id}:preview:{step_id}"


def step_log(run_id: str, step_id: str) -> str:
    """String: the last `STEP_LOG_CAP` bytes of a step's log (commands, ffmpeg's stderr, the
    worker's lines), with a TTL."""
    return f"{PREFIX}run:{run_id}:log:{step_id}"


def run_deliveries(run_id: str) -> str:
    """List: JSON records of a run's notification deliveries (each attempt), newest last."""
    return f"{PREFIX}run:{run_id}:deliveries"


def notify_user(username: str) -> str:
    """Hash: a user's notification settings (`url` default, `secret` for signing)."""
    return f"{PREFIX}notify:user:{username}"


def runs_index() -> str:
    """Sorted set: every run id, scored by creation time."""
    return f"{PREFIX}runs"


def runs_by_status(status: str) -> str:
    return f"{PREFIX}runs:status:{status}"


def queue_paused() -> str:
    """String "1" while an admin has paused the whole queue: no new step starts."""
    return f"{PREFIX}queue:paused"


def fair(kind: str) -> str:
    """Prefix of the fair-share keys of one kind of work (`plan`, `step`); see `state/fair.py`.

    Under it: `prios` (zset), `p{n}:users` (zset user → last served), `p{n}:u:{user}` (list of
    waiting pieces, JSON), `served` (hash user → last served), `seq` (counter)."""
    return f"{PREFIX}fair:{kind}:"


def fair_prios(kind: str) -> str:
    """Zset: the priorities that have waiting work of `kind` (score = priority)."""
    return f"{fair(kind)}prios"


def fair_users(kind: str, priority: int | str) -> str:
    """Zset: user → the sequence number they were last served at, for users waiting at `priority`."""
    return f"{fair(kind)}p{priority}:users"


def fair_waiting(kind: str, priority: int | str, user: str) -> str:
    """List: one user's waiting pieces (JSON) of `kind` at `priority`, oldest first."""
    return f"{fair(kind)}p{priority}:u:{user}"


def fair_served(kind: str) -> str:
    """Hash: user → the sequence number they were last served at (kept across priorities)."""
    return f"{fair(kind)}served"


def fair_seq(kind: str) -> str:
    """Counter: the serving sequence of `kind`."""
    return f"{fair(kind)}seq"


def fair_running() -> str:
    """Hash: user → pieces of work taken and not yet finished (for USER_MAX_RUNNING)."""
    return f"{PREFIX}fair:running"


def fair_stop(job_id: str) -> str:
    """String: a stop was requested for this token (RQ job id) while it rendered the piece named
    in the value; it takes no further piece while the key lives (`state/fair.py: done_and_next`)."""
    return f"{PREFIX}fair:stop:{job_id}"


def fair_taken() -> str:
    """Hash: RQ job id of a fair-share token → the [user, piece] it took and has not finished."""
    return f"{PREFIX}fair:taken"


def fair_sweep() -> str:
    """String with a TTL: set while one worker's sweep for lost fair-share tokens has the turn."""
    return f"{PREFIX}fair:sweep"


def runs_by_user(username: str) -> str:
    return f"{PREFIX}runs:user:{username}"


def runs_by_user_status(username: str, status: str) -> str:
    return f"{PREFIX}runs:user:{username}:status:{status}"


def config(config_id: str) -> str:
    return f"{PREFIX}config:{config_id}"


def configs_index() -> str:
    return f"{PREFIX}configs"


def configs_by_user(username: str) -> str:
    return f"{PREFIX}configs:user:{username}"


def config_owners(config_id: str) -> str:
    """Set: users who uploaded this (canonical) recipe; each sees it as their own."""
    return f"{PREFIX}config:{config_id}:owners"


def configs_shared() -> str:
    """Sorted set: config ids an owner shared with every signed-in user, scored by creation time."""
    return f"{PREFIX}configs:shared"


def config_names(username: str) -> str:
    """Hash: a user's recipe names → config id (the newest upload of that name)."""
    return f"{PREFIX}configs:names:{username}"


def config_refs(config_id: str) -> str:
    """Set: run ids that use a config, which forbids deleting it."""
    return f"{PREFIX}config:{config_id}:runs"


# Sign-in -----------------------------------------------------------------------------------
def user_tokens(username: str) -> str:
    """Set: hashes of the tokens a user signed in with (seed name)."""
    return f"{PREFIX}user_tokens:{username}"


def revoked(token_hash: str) -> str:
    """String with a 30-day TTL: present when the token is revoked."""
    return f"{PREFIX}revoked:{token_hash}"


def token(token_hash: str) -> str:
    """Hash with a short TTL: a positive verification from L2 (username, expiry)."""
    return f"{PREFIX}token:{token_hash}"


def session(session_hash: str) -> str:
    """Hash with the session's TTL: a browser session (username, token hash), by SHA-256 of its id."""
    return f"{PREFIX}session:{session_hash}"


def session_token(session_hash: str) -> str:
    """String with the session's TTL: the session's L2 token, sealed under a key derived from the
    session id in the browser's cookie (which L1 never stores), so Redis alone cannot read it."""
    return f"{PREFIX}session_token:{session_hash}"


def rate(bucket: str) -> str:
    """Counter with the window's TTL: requests in one fixed rate-limit window."""
    return f"{PREFIX}rate:{bucket}"


# Operations --------------------------------------------------------------------------------
def step_metrics() -> str:
    """Hash: step timings for /metrics (`<type>|le:<bound>`, `<type>|sum`, `<type>|outcome:<x>`)."""
    return f"{PREFIX}metrics:steps"


# IPFS / IPNS sync --------------------------------------------------------------------------
def ipfs_cids() -> str:
    """Hash: digest → IPFS CID."""
    return f"{PREFIX}ipfs:cids"


def ipfs_results() -> str:
    """Hash: step cache id → output digest, for outputs added to IPFS (shared with peers)."""
    return f"{PREFIX}ipfs:results"


def ipfs_runs() -> str:
    """Hash: run id → JSON {output_hash, output_cid, provenance_cid, recipe} of completed runs added to IPFS."""
    return f"{PREFIX}ipfs:runs"


def ipfs_pending() -> str:
    """Set: run ids whose outputs still have to be added to IPFS (the sync task retries them)."""
    return f"{PREFIX}ipfs:pending"


def ipns_status() -> str:
    """Hash: the background IPNS sync's state (read by the admin status page)."""
    return f"{PREFIX}ipns:status"


def ipns_peer(name: str) -> str:
    """String: the last document read from a peer's IPNS name (JSON, as fetched)."""
    return f"{PREFIX}ipns:peer:{name}"


def ipns_remote_results() -> str:
    """Hash: step cache id → JSON {digest, cid, peer} merged from peers; never local truth."""
    return f"{PREFIX}ipns:remote:results"


def ipns_remote_cids() -> str:
    """Hash: digest → JSON {cid, peer} merged from peers' CID indexes."""
    return f"{PREFIX}ipns:remote:cids"


# Resumable uploads (tus 1.0, `l1web/store/uploads.py`) ------------------------------------------
def upload(upload_id: str) -> str:
    """Hash: one resumable upload (owner, length, offset, name, expires, digest once finished)."""
    return f"{PREFIX}upload:{upload_id}"


def upload_lock(upload_id: str) -> str:
    """Lock (SET NX PX): held by the one PATCH writing an upload; a second one answers 409."""
    return f"{PREFIX}upload:lock:{upload_id}"


def uploads_expiry() -> str:
    """Sorted set: upload id → the time it expires (the sweep removes what is past)."""
    return f"{PREFIX}uploads:expiry"


def uploads_sweep() -> str:
    """Lock (SET NX PX, never released): the web process holding it sweeps expired uploads; it
    lapses after UPLOAD_SWEEP_INTERVAL, so one sweep runs per interval however many processes."""
    return f"{PREFIX}uploads:sweep"


def uploads_inflight(username: str) -> str:
    """String (integer): bytes one user's unfinished uploads announced, held against their limit."""
    return f"{PREFIX}uploads:inflight:{username}"


def chunks_removed() -> str:
    """Sorted set: digest of a joined step's temporary chunk → when it was removed (engine/chunks.py).

    Every host sweeps its own copies of these files; entries older than CHUNKS_REMOVED_TTL go.
    """
    return f"{PREFIX}chunks:removed"


# Workers ------------------------------------------------------------------------------------
def workers_drained() -> str:
    """Set: names of the workers an admin drained (they take no new work until resumed).

    Kept by name, without expiry, so a worker restarted under the same name comes back drained."""
    return f"{PREFIX}workers:drained"


def worker_stats(name: str) -> str:
    """Hash: one worker's counters, `steps_done` and `steps_failed` (kept by name, like the drain)."""
    return f"{PREFIX}worker:{name}:stats"


# Batches ------------------------------------------------------------------------------------
def batch(batch_id: str) -> str:
    """Hash: one batch (owner, recipe, created, count) and `runs` (JSON list of its run ids, in input order)."""
    return f"{PREFIX}batch:{batch_id}"


def batches_by_user(username: str) -> str:
    """Sorted set: a user's batch ids, scored by creation time."""
    return f"{PREFIX}batches:user:{username}"
