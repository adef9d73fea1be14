//! Single-flight: concurrent misses for one key run one query.
//!
//! The first caller to [`SingleFlight::join`] a key becomes the [`Leader`] and runs the
//! query; callers that join while it runs become [`Follower`]s and wait for its value.
//!
//! # Concurrent calls on the same key
//!
//! - The leader's value is handed to every follower (`V` is cheap to clone: the cache
//!   uses an `Arc`).
//! - A leader that fails calls [`Leader::fail`]: followers learn
//!   [`Outcome::Failed`] and each run their own query, so every caller gets the
//!   database's own error object, exactly as plain sqlx returns it. (moka instead shares
//!   one `Arc<Error>`; sqlx errors are not `Clone`, and a rebuilt error would not
//!   downcast to `PgDatabaseError`. An error costs one round trip per waiter, as without
//!   a cache.)
//! - A leader whose future is dropped (cancelled) before finishing drops its
//!   [`Leader`]: the flight is removed and followers learn [`Outcome::Abandoned`], so
//!   they retry (one of them becomes the next leader) instead of hanging.
//!
//! No lock is held across an `.await`: the map's mutex guards only insert and remove.

use parking_lot::Mutex;
use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::hash::Hash;
use std::sync::atomic::{AtomicU64, Ordering};
use tokio::sync::watch;

/// What a follower learns when its flight ends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome<V> {
    /// The leader's value.
    Value(V),
    /// The leader's query failed; run your own.
    Failed,
    /// The leader was cancelled before finishing; join again.
    Abandoned,
}

#[derive(Debug, Clone)]
enum State<V> {
    Running,
    Done(Option<V>),
}

/// A flight in the table: the leader's id and a receiver to hand to followers.
type Flight<V> = (u64, watch::Receiver<State<V>>);

/// The table of flights in progress, keyed by `K`.
#[derive(Debug)]
pub struct SingleFlight<K, V> {
    flights: Mutex<HashMap<K, Flight<V>>>,
    next_id: AtomicU64,
}

impl<K, V> Default for SingleFlight<K, V> {
    fn default() -> Self {
        SingleFlight {
            flights: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(0),
        }
    }
}

/// The role a caller got from [`SingleFlight::join`].
#[derive(Debug)]
pub enum Join<'a, K: Hash + Eq + Clone, V: Clone> {
    /// Run the query, then [`Leader::complete`] or [`Leader::fail`].
    Leader(Leader<'a, K, V>),
    /// Wait for the leader with [`Follower::wait`].
    Follower(Follower<V>),
}

/// The caller that runs the query for a key. Dropping it without completing abandons
/// the flight (followers retry).
#[derive(Debug)]
pub struct Leader<'a, K: Hash + Eq + Clone, V: Clone> {
    owner: &'a SingleFlight<K, V>,
    key: K,
    id: u64,
    sender: watch::Sender<State<V>>,
}

/// A caller waiting for a leader.
#[derive(Debug)]
pub struct Follower<V> {
    receiver: watch::Receiver<State<V>>,
}

impl<K: Hash + Eq + Clone, V: Clone> SingleFlight<K, V> {
    /// A table with no flights.
    pub fn new() -> Self {
        Self::default()
    }

    /// Lead the flight for `key`, or follow the one in progress.
    pub fn join(&self, key: K) -> Join<'_, K, V> {
        let mut flights = self.flights.lock();
        match flights.entry(key.clone()) {
            Entry::Occupied(e) => Join::Follower(Follower {
                receiver: e.get().1.clone(),
            }),
            Entry::Vacant(e) => {
                let id = self.next_id.fetch_add(1, Ordering::Relaxed);
                let (sender, receiver) = watch::channel(State::Running);
                e.insert((id, receiver));
                Join::Leader(Leader {
                    owner: self,
                    key,
                    id,
                    sender,
                })
            }
        }
    }

    /// Flights in progress.
    pub fn len(&self) -> usize {
        self.flights.lock().len()
    }

    /// `true` when no flight is in progress.
    pub fn is_empty(&self) -> bool {
        self.flights.lock().is_empty()
    }

    fn remove(&self, key: &K, id: u64) {
        let mut flights = self.flights.lock();
        if flights.get(key).is_some_and(|(current, _)| *current == id) {
            flights.remove(key);
        }
    }
}

impl<K: Hash + Eq + Clone, V: Clone> Leader<'_, K, V> {
    /// Hand `value` to every follower and end the flight.
    pub fn complete(self, value: V) {
        self.finish(Some(value));
    }

    /// Tell followers the query failed (each runs its own) and end the flight.
    pub fn fail(self) {
        self.finish(None);
    }

    fn finish(self, value: Option<V>) {
        self.owner.remove(&self.key, self.id);
        self.sender.send_replace(State::Done(value));
        // Drop runs `remove` again: harmless, the id no longer matches.
    }
}

impl<K: Hash + Eq + Clone, V: Clone> Drop for Leader<'_, K, V> {
    fn drop(&mut self) {
        // Completed or cancelled: either way this flight is over. Dropping `sender`
        // after this wakes followers still in `Running` with a closed channel.
        self.owner.remove(&self.key, self.id);
    }
}

impl<V: Clone> Follower<V> {
    /// Wait for the leader's outcome. Cancel-safe: dropping this future only drops a
    /// receiver.
    pub async fn wait(mut self) -> Outcome<V> {
        match self
            .receiver
            .wait_for(|s| matches!(s, State::Done(_)))
            .await
        {
            Ok(state) => match &*state {
                State::Done(Some(v)) => Outcome::Value(v.clone()),
                State::Done(None) => Outcome::Failed,
                State::Running => unreachable!("wait_for returned a Done state"),
            },
            Err(_) => Outcome::Abandoned,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::time::Duration;

    #[tokio::test]
    async fn followers_get_the_leaders_value_and_the_flight_ends() {
        let sf: SingleFlight<u32, Arc<str>> = SingleFlight::new();
        let Join::Leader(leader) = sf.join(1) else {
            panic!("first joiner leads")
        };
        let followers: Vec<_> = (0..5)
            .map(|_| match sf.join(1) {
                Join::Follower(f) => tokio::spawn(f.wait()),
                Join::Leader(_) => panic!("a flight is in progress"),
            })
            .collect();
        assert!(
            matches!(sf.join(2), Join::Leader(_)),
            "other keys are independent"
        );
        leader.complete(Arc::from("rows"));
        for f in followers {
            assert_eq!(f.await.expect("join"), Outcome::Value(Arc::from("rows")));
        }
        assert!(sf.is_empty());
        assert!(
            matches!(sf.join(1), Join::Leader(_)),
            "a finished flight is gone"
        );
    }

    #[tokio::test]
    async fn a_failed_leader_tells_followers_to_run_their_own() {
        let sf: SingleFlight<u32, u32> = SingleFlight::new();
        let Join::Leader(leader) = sf.join(1) else {
            panic!()
        };
        let Join::Follower(f) = sf.join(1) else {
            panic!()
        };
        leader.fail();
        assert_eq!(f.wait().await, Outcome::Failed);
    }

    #[tokio::test]
    async fn a_cancelled_leader_does_not_leave_followers_hanging() {
        let sf: Arc<SingleFlight<u32, u32>> = Arc::new(SingleFlight::new());
        let (started_tx, started_rx) = tokio::sync::oneshot::channel();
        let leader_task = {
            let sf = Arc::clone(&sf);
            tokio::spawn(async move {
                let _leader = match sf.join(1) {
                    Join::Leader(l) => l,
                    Join::Follower(_) => panic!("first joiner leads"),
                };
                started_tx.send(()).expect("test alive");
                std::future::pending::<()>().await;
            })
        };
        started_rx.await.expect("leader started");
        let Join::Follower(f) = sf.join(1) else {
            panic!("leader is running")
        };
        let waiting = tokio::spawn(f.wait());
        leader_task.abort();
        let outcome = tokio::time::timeout(Duration::from_secs(5), waiting)
            .await
            .expect("follower woke up")
            .expect("join");
        assert_eq!(outcome, Outcome::Abandoned);
        assert!(
            matches!(sf.join(1), Join::Leader(_)),
            "the next caller leads"
        );
    }
}
