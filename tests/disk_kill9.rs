//! `kill -9` during write-back: a child process (this test binary, re-run with an
//! environment variable) writes entries continuously — background write-back, dirty
//! evictions from a small pool, and a flush every 100 puts, after each of which it
//! prints the last key that is now durable. The parent kills it with SIGKILL at an
//! arbitrary moment, reopens the store, and checks that every entry reported durable is
//! served byte-exact and that every other entry served is byte-exact too (values are
//! derived from their key, so any served value can be checked). Three rounds on the
//! same directory: each recovery also has to cope with the previous crashes.

mod disk_support;

use disk_support::verify;
use querycache::tier::disk::DiskStore;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

const CHILD_DIR: &str = "QUERYCACHE_KILL9_CHILD_DIR";
const CHILD_ROUND: &str = "QUERYCACHE_KILL9_CHILD_ROUND";
const TEST_NAME: &str = "kill_9_during_write_back_leaves_only_whole_entries";
const ROUNDS: u64 = 3;
const MAX_PUTS: u64 = 50_000;

fn open(dir: &Path) -> DiskStore {
    DiskStore::builder(1 << 30)
        .with_page_size(8192)
        .with_pool_bytes(1 << 20)
        .open(dir)
        .expect("open store")
}

fn key(round: u64, i: u64) -> u128 {
    u128::from(round) << 64 | u128::from(i)
}

fn put(store: &DiskStore, key: u128, i: u64) {
    let len = 100 + (i as usize * 7919) % 30_000;
    disk_support::put(store, key, 1, len, i.is_multiple_of(4)).expect("put");
}

/// The child: writes until killed (or until a bound it never reaches in practice).
fn child(dir: &Path, round: u64) {
    let store = open(dir);
    let started = Instant::now();
    for i in 0..MAX_PUTS {
        put(&store, key(round, i), i);
        if i % 100 == 99 {
            store.flush().expect("flush");
            println!("durable {i}");
        }
        if started.elapsed() > Duration::from_secs(60) {
            break;
        }
    }
}

#[test]
fn kill_9_during_write_back_leaves_only_whole_entries() {
    if let (Ok(dir), Ok(round)) = (std::env::var(CHILD_DIR), std::env::var(CHILD_ROUND)) {
        child(Path::new(&dir), round.parse().expect("round"));
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let mut durable = Vec::new();
    for round in 0..ROUNDS {
        let mut child = Command::new(std::env::current_exe().expect("test binary"))
            .args(["--exact", TEST_NAME, "--nocapture", "--test-threads=1"])
            .env(CHILD_DIR, dir.path())
            .env(CHILD_ROUND, round.to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn child");
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, rx) = mpsc::channel();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(i) = line.strip_prefix("durable ") {
                    let _ = tx.send(i.parse::<u64>().expect("durable line"));
                }
            }
        });
        // Let it flush a few batches, then kill it at a moment that differs per round.
        let mut last = None;
        for _ in 0..(3 + round * 2) {
            last = Some(
                rx.recv_timeout(Duration::from_secs(60))
                    .expect("child makes progress"),
            );
        }
        std::thread::sleep(Duration::from_millis(7 * round + 3));
        child.kill().expect("SIGKILL");
        let status = child.wait().expect("reap child");
        assert!(!status.success(), "the child was killed, it did not finish");
        reader.join().expect("reader");
        // Lines printed after a flush returned are guarantees even if read after the kill.
        last = rx.try_iter().last().or(last);
        durable.push(last.expect("at least one durable line"));

        let store = open(dir.path());
        for (r, &up_to) in durable.iter().enumerate() {
            for i in 0..=up_to + 2_000 {
                let key = key(r as u64, i);
                match store.get(key).expect("get") {
                    Some(entry) => assert_eq!(verify(key, &entry), 1),
                    None => assert!(
                        i > up_to,
                        "round {r}: key {i} reported durable (up to {up_to}) but lost"
                    ),
                }
            }
        }
        store.validate().expect("invariants after recovery");
        drop(store);
    }
}
