//! Time arithmetic of the planners, saturating: a deadline past the end of time is the end of
//! time, and a duration to a moment already past is zero. The planners have no clock; `now` is
//! always an argument.

use std::time::Duration;

use k8s_openapi::jiff::{SignedDuration, Timestamp};

/// `t + d`, or the end of time if that overflows.
pub fn after(t: Timestamp, d: Duration) -> Timestamp {
    SignedDuration::try_from(d).ok().and_then(|d| t.checked_add(d).ok()).unwrap_or(Timestamp::MAX)
}

/// How long from `now` until `t`; zero once `t` is reached.
pub fn until(now: Timestamp, t: Timestamp) -> Duration {
    if t <= now { Duration::ZERO } else { now.duration_until(t).unsigned_abs() }
}

/// How long since `t` at `now`; zero if `t` is in the future.
pub fn since(t: Timestamp, now: Timestamp) -> Duration {
    until(t, now)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deadlines_saturate_at_the_end_of_time_and_waits_are_never_negative() {
        let t = Timestamp::from_second(1_000).unwrap();
        assert_eq!(after(t, Duration::from_secs(5)), Timestamp::from_second(1_005).unwrap());
        assert_eq!(after(t, Duration::MAX), Timestamp::MAX);
        assert_eq!(after(Timestamp::MAX, Duration::from_secs(1)), Timestamp::MAX);
        let later = Timestamp::from_second(1_010).unwrap();
        assert_eq!(until(t, later), Duration::from_secs(10));
        assert_eq!(until(later, t), Duration::ZERO);
        assert_eq!(since(t, later), Duration::from_secs(10));
        assert_eq!(since(later, t), Duration::ZERO);
    }
}
