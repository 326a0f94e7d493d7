//! Per-key rate limits: requests per minute and tokens (prompt + completion) per minute, over
//! a sliding 60-second window.
//!
//! A request is admitted when the key made fewer than `requests_per_minute` requests and used
//! fewer than `tokens_per_minute` tokens in the last 60 seconds. Tokens are recorded as they
//! are produced (the prompt when its generation starts, then one per generated token), so a
//! running generation counts at once; it is never cut short, so a key can overshoot its token
//! limit by what its admitted requests generate, and then waits until the window has room
//! again. A refusal says how many whole seconds until the request would be admitted (the
//! `Retry-After` header).
//!
//! The limiter is a plain value: every method takes `now`, so tests drive the clock.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

/// The window.
pub const WINDOW: Duration = Duration::from_secs(60);
/// Additions closer together than this share one entry (bounded memory per key).
const BUCKET: Duration = Duration::from_secs(1);

/// Limits per key; `None` is unlimited.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Limits {
    /// Requests per minute.
    pub requests_per_minute: Option<u64>,
    /// Prompt + completion tokens per minute.
    pub tokens_per_minute: Option<u64>,
}

/// Which limit refused a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LimitKind {
    /// Requests per minute.
    Requests,
    /// Tokens per minute.
    Tokens,
}

impl LimitKind {
    /// `requests` or `tokens` (OpenAI's error `type` for rate limits).
    pub fn as_str(self) -> &'static str {
        match self {
            LimitKind::Requests => "requests",
            LimitKind::Tokens => "tokens",
        }
    }
}

/// A refusal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Exceeded {
    /// Which limit.
    pub kind: LimitKind,
    /// The limit per minute.
    pub limit: u64,
    /// Used in the last minute.
    pub used: u64,
    /// Until the request would be admitted.
    pub retry_after: Duration,
}

impl Exceeded {
    /// `retry_after` in whole seconds, rounded up, at least 1.
    pub fn retry_after_secs(&self) -> u64 {
        let s = self.retry_after.as_secs() + u64::from(self.retry_after.subsec_nanos() > 0);
        s.max(1)
    }
}

/// Amounts inside the window, oldest first: `(first, last, amount)` per bucket of additions
/// at most [`BUCKET`] after its first; a bucket leaves the window [`WINDOW`] after its last
/// addition (late, never early).
#[derive(Debug, Default, Clone)]
struct Series {
    entries: VecDeque<(Instant, Instant, u64)>,
    total: u64,
}

impl Series {
    fn expire(&mut self, now: Instant) {
        while let Some(&(_, last, n)) = self.entries.front() {
            if now.saturating_duration_since(last) >= WINDOW {
                self.entries.pop_front();
                self.total -= n;
            } else {
                break;
            }
        }
    }

    fn add(&mut self, now: Instant, n: u64) {
        if n == 0 {
            return;
        }
        self.total += n;
        match self.entries.back_mut() {
            Some((first, last, m)) if now.saturating_duration_since(*first) < BUCKET => {
                *last = (*last).max(now);
                *m += n;
            }
            _ => self.entries.push_back((now, now, n)),
        }
    }

    /// How long until at most `allowed` remain in the window.
    fn wait_until_at_most(&self, now: Instant, allowed: u64) -> Duration {
        let mut remaining = self.total;
        for &(_, last, n) in &self.entries {
            if remaining <= allowed {
                break;
            }
            remaining -= n;
            if remaining <= allowed {
                return (last + WINDOW).saturating_duration_since(now);
            }
        }
        Duration::ZERO
    }
}

#[derive(Debug, Default, Clone)]
struct KeyWindow {
    requests: Series,
    tokens: Series,
}

impl KeyWindow {
    fn expire(&mut self, now: Instant) {
        self.requests.expire(now);
        self.tokens.expire(now);
    }

    fn is_empty(&self) -> bool {
        self.requests.total == 0 && self.tokens.total == 0
    }
}

/// The limiter of every key.
#[derive(Debug)]
pub struct Limiter {
    limits: Limits,
    keys: HashMap<String, KeyWindow>,
    last_sweep: Option<Instant>,
}

impl Limiter {
    /// A limiter applying `limits` to each key.
    pub fn new(limits: Limits) -> Self {
        Self {
            limits,
            keys: HashMap::new(),
            last_sweep: None,
        }
    }

    /// The limits.
    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// Admits a request of `key` at `now` and counts it, or says which limit refuses it.
    pub fn admit(&mut self, key: &str, now: Instant) -> Result<(), Exceeded> {
        self.sweep(now);
        let limits = self.limits;
        let w = self.window(key, now);
        if let Some(limit) = limits.requests_per_minute
            && w.requests.total + 1 > limit
        {
            return Err(Exceeded {
                kind: LimitKind::Requests,
                limit,
                used: w.requests.total,
                retry_after: w.requests.wait_until_at_most(now, limit.saturating_sub(1)),
            });
        }
        if let Some(limit) = limits.tokens_per_minute
            && w.tokens.total >= limit
        {
            return Err(Exceeded {
                kind: LimitKind::Tokens,
                limit,
                used: w.tokens.total,
                retry_after: w.tokens.wait_until_at_most(now, limit.saturating_sub(1)),
            });
        }
        w.requests.add(now, 1);
        Ok(())
    }

    /// Counts `n` tokens of `key` at `now`.
    pub fn record_tokens(&mut self, key: &str, n: u64, now: Instant) {
        if self.limits.tokens_per_minute.is_some() {
            self.window(key, now).tokens.add(now, n);
        }
    }

    /// Requests and tokens of `key` in the window ending at `now`.
    pub fn used(&mut self, key: &str, now: Instant) -> (u64, u64) {
        match self.keys.get_mut(key) {
            Some(w) => {
                w.expire(now);
                (w.requests.total, w.tokens.total)
            }
            None => (0, 0),
        }
    }

    /// How many keys have something in their window (or did at the last sweep).
    pub fn tracked_keys(&self) -> usize {
        self.keys.len()
    }

    fn window(&mut self, key: &str, now: Instant) -> &mut KeyWindow {
        if !self.keys.contains_key(key) {
            self.keys.insert(key.to_string(), KeyWindow::default());
        }
        let w = self
            .keys
            .get_mut(key)
            .unwrap_or_else(|| unreachable!("inserted above"));
        w.expire(now);
        w
    }

    /// Forgets keys with nothing in their window, once a window.
    fn sweep(&mut self, now: Instant) {
        match self.last_sweep {
            Some(t) if now.saturating_duration_since(t) < WINDOW => {}
            _ => {
                self.keys.retain(|_, w| {
                    w.expire(now);
                    !w.is_empty()
                });
                self.last_sweep = Some(now);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    #[test]
    fn requests_per_minute_slide() {
        let t0 = Instant::now();
        let mut l = Limiter::new(Limits {
            requests_per_minute: Some(3),
            tokens_per_minute: None,
        });
        assert!(l.admit("a", t0).is_ok());
        assert!(l.admit("a", t0 + secs(10)).is_ok());
        assert!(l.admit("a", t0 + secs(20)).is_ok());
        let e = l.admit("a", t0 + secs(30)).unwrap_err();
        assert_eq!(e.kind, LimitKind::Requests);
        assert_eq!((e.limit, e.used), (3, 3));
        // The first request leaves the window at t0 + 60.
        assert_eq!(e.retry_after, secs(30));
        assert_eq!(e.retry_after_secs(), 30);
        // A refused request is not counted; other keys are independent.
        assert_eq!(l.used("a", t0 + secs(30)), (3, 0));
        assert!(l.admit("b", t0 + secs(30)).is_ok());
        assert!(l.admit("a", t0 + secs(59)).is_err());
        assert!(l.admit("a", t0 + secs(60)).is_ok());
        let e = l.admit("a", t0 + secs(61)).unwrap_err();
        assert_eq!(e.retry_after, secs(9));
    }

    #[test]
    fn tokens_per_minute_count_prompt_and_completion() {
        let t0 = Instant::now();
        let mut l = Limiter::new(Limits {
            requests_per_minute: None,
            tokens_per_minute: Some(100),
        });
        assert!(l.admit("a", t0).is_ok());
        l.record_tokens("a", 40, t0); // prompt
        for i in 0..30 {
            l.record_tokens("a", 1, t0 + Duration::from_millis(100 * i)); // completion
        }
        assert_eq!(l.used("a", t0 + secs(5)), (1, 70));
        assert!(l.admit("a", t0 + secs(5)).is_ok());
        l.record_tokens("a", 50, t0 + secs(6)); // overshoot: 120
        let e = l.admit("a", t0 + secs(7)).unwrap_err();
        assert_eq!(e.kind, LimitKind::Tokens);
        assert_eq!((e.limit, e.used), (100, 120));
        // Below the limit again once the first second's 40 + 10 tokens leave the window
        // (one bucket, whose last addition was at t0 + 0.9 s).
        assert_eq!(
            e.retry_after,
            secs(60) + Duration::from_millis(900) - secs(7)
        );
        assert_eq!(e.retry_after_secs(), 54);
        assert!(
            l.admit("a", t0 + secs(60) + Duration::from_millis(900))
                .is_ok()
        );
    }

    #[test]
    fn retry_after_is_never_zero_and_unlimited_is_unlimited() {
        let e = Exceeded {
            kind: LimitKind::Requests,
            limit: 1,
            used: 1,
            retry_after: Duration::ZERO,
        };
        assert_eq!(e.retry_after_secs(), 1);
        let t0 = Instant::now();
        let mut l = Limiter::new(Limits::default());
        for i in 0..1000 {
            assert!(l.admit("a", t0 + Duration::from_millis(i)).is_ok());
            l.record_tokens("a", 1000, t0);
        }
    }

    #[test]
    fn idle_keys_are_forgotten() {
        let t0 = Instant::now();
        let mut l = Limiter::new(Limits {
            requests_per_minute: Some(10),
            tokens_per_minute: Some(10),
        });
        for k in 0..100 {
            assert!(l.admit(&format!("ip:{k}"), t0).is_ok());
        }
        assert_eq!(l.tracked_keys(), 100);
        assert!(l.admit("late", t0 + secs(61)).is_ok());
        assert_eq!(l.tracked_keys(), 1);
    }
}
