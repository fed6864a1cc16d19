//! When an answer stops being useful.

use std::time::{Duration, Instant};

/// The moment a request must be answered by, with the budget it was given
/// (for the error message).
#[derive(Clone, Copy, Debug)]
pub struct Deadline {
    pub at: Instant,
    pub budget: Duration,
}

impl Deadline {
    /// `budget` from `start` (e.g. a request's arrival).
    pub fn from(start: Instant, budget: Duration) -> Self {
        Deadline {
            at: start + budget,
            budget,
        }
    }

    /// `budget` from now.
    pub fn after(budget: Duration) -> Self {
        Deadline::from(Instant::now(), budget)
    }

    /// When the budget started (the request's arrival).
    pub fn started(&self) -> Instant {
        self.at.checked_sub(self.budget).unwrap_or(self.at)
    }

    pub(crate) fn tokio(&self) -> tokio::time::Instant {
        tokio::time::Instant::from_std(self.at)
    }
}
