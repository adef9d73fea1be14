//! Shared generations: the freshness protocol across processes, over Redis.
//!
//! With a Redis tier configured, the generation of every counter (relation name, `*` for
//! the epoch) lives in one Redis hash. A write bumps it there (`HINCRBY`, in one Lua
//! script that also `PUBLISH`es the new values) after the statement succeeded and
//! before the call returns, in every process. Each process keeps its in-process
//! [`Generations`] as **change detectors**: whenever it learns that a remote
//! counter moved (from any Redis reply that carries generations, or a pub/sub message),
//! it bumps the local counter of that name. Local stamps therefore stay what they were
//! (monotonic sums, see [`generations`](super::generations)); an entry stamped before a
//! detected change never matches again.
//!
//! # Why Strict is never stale
//!
//! Claim: in [`Consistency::Strict`], once a write through any process has returned,
//! no read that starts afterwards, in any process, is served rows from before the write.
//!
//! 1. The write's bump reached Redis before the write returned (or the write recorded
//!    a failed bump; see 5).
//! 2. A strict hit (L1 memory, L3 disk) is served only after a *sync* of its read set
//!    that was sent to Redis after the read began: the sync reads the current remote
//!    counters and, before it completes, bumps every local counter whose remote value
//!    moved since this process last saw it (`SharedGenerations::apply`, under one
//!    lock, so "seen" always implies "locally bumped"). By 1 the sync sees the write's
//!    bump, so by the time the hit compares stamps, the local counter of every relation
//!    the write touched has moved past any stamp taken before the write's bump was
//!    seen here.
//! 3. An entry's stamp was taken *before* its query ran. If that stamp equals the
//!    current one after the sync, no change was detected since; any write whose bump was
//!    seen before the stamp had committed before the query started. So the rows are at
//!    least as new as every write returned before the read began.
//! 4. An L2 hit compares the entry's remote generations, stored with it at fill time
//!    (taken before its query), with the current remote ones read in the same round
//!    trip as the value (one pipeline). Equal means no bump since: the same argument.
//!    Its rows are promoted to memory under the local stamp taken while that reply was
//!    applied, and only if the reply was not older than what this process had already
//!    seen: otherwise that stamp would include a change the rows predate (a reply sent
//!    earlier can arrive after one sent later; `tests/redis_freshness.rs` caught this).
//! 5. A bump that could not reach Redis (down, paused, full) is recorded; until a later
//!    call has bumped the shared epoch (which every stamp includes), every sync of this
//!    process fails closed and nothing is served from any tier. The epoch bump rides in
//!    the same pipeline as the first sync that reaches Redis again.
//! 6. Redis losing its data (restart without persistence, `FLUSHALL`, eviction of the
//!    hash) shows as a new *incarnation* (a random id kept in the hash, created by the
//!    first process that finds it missing): every process that sees a new incarnation
//!    bumps its local epoch, so nothing stamped under the old one is served.
//!
//! What it does not cover: a process that can reach Redis while the *writer* cannot
//! (a partition between the writer and Redis only) may serve the old rows until the
//! writer reaches Redis again (5). Redis restored from a snapshot older than some bumps
//! with the same incarnation is not detected.
//!
//! # Bounded
//!
//! [`Consistency::Bounded`] serves L1 hits without a round trip while the process's
//! view is known to be recent: a subscriber task applies every write's published bumps,
//! and the process publishes a heartbeat of its own every quarter window. Messages on
//! one channel arrive in publish order, so when a heartbeat sent at `s` has been
//! received, every write that returned before `s` has been applied here. An L1 hit at
//! `t` is trusted while such an `s ≥ t − window` exists; otherwise it syncs as in Strict.
//! A stale read is possible only of a write that returned within the last `window`, and
//! only while its message is delayed. After the subscriber (re)connects, its heartbeats
//! count only once a full read of the hash, started after the subscription was live,
//! has been applied (messages published while it was away are lost).

use super::generations::{Generations, RelationSet, Stamp};
use crate::tier::redis::link::{Link, LinkError};
use parking_lot::Mutex;
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// What an L1 (memory) or L3 (disk) hit must prove before it is served when several
/// processes share a Redis tier.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Consistency {
    /// A write that returned in any process is never followed by a stale read in any
    /// process: every hit syncs its read set's generations with Redis first (one round
    /// trip, shared by concurrent hits). Default.
    #[default]
    Strict,
    /// L1 hits trust pub/sub invalidation: served without a round trip while a
    /// heartbeat proves the process has applied every write returned more than `window`
    /// ago; a read may be stale only of writes returned within the last `window`.
    Bounded(Duration),
}

/// How long the first failing bump of an outage retries before the write returns with
/// the failure recorded (module docs, 5).
pub(crate) const BUMP_PATIENCE: Duration = Duration::from_secs(1);

/// The field of the generations hash that holds the incarnation.
pub(crate) const INCARNATION_FIELD: &str = "#incarnation";
/// The field of the global epoch.
pub(crate) const EPOCH_FIELD: &str = "*";

/// The remote counters of one reply: the incarnation and the values of the names asked
/// for (a missing field is 0).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RemoteSnapshot {
    /// `None` when the hash had no incarnation (Redis lost its data, or first use).
    pub incarnation: Option<u64>,
    /// The epoch, then one value per name, in the order asked.
    pub values: Vec<u64>,
    /// `false` when this process had already seen newer values than these: rows read
    /// with this snapshot must not be stamped with the stamp returned beside it.
    pub exact: bool,
}

/// What this process has seen of the remote counters.
///
/// Invariant: for every name in `values`, the local counter of that name was bumped
/// after the value was first seen (under this struct's lock), so a stamp taken after
/// reading `values[name] = v` accounts for every remote bump up to `v`.
#[derive(Debug, Default)]
struct Seen {
    incarnation: Option<u64>,
    values: HashMap<Arc<str>, u64>,
}

/// Where a waiting strict hit hears how its round went.
type RoundReply = tokio::sync::oneshot::Sender<Result<(), Arc<LinkError>>>;

/// Strict hits waiting for a sync, and whether a sync task is running.
#[derive(Default)]
struct Rounds {
    waiting: Vec<(RelationSet, RoundReply)>,
    running: bool,
}

/// The Lua script of a write: bump each name, create the incarnation if it is
/// missing, publish the new values, and return `[incarnation, value…]`.
///
/// A write made outside the cache is heard by every listening process; it names a
/// marker field (`#ext:{relation}`) and the relation's version from the watch triggers,
/// and is bumped only by the first process to report that version: the others get the
/// current values back, unbumped (their detectors still move through them).
/// KEYS[1] = hash; ARGV = channel, process id, incarnation candidate, marker (empty:
/// none), version, names….
const BUMP_SCRIPT: &str = r#"
local inc = redis.call('HGET', KEYS[1], '#incarnation')
if not inc then
  redis.call('HSETNX', KEYS[1], '#incarnation', ARGV[3])
  inc = redis.call('HGET', KEYS[1], '#incarnation')
end
local out = {inc}
if ARGV[4] ~= '' then
  local last = tonumber(redis.call('HGET', KEYS[1], ARGV[4]) or '-1')
  if tonumber(ARGV[5]) <= last then
    for i = 6, #ARGV do
      out[#out + 1] = tonumber(redis.call('HGET', KEYS[1], ARGV[i]) or '0')
    end
    return out
  end
  redis.call('HSET', KEYS[1], ARGV[4], ARGV[5])
end
local bumped = {}
for i = 6, #ARGV do
  local v = redis.call('HINCRBY', KEYS[1], ARGV[i], 1)
  out[#out + 1] = v
  bumped[ARGV[i]] = v
end
redis.call('PUBLISH', ARGV[1], cjson.encode({p = ARGV[2], i = inc, b = bumped}))
return out
"#;

/// The shared-generation protocol of one cache (see the module docs).
///
/// Lock order: `seen` before the local registry's lock (taken inside
/// [`Generations::relation_set`]); `rounds` is never held with another lock, and no
/// lock is held across an `.await`.
pub(crate) struct SharedGenerations {
    link: Link,
    consistency: Consistency,
    bump_script: redis::Script,
    seen: Mutex<Seen>,
    rounds: Mutex<Rounds>,
    /// Bumps that failed to reach Redis, and how many of them a successful epoch
    /// bump has covered. `failed > repaired` means: fail closed until repaired.
    failed_bumps: AtomicU64,
    repaired_bumps: AtomicU64,
    /// Bounded mode: L1 is trusted until this instant (ns since `base`).
    trusted_until: AtomicU64,
    base: Instant,
    process_id: String,
}

impl std::fmt::Debug for SharedGenerations {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedGenerations")
            .field("link", &self.link)
            .field("consistency", &self.consistency)
            .finish_non_exhaustive()
    }
}

impl SharedGenerations {
    pub(crate) fn new(link: Link, consistency: Consistency) -> Self {
        SharedGenerations {
            link,
            consistency,
            bump_script: redis::Script::new(BUMP_SCRIPT),
            seen: Mutex::default(),
            rounds: Mutex::default(),
            failed_bumps: AtomicU64::new(0),
            repaired_bumps: AtomicU64::new(0),
            trusted_until: AtomicU64::new(0),
            base: Instant::now(),
            process_id: format!("{:016x}", rand::random::<u64>()),
        }
    }

    pub(crate) fn link(&self) -> &Link {
        &self.link
    }

    fn now_ns(&self) -> u64 {
        u64::try_from(self.base.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    /// Bounded mode: `true` while a heartbeat proves this process's detectors are at
    /// most `window` behind. Always `false` in Strict mode.
    pub(crate) fn trusted(&self) -> bool {
        matches!(self.consistency, Consistency::Bounded(_))
            && self.now_ns() < self.trusted_until.load(Ordering::Acquire)
            && !self.needs_repair()
    }

    fn needs_repair(&self) -> bool {
        self.failed_bumps.load(Ordering::Acquire) > self.repaired_bumps.load(Ordering::Acquire)
    }

    /// Learn remote values: bump the local counter of every name whose remote value
    /// moved since last seen (all of them, through the epoch, on a new incarnation).
    /// `values` pairs names with remote values; the epoch is [`EPOCH_FIELD`].
    pub(crate) fn apply<'a>(
        &self,
        generations: &Generations,
        incarnation: u64,
        values: impl IntoIterator<Item = (&'a str, u64)>,
    ) {
        let mut seen = self.seen.lock();
        Self::apply_locked(&mut seen, generations, incarnation, values);
    }

    /// [`Self::apply`], then the local stamp of `set` taken under the same lock, and
    /// whether that stamp stands for *exactly* these remote values. It does not when
    /// this process had already seen newer values than the reply carries (another
    /// reply, sent later, arrived first): then the stamp includes changes that rows
    /// read with this reply may predate, and must not be given to them (it is still a
    /// valid stamp to take *before* running a query).
    fn apply_and_stamp<'a>(
        &self,
        generations: &Generations,
        incarnation: u64,
        values: impl IntoIterator<Item = (&'a str, u64)>,
        set: &RelationSet,
    ) -> (Stamp, bool) {
        let mut seen = self.seen.lock();
        let behind = Self::apply_locked(&mut seen, generations, incarnation, values);
        (generations.stamp(set), !behind)
    }

    /// Returns `true` when some value was older than the one already seen.
    fn apply_locked<'a>(
        seen: &mut Seen,
        generations: &Generations,
        incarnation: u64,
        values: impl IntoIterator<Item = (&'a str, u64)>,
    ) -> bool {
        if seen.incarnation != Some(incarnation) {
            // First contact, or Redis lost its state: nothing stamped before compares.
            seen.incarnation = Some(incarnation);
            seen.values.clear();
            generations.bump_epoch();
        }
        let mut moved: Vec<&str> = Vec::new();
        let mut epoch_moved = false;
        let mut behind = false;
        for (name, value) in values {
            match seen.values.get(name) {
                Some(old) if *old >= value => behind |= *old > value,
                _ => {
                    seen.values.insert(Arc::from(name), value);
                    if name == EPOCH_FIELD {
                        epoch_moved = true;
                    } else {
                        moved.push(name);
                    }
                }
            }
        }
        if !moved.is_empty() {
            generations.bump(&generations.relation_set(moved));
        }
        if epoch_moved {
            generations.bump_epoch();
        }
        behind
    }

    /// The pipeline commands that read `names`' remote values (with the epoch and the
    /// incarnation), preceded by the shared-epoch bump that repairs failed bumps when
    /// one is owed. Returns the failed-bump count the repair covers.
    fn push_read(&self, pipe: &mut redis::Pipeline, names: &[Arc<str>]) -> Option<u64> {
        let gen_key = self.link.generations_key();
        let repair = self.needs_repair().then(|| {
            let failed = self.failed_bumps.load(Ordering::Acquire);
            pipe.cmd("HINCRBY")
                .arg(&gen_key)
                .arg(EPOCH_FIELD)
                .arg(1)
                .ignore();
            failed
        });
        let cmd = pipe
            .cmd("HMGET")
            .arg(&gen_key)
            .arg(INCARNATION_FIELD)
            .arg(EPOCH_FIELD);
        for name in names {
            cmd.arg(&**name);
        }
        repair
    }

    /// After a reply to [`Self::push_read`]: record the repair, apply the values, and
    /// create the incarnation when the hash has none (then the reply proves nothing:
    /// the caller treats it as failed).
    fn finish_read(
        &self,
        generations: &Generations,
        set: &RelationSet,
        repair: Option<u64>,
        reply: Vec<Option<u64>>,
    ) -> Result<(RemoteSnapshot, Stamp), LinkError> {
        if let Some(failed) = repair {
            self.repaired_bumps.fetch_max(failed, Ordering::AcqRel);
        }
        let incarnation = reply.first().copied().flatten();
        let values: Vec<u64> = reply.iter().skip(1).map(|v| v.unwrap_or(0)).collect();
        let Some(inc) = incarnation else {
            return Err(LinkError::Redis(redis::RedisError::from((
                redis::ErrorKind::Client,
                "generations hash has no incarnation",
            ))));
        };
        let epoch = values.first().copied().unwrap_or(0);
        let pairs = std::iter::once((EPOCH_FIELD, epoch)).chain(
            set.names()
                .iter()
                .map(|n| &**n)
                .zip(values.iter().skip(1).copied()),
        );
        let (stamp, exact) = self.apply_and_stamp(generations, inc, pairs, set);
        Ok((
            RemoteSnapshot {
                incarnation,
                values,
                exact,
            },
            stamp,
        ))
    }

    /// Create the incarnation when the hash has none (first use, or Redis lost its
    /// data): `HSETNX`, so of racing processes the first one's id wins.
    async fn create_incarnation(&self) -> Result<(), LinkError> {
        let mut cmd = redis::cmd("HSETNX");
        cmd.arg(self.link.generations_key())
            .arg(INCARNATION_FIELD)
            .arg(rand::random::<u64>() >> 1);
        self.link.command::<i64>(&cmd).await.map(|_| ())
    }

    /// One round trip: optionally GET `entry_key`, and read the remote values of
    /// `set`'s names, applying them to the local detectors. Returns the entry's bytes,
    /// the remote snapshot (epoch first, then the names in order) and the local stamp
    /// of `set` that stands for that snapshot.
    ///
    /// # Errors
    /// When Redis did not answer, or answered without an incarnation (the hash was lost;
    /// a new incarnation has been created and nothing can be judged from this reply).
    pub(crate) async fn read(
        &self,
        generations: &Generations,
        set: &RelationSet,
        entry_key: Option<&str>,
    ) -> Result<(Option<Vec<u8>>, RemoteSnapshot, Stamp), LinkError> {
        let mut created = false;
        loop {
            let mut pipe = redis::pipe();
            if let Some(key) = entry_key {
                pipe.cmd("GET").arg(key);
            }
            let repair = self.push_read(&mut pipe, set.names());
            let (bytes, reply): (Option<Vec<u8>>, Vec<Option<u64>>) = if entry_key.is_some() {
                self.link.pipeline(&pipe).await?
            } else {
                let (reply,): (Vec<Option<u64>>,) = self.link.pipeline(&pipe).await?;
                (None, reply)
            };
            if reply.first().copied().flatten().is_none() && !created {
                // No incarnation: create it and read again (once).
                self.create_incarnation().await?;
                created = true;
                continue;
            }
            let (snapshot, stamp) = self.finish_read(generations, set, repair, reply)?;
            return Ok((bytes, snapshot, stamp));
        }
    }

    /// Strict: make the local detectors of `set` current as of a Redis read sent after
    /// this call began. Concurrent calls share round trips: a caller joins the next
    /// round that has not been sent yet.
    ///
    /// # Errors
    /// When the round's Redis read failed; the caller must not serve a hit.
    pub(crate) async fn sync(
        self: &Arc<Self>,
        generations: &Arc<Generations>,
        set: &RelationSet,
    ) -> Result<(), Arc<LinkError>> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let spawn = {
            let mut rounds = self.rounds.lock();
            rounds.waiting.push((set.clone(), tx));
            !std::mem::replace(&mut rounds.running, true)
        };
        if spawn {
            tokio::spawn(Arc::clone(self).run_rounds(Arc::clone(generations)));
        }
        match rx.await {
            Ok(result) => result,
            Err(_) => Err(Arc::new(LinkError::Timeout(self.link.timeout()))),
        }
    }

    /// Send rounds until no caller waits.
    async fn run_rounds(self: Arc<Self>, generations: Arc<Generations>) {
        loop {
            let batch = {
                let mut rounds = self.rounds.lock();
                if rounds.waiting.is_empty() {
                    rounds.running = false;
                    return;
                }
                std::mem::take(&mut rounds.waiting)
            };
            let names: Vec<&str> = batch
                .iter()
                .flat_map(|(set, _)| set.names().iter().map(|n| &**n))
                .collect();
            let union = generations.relation_set(names);
            let result = self
                .read(&generations, &union, None)
                .await
                .map(|_| ())
                .map_err(Arc::new);
            for (_, tx) in batch {
                let _ = tx.send(result.clone());
            }
        }
    }

    /// A write's remote bump: `names` (and the epoch when `everything`) in one script
    /// that also publishes them; for a write made outside the cache, `external` names
    /// the relation and its watch version, and only the first process to report that
    /// version bumps. Applied to the local detectors before it returns. A
    /// failure is recorded so that this process fails closed until the shared epoch has
    /// been bumped (module docs, 5).
    ///
    /// # Errors
    /// When Redis did not answer; the write itself still succeeded.
    pub(crate) async fn bump(
        &self,
        generations: &Generations,
        names: &[Arc<str>],
        everything: bool,
        external: Option<(&str, i64)>,
    ) -> Result<(), LinkError> {
        let mut invocation = self.bump_script.prepare_invoke();
        let (marker, version) = match external {
            Some((relation, version)) => (format!("#ext:{relation}"), version),
            None => (String::new(), 0),
        };
        invocation
            .key(self.link.generations_key())
            .arg(self.link.channel())
            .arg(&self.process_id)
            .arg(rand::random::<u64>() >> 1)
            .arg(marker)
            .arg(version);
        for name in names {
            invocation.arg(&**name);
        }
        // The repair rides only on the cache's own writes: an external write another
        // process already reported returns without bumping anything.
        if everything || (external.is_none() && self.needs_repair()) {
            invocation.arg(EPOCH_FIELD);
        }
        let failed_before = self.failed_bumps.load(Ordering::Acquire);
        // A bump that timed out may still run later, after the write returned: so the
        // first failure of an outage is retried until `BUMP_PATIENCE` has passed. Once a
        // failure is recorded, later writes try once: the repair covers them.
        let patient = !self.needs_repair();
        let deadline = Instant::now() + BUMP_PATIENCE;
        let mut backoff = Duration::from_millis(5);
        let mut connection_result = loop {
            match self.invoke(&invocation).await {
                Ok(reply) => break Ok(reply),
                Err(err) if !patient || Instant::now() + backoff >= deadline => break Err(err),
                Err(_) => {
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_millis(100));
                }
            }
        };
        if let Ok(reply) = &connection_result {
            if reply.len() < 1 + names.len() {
                connection_result = Err(LinkError::Redis(redis::RedisError::from((
                    redis::ErrorKind::Parse,
                    "bump script returned too few values",
                ))));
            } else if reply.len() > 1 + names.len() && external.is_none() {
                self.repaired_bumps
                    .fetch_max(failed_before, Ordering::AcqRel);
            }
        }
        match connection_result {
            Ok(reply) => {
                let incarnation = reply[0];
                let mut pairs: Vec<(&str, u64)> = names
                    .iter()
                    .map(|n| &**n)
                    .zip(reply[1..].iter().copied())
                    .collect();
                if reply.len() > 1 + names.len() {
                    pairs.push((EPOCH_FIELD, reply[1 + names.len()]));
                }
                self.apply(generations, incarnation, pairs);
                Ok(())
            }
            Err(err) => {
                self.failed_bumps.fetch_add(1, Ordering::AcqRel);
                Err(err)
            }
        }
    }

    async fn invoke(
        &self,
        invocation: &redis::ScriptInvocation<'_>,
    ) -> Result<Vec<u64>, LinkError> {
        self.link.script(invocation).await
    }
}

/// A message on the invalidation channel: a write's bumps (`b`) or a heartbeat (`h`).
#[derive(Debug, serde::Deserialize)]
struct Message {
    /// The publishing process.
    p: String,
    /// Incarnation (bumps only; a string in the hash, a string here).
    #[serde(default)]
    i: Option<String>,
    /// Bumped names and their new values (bumps only). An empty Lua table encodes as
    /// `{}`, never `[]`, because the script always bumps at least one name.
    #[serde(default)]
    b: Option<HashMap<String, u64>>,
    /// Heartbeat send time, ns since the sender's `base` (heartbeats only).
    #[serde(default)]
    t: Option<u64>,
}

impl SharedGenerations {
    /// Bounded mode: the subscriber task (applies other processes' bumps, extends the
    /// trust on this process's own heartbeats) and the heartbeat task. Both end when
    /// the cache is dropped. Does nothing in Strict mode.
    pub(crate) fn spawn_bounded_tasks(self: &Arc<Self>, generations: &Arc<Generations>) {
        let Consistency::Bounded(window) = self.consistency else {
            return;
        };
        let period = (window / 4).max(Duration::from_millis(1));
        tokio::spawn(subscriber(
            Arc::downgrade(self),
            Arc::downgrade(generations),
            window,
        ));
        tokio::spawn(heartbeat(Arc::downgrade(self), period));
    }

    /// Read the whole hash and apply it: after a (re)subscription, the messages
    /// published while this process was not subscribed are lost.
    async fn resync(&self, generations: &Generations) -> Result<(), LinkError> {
        let mut cmd = redis::cmd("HGETALL");
        cmd.arg(self.link.generations_key());
        let all: HashMap<String, u64> = self.link.command(&cmd).await?;
        let Some(incarnation) = all.get(INCARNATION_FIELD).copied() else {
            // Nothing shared yet (or lost): create it; the next resync reads it.
            self.create_incarnation().await?;
            return Err(LinkError::Redis(redis::RedisError::from((
                redis::ErrorKind::Client,
                "generations hash had no incarnation; recreated",
            ))));
        };
        self.apply(
            generations,
            incarnation,
            all.iter()
                .filter(|(k, _)| k.as_str() != INCARNATION_FIELD)
                .map(|(k, v)| (k.as_str(), *v)),
        );
        Ok(())
    }

    fn on_message(
        &self,
        generations: &Generations,
        synced_at: u64,
        window: Duration,
        payload: &[u8],
    ) {
        let Ok(message) = serde_json::from_slice::<Message>(payload) else {
            tracing::debug!("querycache: ignoring an unreadable invalidation message");
            return;
        };
        if let (Some(bumped), Some(inc)) = (&message.b, &message.i) {
            if message.p != self.process_id {
                match inc.parse::<u64>() {
                    Ok(inc) => self.apply(
                        generations,
                        inc,
                        bumped.iter().map(|(k, v)| (k.as_str(), *v)),
                    ),
                    // Unreadable incarnation: stop trusting until the next resync.
                    Err(_) => self.trusted_until.store(0, Ordering::Release),
                }
            }
        } else if let Some(sent) = message.t
            && message.p == self.process_id
            && sent >= synced_at
        {
            let until = sent.saturating_add(u64::try_from(window.as_nanos()).unwrap_or(u64::MAX));
            self.trusted_until.fetch_max(until, Ordering::AcqRel);
        }
    }
}

async fn subscriber(
    shared: std::sync::Weak<SharedGenerations>,
    generations: std::sync::Weak<Generations>,
    window: Duration,
) {
    use futures_util::StreamExt;
    loop {
        let (Some(s), Some(g)) = (shared.upgrade(), generations.upgrade()) else {
            return;
        };
        let timeout = s.link.timeout().max(Duration::from_millis(250));
        let channel = s.link.channel();
        let connected = tokio::time::timeout(timeout, async {
            let mut pubsub = s.link.client().get_async_pubsub().await?;
            pubsub.subscribe(&channel).await?;
            Ok::<_, redis::RedisError>(pubsub)
        })
        .await;
        let pubsub = match connected {
            Ok(Ok(pubsub)) => pubsub,
            Ok(Err(err)) => {
                tracing::debug!("querycache: invalidation subscriber cannot connect: {err}");
                drop((s, g));
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            }
            Err(_) => {
                drop((s, g));
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            }
        };
        // Subscribed: only heartbeats sent after a full read that began now count.
        let synced_at = s.now_ns();
        if let Err(err) = s.resync(&g).await {
            tracing::debug!("querycache: invalidation resync failed: {err}");
            drop((s, g));
            tokio::time::sleep(Duration::from_millis(200)).await;
            continue;
        }
        drop((s, g));
        let mut messages = pubsub.into_on_message();
        while let Some(message) = messages.next().await {
            let (Some(s), Some(g)) = (shared.upgrade(), generations.upgrade()) else {
                return;
            };
            s.on_message(&g, synced_at, window, message.get_payload_bytes());
        }
        // The connection ended: stop trusting at once rather than at the window's end.
        if let Some(s) = shared.upgrade() {
            s.trusted_until.store(0, Ordering::Release);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn heartbeat(shared: std::sync::Weak<SharedGenerations>, period: Duration) {
    let mut ticks = tokio::time::interval(period);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        let Some(s) = shared.upgrade() else {
            return;
        };
        let payload = format!(r#"{{"p":"{}","t":{}}}"#, s.process_id, s.now_ns());
        let mut cmd = redis::cmd("PUBLISH");
        cmd.arg(s.link.channel()).arg(payload);
        if let Err(err) = s.link.command::<i64>(&cmd).await {
            tracing::debug!("querycache: heartbeat failed: {err}");
        }
    }
}
