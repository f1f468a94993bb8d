//! The work queue: keys (`namespace/name`) waiting for a pass. A key waits at most once and
//! never runs on two workers at once (offered while running, it runs again after). A failed
//! pass puts the key back after 1 s × 2^(n−1), capped at 5 min, ±20 % jitter; success resets n.

use std::collections::{HashMap, HashSet, VecDeque};
use std::hash::{BuildHasher, RandomState};
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

const BASE: Duration = Duration::from_secs(1);
const CAP: Duration = Duration::from_secs(300);

#[derive(Default)]
struct State {
    ready: VecDeque<String>,
    queued: HashSet<String>,
    running: HashSet<String>,
    // Offered while running: run again after.
    again: HashSet<String>,
    delayed: HashMap<String, Instant>,
    failures: HashMap<String, u32>,
}

/// What a pass asks of the queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum After {
    /// Done: forget the failures.
    Done,
    /// Failed: again after the key's backoff.
    Retry,
}

#[derive(Default)]
pub(crate) struct Queue {
    state: Mutex<State>,
    wake: Condvar,
}

impl Queue {
    /// Queues `key` now (a delayed retry is brought forward).
    pub(crate) fn offer(&self, key: &str) {
        let mut s = self.lock();
        if s.running.contains(key) {
            s.again.insert(key.to_string());
            return;
        }
        s.delayed.remove(key);
        if s.queued.insert(key.to_string()) {
            s.ready.push_back(key.to_string());
            self.wake.notify_one();
        }
    }

    /// The next key to work on; blocks until there is one.
    pub(crate) fn next(&self) -> String {
        let mut s = self.lock();
        loop {
            let now = Instant::now();
            let due: Vec<String> = s
                .delayed
                .iter()
                .filter(|(_, at)| **at <= now)
                .map(|(k, _)| k.clone())
                .collect();
            for key in due {
                s.delayed.remove(&key);
                if !s.running.contains(&key) && s.queued.insert(key.clone()) {
                    s.ready.push_back(key);
                }
            }
            if let Some(key) = s.ready.pop_front() {
                s.queued.remove(&key);
                s.running.insert(key.clone());
                return key;
            }
            let wait = s
                .delayed
                .values()
                .min()
                .map(|at| at.saturating_duration_since(now))
                .unwrap_or(Duration::from_secs(3600));
            s = self
                .wake
                .wait_timeout(s, wait)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }

    /// Ends the pass of `key`; returns the failure count when it is to be retried.
    pub(crate) fn done(&self, key: &str, after: After) -> u32 {
        let mut s = self.lock();
        s.running.remove(key);
        let failures = match after {
            After::Done => {
                s.failures.remove(key);
                0
            }
            After::Retry => {
                let n = s.failures.entry(key.to_string()).or_insert(0);
                *n += 1;
                let n = *n;
                s.delayed
                    .insert(key.to_string(), Instant::now() + backoff(n, key));
                n
            }
        };
        if s.again.remove(key) {
            s.delayed.remove(key);
            if s.queued.insert(key.to_string()) {
                s.ready.push_back(key.to_string());
            }
        }
        self.wake.notify_all();
        failures
    }

    /// The wait before the next try of `key`, as `done` just set it.
    pub(crate) fn retry_in(&self, key: &str) -> Option<Duration> {
        let s = self.lock();
        s.delayed
            .get(key)
            .map(|at| at.saturating_duration_since(Instant::now()))
    }

    /// Keys waiting now (ready or delayed): `workqueue_depth`.
    pub(crate) fn depth(&self) -> usize {
        let s = self.lock();
        s.ready.len() + s.delayed.len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// 1 s × 2^(n−1), capped at 5 min, ±20 % jitter.
pub(crate) fn backoff(n: u32, salt: &str) -> Duration {
    let exp = BASE
        .saturating_mul(1 << n.saturating_sub(1).min(16))
        .min(CAP);
    jitter(exp, salt)
}

/// `d` ± 20 %.
pub(crate) fn jitter(d: Duration, salt: &str) -> Duration {
    let r = RandomState::new().hash_one(salt) % 401; // 0..=400 → -20.0 %..+20.0 %
    let millis = d.as_millis() as u64;
    Duration::from_millis(millis * (800 + r) / 1000)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_waits_once_and_runs_again_after_an_offer_while_running() {
        let q = Queue::default();
        q.offer("a/x");
        q.offer("a/x");
        q.offer("a/y");
        assert_eq!(q.depth(), 2);
        assert_eq!(q.next(), "a/x");
        q.offer("a/x");
        assert_eq!(q.next(), "a/y");
        q.done("a/x", After::Done);
        assert_eq!(q.next(), "a/x");
        assert_eq!(q.done("a/x", After::Retry), 1);
        assert!(q.retry_in("a/x").is_some());
        q.offer("a/x");
        assert_eq!(q.next(), "a/x", "an offer brings a retry forward");
    }

    #[test]
    fn backoff_doubles_to_the_cap_with_jitter() {
        for (n, secs) in [(1, 1.0), (2, 2.0), (4, 8.0), (20, 300.0)] {
            let d = backoff(n, "k").as_secs_f64();
            assert!(
                d >= secs * 0.8 - 0.001 && d <= secs * 1.2 + 0.001,
                "{n}: {d}"
            );
        }
    }
}
