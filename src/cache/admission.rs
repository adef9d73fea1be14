//! Adaptive admission: a statement shape whose cached results are invalidated before
//! they are ever hit stops being filled, and is admitted again once its results
//! outlive the writes to its read set.
//!
//! Filling costs a weigh (a MessagePack pass over the rows), an allocation, an insert
//! that may evict, and with a byte tier an encode and a write; a result that a write
//! invalidates before any read hits it repays none of that. Under a write-heavy mix
//! (issue 10: 50 % `UPDATE … WHERE k = $1` on the table a read joins) nearly every
//! fill is such a waste.
//!
//! # The rule
//!
//! Each shape (the normalizer's `Analysis::shape`: all texts and binds of one
//! statement) keeps a window of *outcomes* of its filled results:
//!
//! - **useful**: an entry's first hit;
//! - **wasted**: a lookup found the entry invalidated (its stamp moved) and it was
//!   never hit, or a fill was refused because a write moved the stamp while the query
//!   ran.
//!
//! After [`WINDOW`] outcomes the shape is *rejected* when fewer than one in
//! [`REJECT_BELOW`] was useful. A rejected shape is filled only on every
//! [`PROBE_EVERY`]-th attempt (a *probe*); once [`READMIT_AFTER`] probes (or leftover
//! entries) were hit before being invalidated, the shape is admitted again: its write
//! rate has fallen below its read rate. Skipped fills are counted
//! ([`Stats::fills_not_admitted`](crate::Stats::fills_not_admitted)), and so are
//! rejections ([`Stats::shapes_rejected`](crate::Stats::shapes_rejected)).
//!
//! Admission only decides whether to *store*; it never serves anything, so it cannot
//! make a read stale: every fill, probe or not, still passes the stamp check, and every
//! hit still compares stamps.
//!
//! The thresholds are deliberately low: with the memory tier a fill costs about a
//! microsecond against a database round trip of hundreds, so a shape is worth filling
//! even if only a few of its results are ever hit.

use super::QueryCache;
use super::driver::Driver;
use super::plan::Plan;
use parking_lot::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};

/// Outcomes per decision window.
pub(crate) const WINDOW: u32 = 64;
/// A shape is rejected when fewer than `1 / REJECT_BELOW` of a window's outcomes were
/// useful (with a window of 64: at most one).
pub(crate) const REJECT_BELOW: u32 = 32;
/// A rejected shape still fills one in this many attempts, to learn when to re-admit.
pub(crate) const PROBE_EVERY: u32 = 16;
/// Useful outcomes while rejected that re-admit the shape.
pub(crate) const READMIT_AFTER: u32 = 2;

/// The counts of the current window.
#[derive(Debug, Default)]
struct Window {
    useful: u32,
    wasted: u32,
}

/// One shape's admission state. Shared by every plan of the shape (`Arc`).
///
/// Invariant: `rejected` changes only under the `window` lock; readers of the fast
/// path load it without the lock (a stale read only delays a decision by one fill).
#[derive(Debug, Default)]
pub(crate) struct Admission {
    rejected: AtomicBool,
    /// Fill attempts while rejected (for probing).
    attempts: AtomicU32,
    window: Mutex<Window>,
}

/// What a fill attempt should do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Decision {
    /// Fill.
    Admit,
    /// Fill: a rejected shape's probe.
    Probe,
    /// Do not fill.
    Skip,
}

impl Admission {
    /// Whether the next fill of this shape should be stored.
    pub(crate) fn decide(&self) -> Decision {
        if !self.rejected.load(Ordering::Relaxed) {
            return Decision::Admit;
        }
        let n = self.attempts.fetch_add(1, Ordering::Relaxed);
        if n % PROBE_EVERY == PROBE_EVERY - 1 {
            Decision::Probe
        } else {
            Decision::Skip
        }
    }

    /// `true` while the shape is rejected.
    #[cfg(test)]
    pub(crate) fn is_rejected(&self) -> bool {
        self.rejected.load(Ordering::Relaxed)
    }

    /// An entry of this shape was hit for the first time. Returns `true` when this
    /// re-admitted the shape.
    pub(crate) fn useful(&self) -> bool {
        let mut w = self.window.lock();
        w.useful += 1;
        if self.rejected.load(Ordering::Relaxed) {
            if w.useful >= READMIT_AFTER {
                self.rejected.store(false, Ordering::Relaxed);
                *w = Window::default();
                return true;
            }
            return false;
        }
        self.close_window(&mut w);
        false
    }

    /// An entry of this shape was invalidated before any hit (or its fill was
    /// refused). Returns `true` when this rejected the shape.
    pub(crate) fn wasted(&self) -> bool {
        let mut w = self.window.lock();
        w.wasted += 1;
        if self.rejected.load(Ordering::Relaxed) {
            // Probes that are wasted keep the shape rejected; keep the count bounded.
            w.wasted = w.wasted.min(WINDOW);
            return false;
        }
        self.close_window(&mut w)
    }

    /// At the end of a window: reject when too few outcomes were useful, then start a
    /// new window. Returns `true` when it rejected.
    fn close_window(&self, w: &mut Window) -> bool {
        let total = w.useful + w.wasted;
        if total < WINDOW {
            return false;
        }
        let reject = w.useful * REJECT_BELOW < total;
        *w = Window::default();
        if reject {
            self.attempts.store(0, Ordering::Relaxed);
            self.rejected.store(true, Ordering::Relaxed);
        }
        reject
    }
}

/// The read path's fill check: `true` when `plan`'s shape is admitted (or this fill is
/// a probe); a skipped fill is counted.
pub(super) fn admit<DB: Driver>(cache: &QueryCache<DB>, plan: &Plan) -> bool {
    if !cache.0.config.adaptive_admission {
        return true;
    }
    match plan.admission.decide() {
        Decision::Admit | Decision::Probe => true,
        Decision::Skip => {
            let metrics = &cache.0.metrics;
            metrics.fills_not_admitted.fetch_add(1, Ordering::Relaxed);
            false
        }
    }
}

/// An entry of `plan`'s shape was hit for the first time.
pub(super) fn useful<DB: Driver>(cache: &QueryCache<DB>, plan: &Plan) {
    if plan.admission.useful() {
        let metrics = &cache.0.metrics;
        metrics.shapes_readmitted.fetch_add(1, Ordering::Relaxed);
    }
}

/// A result of `plan`'s shape was invalidated before any hit.
pub(super) fn wasted<DB: Driver>(cache: &QueryCache<DB>, plan: &Plan) {
    if plan.admission.wasted() {
        let metrics = &cache.0.metrics;
        metrics.shapes_rejected.fetch_add(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_shape_always_invalidated_is_rejected_after_one_window() {
        let a = Admission::default();
        for i in 0..WINDOW - 1 {
            assert_eq!(a.decide(), Decision::Admit);
            assert!(!a.wasted(), "rejected early at outcome {i}");
        }
        assert!(a.wasted(), "the window's last waste rejects");
        assert!(a.is_rejected());
    }

    #[test]
    fn a_few_useful_outcomes_keep_a_shape_admitted() {
        let a = Admission::default();
        for round in 0..10 {
            for _ in 0..WINDOW / REJECT_BELOW {
                a.useful();
            }
            for _ in 0..WINDOW - WINDOW / REJECT_BELOW {
                a.wasted();
            }
            assert!(!a.is_rejected(), "round {round}");
        }
    }

    #[test]
    fn a_rejected_shape_probes_and_is_readmitted_by_useful_probes() {
        let a = Admission::default();
        for _ in 0..WINDOW {
            a.wasted();
        }
        assert!(a.is_rejected());
        let decisions: Vec<Decision> = (0..PROBE_EVERY * 2).map(|_| a.decide()).collect();
        let probes = decisions.iter().filter(|d| **d == Decision::Probe).count();
        assert_eq!(probes, 2, "one probe per {PROBE_EVERY} attempts");
        assert!(decisions.iter().all(|d| *d != Decision::Admit));
        // Wasted probes keep it rejected.
        for _ in 0..WINDOW * 2 {
            a.wasted();
        }
        assert!(a.is_rejected());
        assert!(!a.useful());
        assert!(a.useful(), "the second useful probe re-admits");
        assert_eq!(a.decide(), Decision::Admit);
    }
}
