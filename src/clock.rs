//! Time as an input. Timestamps come from a [`Clock`]; waits and deadlines
//! use tokio's clock (`tokio::time`), so a test on a paused runtime
//! (`tokio::time::pause`, `advance`) moves both together.

use chrono::{DateTime, TimeDelta, Utc};

/// Where "now" comes from.
#[derive(Debug, Clone, Copy, Default)]
pub enum Clock {
    /// The system's wall clock (production).
    #[default]
    System,
    /// Wall time that advances with tokio's clock from `base`: on a paused
    /// runtime it stands still until the test advances it.
    Tokio {
        base: DateTime<Utc>,
        start: tokio::time::Instant,
    },
}

impl Clock {
    /// A clock that follows tokio's time from `base` (for tests on a paused
    /// runtime). Must be called inside a runtime.
    pub fn tokio_from(base: DateTime<Utc>) -> Clock {
        Clock::Tokio {
            base,
            start: tokio::time::Instant::now(),
        }
    }

    /// The current time.
    pub fn now(&self) -> DateTime<Utc> {
        match self {
            Clock::System => Utc::now(),
            Clock::Tokio { base, start } => {
                let d = tokio::time::Instant::now().duration_since(*start);
                TimeDelta::from_std(d)
                    .ok()
                    .and_then(|d| base.checked_add_signed(d))
                    .unwrap_or(*base)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test(start_paused = true)]
    async fn a_tokio_clock_moves_only_with_tokio_time() {
        let base = DateTime::from_timestamp(1_800_000_000, 0).expect("a valid time");
        let c = Clock::tokio_from(base);
        assert_eq!(c.now(), base);
        tokio::time::advance(Duration::from_secs(90)).await;
        assert_eq!(c.now(), base + TimeDelta::seconds(90));
    }
}
