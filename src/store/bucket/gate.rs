//! How many requests of one kind are in flight at once, by how fast the server answers them.
//! A listing or a batched deletion costs a server in proportion to what it covers, and a server
//! that does them one after another (fake-gcs-server walks the whole bucket for every listing;
//! an RGW or a MinIO on busy disks slows under big ones) answers the last of 128 sent at once
//! only after all the others: past the request timeout, when it is cut off and sent again while
//! the server still works on the one abandoned, and the run stalls (BENCHMARKS.md, issue 24).
//! So a kind of request starts with [`START`] in flight, grows by one for each quick answer
//! while others wait for a place (doubling with each round of answers: a server that keeps up
//! soon has the run's whole width), halves for a slow one, and gives up once a request had no
//! answer on any try: every request of the kind then fails at once, with that error, instead of
//! each waiting out the timeout in its turn.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use tokio::sync::Notify;

/// In flight at first, before the server's answers tell how many it takes.
pub const START: usize = 8;

/// The requests of one kind in flight, at most `limit` at once.
pub struct Gate {
    /// An answer slower than this halves the limit: a quarter of the request timeout.
    slow: Duration,
    /// One quicker than this raises it by one: a sixteenth of the timeout.
    quick: Duration,
    /// What the limit may grow to.
    max: usize,
    state: Mutex<State>,
    freed: Notify,
}

struct State {
    limit: usize,
    in_flight: usize,
    /// Requests waiting for a place.
    waiting: usize,
    /// Why every request now fails at once: a request had no answer on any try.
    broken: Option<String>,
}

/// One request let through: held while it is in flight, and told how it went.
pub struct Pass<'g> {
    gate: &'g Gate,
    /// The limit when it was sent: a slow answer halves that, once for all sent with it.
    limit: usize,
    sent: Instant,
    judged: bool,
}

impl Gate {
    /// A gate for requests that the server answers within `timeout` or never.
    pub fn new(timeout: Duration, max: usize) -> Gate {
        let max = max.max(1);
        Gate {
            slow: timeout / 4,
            quick: timeout / 16,
            max,
            state: Mutex::new(State { limit: START.min(max), in_flight: 0, waiting: 0, broken: None }),
            freed: Notify::new(),
        }
    }

    /// Waits for a place; an error once the gate has given up.
    pub async fn enter(&self) -> Result<Pass<'_>, String> {
        let mut me = Waiter { gate: self, counted: false };
        loop {
            let freed = self.freed.notified();
            {
                let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
                if me.counted {
                    s.waiting -= 1;
                    me.counted = false;
                }
                if let Some(why) = &s.broken {
                    return Err(why.clone());
                }
                if s.in_flight < s.limit {
                    s.in_flight += 1;
                    return Ok(Pass { gate: self, limit: s.limit, sent: Instant::now(), judged: false });
                }
                s.waiting += 1;
                me.counted = true;
            }
            freed.await;
        }
    }

    /// A request sent at `limit` came back after `took`.
    fn answered(&self, limit: usize, took: Duration) {
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        s.in_flight -= 1;
        s.limit = self.next(s.limit, limit, s.waiting, took);
        drop(s);
        self.freed.notify_waiters();
    }

    /// The limit after an answer that took `took`, to a request sent at `sent`, `waiting`
    /// others waiting for a place.
    fn next(&self, now: usize, sent: usize, waiting: usize, took: Duration) -> usize {
        if took >= self.slow {
            now.min((sent / 2).max(1))
        } else if took < self.quick && waiting > 0 {
            (now + 1).min(self.max)
        } else {
            now
        }
    }

    /// A request had no answer on any try: every request from now on fails with `why`.
    fn give_up(&self, why: String) {
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        s.in_flight -= 1;
        s.broken.get_or_insert(why);
        drop(s);
        self.freed.notify_waiters();
    }
}

/// A request waiting for a place, counted among those waiting until it has one (or is dropped).
struct Waiter<'g> {
    gate: &'g Gate,
    counted: bool,
}

impl Drop for Waiter<'_> {
    fn drop(&mut self) {
        if self.counted {
            self.gate.state.lock().unwrap_or_else(|e| e.into_inner()).waiting -= 1;
        }
    }
}

impl Pass<'_> {
    /// The request had no answer on any try (`why`): the gate gives up.
    pub fn no_answer(mut self, why: String) {
        self.judged = true;
        self.gate.give_up(why);
    }
}

impl Drop for Pass<'_> {
    /// Answered (or abandoned by its caller): judged by how long it took.
    fn drop(&mut self) {
        if !self.judged {
            self.gate.answered(self.limit, self.sent.elapsed());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TIMEOUT: Duration = Duration::from_secs(120);

    /// `demand` requests want to be in flight; a round of answers, each after `took`: the limit
    /// after it.
    fn round(gate: &Gate, limit: usize, demand: usize, took: Duration) -> usize {
        let sent = limit.min(demand);
        let mut now = limit;
        for _ in 0..sent {
            now = gate.next(now, limit, demand - sent, took);
        }
        now
    }

    #[test]
    fn quick_answers_widen_it_to_the_whole_run() {
        let gate = Gate::new(TIMEOUT, 128);
        let (mut limit, mut rounds) = (START, 0);
        while limit < 128 {
            limit = round(&gate, limit, 128, Duration::from_millis(50));
            rounds += 1;
        }
        // Doubling each round of answers: 8, 16, 32, 64, 128.
        assert_eq!(rounds, 4);
        assert_eq!(round(&gate, limit, 500, Duration::from_millis(50)), 128, "never past its max");
    }

    #[test]
    fn quick_answers_with_none_waiting_leave_it() {
        let gate = Gate::new(TIMEOUT, 128);
        assert_eq!(round(&gate, START, 3, Duration::from_millis(50)), START, "3 at a time says nothing of a 9th");
        assert_eq!(round(&gate, START, START, Duration::from_millis(50)), START);
    }

    #[test]
    fn slow_answers_halve_it_once_for_all_sent_together() {
        let gate = Gate::new(TIMEOUT, 128);
        assert_eq!(round(&gate, 64, 128, Duration::from_secs(40)), 32, "64 slow answers of one round: halved once");
        assert_eq!(round(&gate, 32, 128, Duration::from_secs(40)), 16);
        // Answers between quick and slow leave it where it is.
        assert_eq!(round(&gate, 16, 128, Duration::from_secs(10)), 16);
        let mut limit = 16;
        for _ in 0..10 {
            limit = round(&gate, limit, 128, Duration::from_secs(100));
        }
        assert_eq!(limit, 1, "never below one");
        // A slow answer to a request sent before the limit fell does not halve it again.
        assert_eq!(gate.next(4, 16, 100, Duration::from_secs(40)), 4);
    }

    #[test]
    fn it_lets_through_as_many_as_the_limit() {
        let gate = Gate::new(TIMEOUT, 128);
        futures::executor::block_on(async {
            let passes: Vec<_> = futures::future::join_all((0..START).map(|_| gate.enter())).await;
            assert!(passes.iter().all(|p| p.is_ok()));
            let waiting = gate.enter();
            futures::pin_mut!(waiting);
            assert!(futures::poll!(waiting.as_mut()).is_pending(), "a ninth waits");
            drop(passes);
            assert!(waiting.await.is_ok(), "and goes once a place is free");
        });
    }

    #[test]
    fn no_answer_fails_every_request_after() {
        let gate = Gate::new(TIMEOUT, 128);
        futures::executor::block_on(async {
            let (a, b) = (gate.enter().await.unwrap(), gate.enter().await.unwrap());
            a.no_answer("no answer within 120 s".into());
            drop(b);
            assert_eq!(gate.enter().await.err().as_deref(), Some("no answer within 120 s"));
        });
    }
}
