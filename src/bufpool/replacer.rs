//! Victim selection: a free list, then a small probationary FIFO in front of a clock
//! sweep.
//!
//! Empty frames (all of them at first) are used before any page is evicted. A page
//! brought in enters the probationary FIFO with usage count 0 (its loader's pin
//! does not count as a use). When the FIFO holds more than a tenth of the frames, the
//! oldest entry is judged: used again meanwhile (usage > 0) → promoted, it stays and
//! from now on only the clock hand can evict it; otherwise it is the victim. Only when
//! the FIFO is short does the clock sweep run: PostgreSQL's `StrategyGetBuffer` (skip
//! pinned frames, decrement a positive usage count, take the first frame at 0; usage
//! counts are capped at 5, `BM_MAX_USAGE_COUNT`).
//!
//! The split is S3-FIFO's small/main queue (Yang et al., SOSP'23; 10 % small queue):
//! a scan's pages pass through the FIFO and are evicted from it without moving the
//! clock hand, so a scan of any length does not age the hot set. With the clock alone,
//! every scan miss moves the hand and a long scan drains the usage counts of hot pages.

use super::StorageError;
use super::frame::{DIRTY, LOCKED, State, VALID};
use super::pool::Inner;
use parking_lot::{Mutex, RwLockReadGuard};
use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

pub(crate) struct Replacer {
    /// The clock hand: the next frame the sweep looks at (modulo the frame count).
    hand: AtomicUsize,
    /// Empty frames and the probationary FIFO; one mutex, taken only on a miss.
    queues: Mutex<Queues>,
    /// FIFO length above which the oldest entry is judged before the clock runs.
    target: usize,
}

struct Queues {
    /// Frames that were empty (state 0) when pushed; an entry the sweep has reused
    /// since is skipped.
    free: Vec<u32>,
    /// Frames brought in and not yet judged, oldest first, with the page each was
    /// brought in for (an entry whose frame now holds another page is stale).
    probation: VecDeque<(u32, u64)>,
}

impl Replacer {
    pub(crate) fn new(frames: usize) -> Self {
        let frames = u32::try_from(frames).expect("PoolConfig::validate caps frames below 2^32");
        Self {
            hand: AtomicUsize::new(0),
            queues: Mutex::new(Queues {
                free: (0..frames).rev().collect(),
                probation: VecDeque::with_capacity(frames as usize / 10 + 2),
            }),
            target: (frames as usize / 10).max(1),
        }
    }

    /// Puts a frame just brought in for `page` on probation.
    pub(crate) fn admit(&self, frame: u32, page: u64) {
        self.queues.lock().probation.push_back((frame, page));
    }

    /// Ends every probation (after `evict_all`: the frames it emptied would otherwise
    /// look current again once reused for the same page).
    pub(crate) fn clear_probation(&self) {
        self.queues.lock().probation.clear();
    }

    /// Returns a frame the caller has just emptied (state 0) to the free list.
    pub(crate) fn release(&self, frame: u32) {
        self.queues.lock().free.push(frame);
    }
}

/// Held while a dirty victim is written (see `Inner::eviction_writes`).
type Gate<'a> = Option<RwLockReadGuard<'a, ()>>;

impl Inner {
    /// A frame to reuse: `LOCKED`, pin count 0, its old page (if any) written if dirty
    /// and unmapped. When every frame is pinned, backs off and retries until the pin
    /// wait runs out.
    ///
    /// # Errors
    /// [`StorageError::PoolExhausted`]; a write error from evicting a dirty page.
    pub(crate) fn claim_victim(&self) -> Result<u32, StorageError> {
        let mut since: Option<Instant> = None;
        let mut pause = Duration::from_micros(20);
        loop {
            let found = match self.take_free().or_else(|| self.take_probationary(false)) {
                Some(found) => Some(found),
                None => self.sweep().or_else(|| self.take_probationary(true)),
            };
            if let Some((frame, state, gate)) = found {
                self.evict(frame, state)?;
                drop(gate);
                return Ok(frame);
            }
            let started = *since.get_or_insert_with(Instant::now);
            if started.elapsed() >= self.config.pin_wait {
                return Err(self.exhausted(started));
            }
            std::thread::sleep(pause);
            pause = (pause * 2).min(Duration::from_millis(1));
        }
    }

    /// Sets `LOCKED` on `frame` if it is still in state `s`; for a dirty frame, first
    /// takes the eviction-write gate so a concurrent flush waits for the write.
    fn lock_victim(&self, frame: u32, s: State) -> Option<Gate<'_>> {
        let gate = s.is(DIRTY).then(|| self.eviction_writes.read());
        self.frames[frame as usize]
            .state
            .compare_exchange(s.0, s.0 | LOCKED, Ordering::Acquire, Ordering::Relaxed)
            .ok()
            .map(|_| gate)
    }

    /// An empty frame from the free list.
    fn take_free(&self) -> Option<(u32, State, Gate<'_>)> {
        loop {
            let frame = self.replacer.queues.lock().free.pop()?;
            if let Some(gate) = self.lock_victim(frame, State(0)) {
                return Some((frame, State(0), gate));
            }
        }
    }

    /// The oldest unused probationary frame, if the FIFO is over its target (or at all,
    /// with `any`). Promoted and stale entries are dropped on the way; pinned ones go to
    /// the back.
    fn take_probationary(&self, any: bool) -> Option<(u32, State, Gate<'_>)> {
        loop {
            let (frame, s) = {
                let mut queues = self.replacer.queues.lock();
                let queue = &mut queues.probation;
                let mut budget = queue.len();
                loop {
                    if budget == 0 || !(any || queue.len() > self.replacer.target) {
                        return None;
                    }
                    budget -= 1;
                    let (frame, page) = queue.pop_front()?;
                    let s = self.frames[frame as usize].load();
                    let current = s.page() == Some(page) && s.is(VALID) && !s.is(LOCKED);
                    if !current || s.usage() > 0 {
                        continue; // stale, or promoted to the clock
                    }
                    if s.pins() > 0 {
                        queue.push_back((frame, page));
                        continue;
                    }
                    break (frame, s);
                }
            };
            // The entry is out of the FIFO; if the frame changed meanwhile it was used
            // (promoted) or taken by the sweep, so look at the next one.
            if let Some(gate) = self.lock_victim(frame, s) {
                return Some((frame, s, gate));
            }
        }
    }

    /// One clock sweep: at most one revolution without finding an unpinned frame (the
    /// budget resets whenever a usage count is decremented, as in PostgreSQL).
    fn sweep(&self) -> Option<(u32, State, Gate<'_>)> {
        let n = self.frames.len();
        let mut budget = n;
        while budget > 0 {
            let index = self.replacer.hand.fetch_add(1, Ordering::Relaxed) % n;
            let frame = &self.frames[index];
            let s = frame.load();
            if s.pins() > 0 || s.is(LOCKED) {
                budget -= 1;
                continue;
            }
            if s.usage() > 0 {
                let _ = frame.state.compare_exchange(
                    s.0,
                    s.cooled(),
                    Ordering::Relaxed,
                    Ordering::Relaxed,
                );
                budget = n;
                continue;
            }
            if let Some(gate) = self.lock_victim(index as u32, s) {
                return Some((index as u32, s, gate));
            }
        }
        None
    }
}
