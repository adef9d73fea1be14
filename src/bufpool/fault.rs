//! [`FaultyFile`]: a [`PageFile`] wrapper that fails chosen operations, for tests
//! (redb's fuzzer backend and `CrashBackend` are the model).

use super::PageFile;
use parking_lot::Mutex;
use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// One injected failure.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Fault {
    /// A write returns an error and leaves the file untouched.
    FailWrite,
    /// The first half of a write reaches the file, then it returns an error: a torn page.
    TornWrite,
    /// An `fdatasync` returns an error.
    FailSync,
    /// A read fills only the first half of the buffer yet reports success: storage that
    /// lies. The page checksum is what must catch it.
    ShortRead,
    /// A read returns an error (`EIO` from a failing device).
    FailRead,
}

impl Fault {
    fn op(self) -> Op {
        match self {
            Fault::FailWrite | Fault::TornWrite => Op::Write,
            Fault::FailSync => Op::Sync,
            Fault::ShortRead | Fault::FailRead => Op::Read,
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Op {
    Read,
    Write,
    Sync,
}

#[derive(Default)]
struct Faults {
    /// Armed faults with the number of matching operations still to let through.
    armed: Mutex<Vec<(Fault, u64)>>,
    reads: AtomicU64,
    writes: AtomicU64,
    syncs: AtomicU64,
    fired: AtomicU64,
}

impl Faults {
    /// Counts `op` and returns the fault that fires on it, if any.
    fn next(&self, op: Op) -> Option<Fault> {
        let counter = match op {
            Op::Read => &self.reads,
            Op::Write => &self.writes,
            Op::Sync => &self.syncs,
        };
        counter.fetch_add(1, Ordering::Relaxed);
        let mut armed = self.armed.lock();
        let mut fired = None;
        armed.retain_mut(|(fault, countdown)| {
            if fault.op() != op || fired.is_some() {
                return true;
            }
            if *countdown == 0 {
                fired = Some(*fault);
                return false;
            }
            *countdown -= 1;
            true
        });
        if fired.is_some() {
            self.fired.fetch_add(1, Ordering::Relaxed);
        }
        fired
    }
}

/// A [`PageFile`] that forwards to `F` except where a [`Fault`] was armed through its
/// [`FaultHandle`]. Faults are one-shot: the operation after a failed one succeeds
/// again, so a test sees whether the *pool* keeps the file failed (it must).
pub struct FaultyFile<F> {
    inner: F,
    faults: Arc<Faults>,
}

/// Arms faults on a [`FaultyFile`] and reads its operation counts. Cloning is shallow.
#[derive(Clone)]
pub struct FaultHandle(Arc<Faults>);

impl<F: PageFile> FaultyFile<F> {
    /// Wraps `inner`; nothing fails until a fault is armed.
    pub fn new(inner: F) -> (Self, FaultHandle) {
        let faults = Arc::new(Faults::default());
        let handle = FaultHandle(Arc::clone(&faults));
        (Self { inner, faults }, handle)
    }
}

impl FaultHandle {
    /// Arms `fault` to fire on the `(after + 1)`-th matching operation from now
    /// (`after = 0`: the next one). Reads match [`Fault::ShortRead`] and
    /// [`Fault::FailRead`], writes
    /// [`Fault::FailWrite`] and [`Fault::TornWrite`], syncs [`Fault::FailSync`].
    pub fn arm(&self, fault: Fault, after: u64) {
        self.0.armed.lock().push((fault, after));
    }

    /// Reads issued so far (including failed ones).
    pub fn reads(&self) -> u64 {
        self.0.reads.load(Ordering::Relaxed)
    }

    /// Writes issued so far (including failed ones).
    pub fn writes(&self) -> u64 {
        self.0.writes.load(Ordering::Relaxed)
    }

    /// `fdatasync` calls issued so far (including failed ones).
    pub fn syncs(&self) -> u64 {
        self.0.syncs.load(Ordering::Relaxed)
    }

    /// Faults that have fired.
    pub fn fired(&self) -> u64 {
        self.0.fired.load(Ordering::Relaxed)
    }
}

fn injected(what: &str) -> io::Error {
    io::Error::other(format!("injected fault: {what}"))
}

impl<F: PageFile> PageFile for FaultyFile<F> {
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        match self.faults.next(Op::Read) {
            Some(Fault::FailRead) => Err(injected("failed read")),
            Some(_) => {
                let half = buf.len() / 2;
                self.inner.read_exact_at(&mut buf[..half], offset)
            }
            None => self.inner.read_exact_at(buf, offset),
        }
    }

    fn write_all_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        match self.faults.next(Op::Write) {
            Some(Fault::TornWrite) => {
                self.inner.write_all_at(&buf[..buf.len() / 2], offset)?;
                Err(injected("torn write"))
            }
            Some(_) => Err(injected("failed write")),
            None => self.inner.write_all_at(buf, offset),
        }
    }

    fn sync_data(&self) -> io::Result<()> {
        match self.faults.next(Op::Sync) {
            Some(_) => Err(injected("failed fdatasync")),
            None => self.inner.sync_data(),
        }
    }
}
