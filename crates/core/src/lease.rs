//! The leader-election decision, pure: given the Lease as read, what this candidate saw of it
//! before and the time, take it, renew it, or wait. Expiry is judged by how long the record
//! stayed unchanged *by our own clock* (a monotonic instant passed in), never by comparing
//! another host's timestamps with ours.

use std::time::{Duration, Instant};

use k8s_openapi::jiff::Timestamp;

/// How long a Lease is valid without renewal.
pub const LEASE_DURATION: Duration = Duration::from_secs(15);
/// How often the holder renews.
pub const RENEW_INTERVAL: Duration = Duration::from_secs(5);
/// How often a standby looks at the Lease (client-go's retry period): a held Lease is taken
/// over at most this long after it expired.
pub const RETRY_INTERVAL: Duration = Duration::from_secs(2);
/// A holder that could not renew for this long stops acting, well before a standby may take
/// over (`LEASE_DURATION` after the last renewal it saw).
pub const RENEW_DEADLINE: Duration = Duration::from_secs(10);

/// The fields of a Lease the decision reads.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LeaseRecord {
    /// Who holds it (`None` or empty: released).
    pub holder: Option<String>,
    /// The holder's last renewal, as it wrote it.
    pub renew_time: Option<Timestamp>,
    /// How long it is valid without renewal.
    pub duration: Option<Duration>,
    /// When the current holder acquired it.
    pub acquire_time: Option<Timestamp>,
    /// How many times it changed hands.
    pub transitions: i32,
}

/// The record this candidate last saw, and when by its own clock.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Observed {
    holder: String,
    renew_time: Option<Timestamp>,
    since: Instant,
}

/// What to do with the Lease.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LeaseDecision {
    /// No Lease exists: create it, held by us.
    Create,
    /// Write it as ours (renew ours, or take a released or expired one).
    Write(LeaseRecord),
    /// Someone else holds a live Lease: stand by.
    Wait,
}

/// Decides one election attempt. `observed` is updated with what was seen.
pub fn decide(
    lease: Option<&LeaseRecord>,
    me: &str,
    observed: &mut Option<Observed>,
    now: Timestamp,
    clock: Instant,
) -> LeaseDecision {
    let Some(lease) = lease else { return LeaseDecision::Create };
    let holder = lease.holder.clone().unwrap_or_default();
    let unchanged =
        observed.as_ref().is_some_and(|o| o.holder == holder && o.renew_time == lease.renew_time);
    if !unchanged {
        *observed =
            Some(Observed { holder: holder.clone(), renew_time: lease.renew_time, since: clock });
    }
    let duration = lease.duration.unwrap_or(LEASE_DURATION);
    let expired =
        observed.as_ref().is_some_and(|o| clock.saturating_duration_since(o.since) >= duration);
    let mine = holder == me;
    if !mine && !holder.is_empty() && !expired {
        return LeaseDecision::Wait;
    }
    LeaseDecision::Write(LeaseRecord {
        holder: Some(me.to_string()),
        renew_time: Some(now),
        duration: Some(LEASE_DURATION),
        acquire_time: if mine { lease.acquire_time.or(Some(now)) } else { Some(now) },
        transitions: lease.transitions + i32::from(!mine),
    })
}

/// A holder whose last successful renewal is this old must stop acting.
pub fn must_step_down(last_renewal: Instant, clock: Instant) -> bool {
    clock.saturating_duration_since(last_renewal) >= RENEW_DEADLINE
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: i64) -> Timestamp {
        Timestamp::from_second(1_700_000_000 + s).unwrap()
    }

    fn held_by(holder: &str, renewed: i64) -> LeaseRecord {
        LeaseRecord {
            holder: Some(holder.into()),
            renew_time: Some(at(renewed)),
            duration: Some(LEASE_DURATION),
            acquire_time: Some(at(0)),
            transitions: 3,
        }
    }

    #[test]
    fn without_a_lease_the_candidate_creates_one() {
        let mut seen = None;
        assert_eq!(decide(None, "me", &mut seen, at(0), Instant::now()), LeaseDecision::Create);
    }

    #[test]
    fn a_live_lease_of_another_is_waited_on_until_it_stays_unchanged_for_its_duration() {
        let start = Instant::now();
        let mut seen = None;
        let other = held_by("other", 0);
        assert_eq!(decide(Some(&other), "me", &mut seen, at(0), start), LeaseDecision::Wait);
        let later = start + Duration::from_secs(14);
        assert_eq!(decide(Some(&other), "me", &mut seen, at(14), later), LeaseDecision::Wait);
        let expired = start + LEASE_DURATION;
        let LeaseDecision::Write(taken) = decide(Some(&other), "me", &mut seen, at(15), expired)
        else {
            panic!("an unchanged lease expires")
        };
        assert_eq!(taken.holder.as_deref(), Some("me"));
        assert_eq!(taken.transitions, 4, "it changed hands");
        assert_eq!(taken.acquire_time, Some(at(15)));
    }

    #[test]
    fn a_renewal_seen_restarts_the_expiry_clock_whatever_the_holders_clock_says() {
        let start = Instant::now();
        let mut seen = None;
        decide(Some(&held_by("other", 0)), "me", &mut seen, at(0), start);
        // The holder renewed with a timestamp far in our past (its clock is behind): still live.
        let renewed = held_by("other", -1000);
        let later = start + Duration::from_secs(10);
        assert_eq!(decide(Some(&renewed), "me", &mut seen, at(10), later), LeaseDecision::Wait);
        let almost = later + Duration::from_secs(14);
        assert_eq!(decide(Some(&renewed), "me", &mut seen, at(24), almost), LeaseDecision::Wait);
    }

    #[test]
    fn our_own_lease_is_renewed_and_keeps_its_acquire_time() {
        let mut seen = None;
        let LeaseDecision::Write(renewed) =
            decide(Some(&held_by("me", 0)), "me", &mut seen, at(5), Instant::now())
        else {
            panic!("ours is renewed")
        };
        assert_eq!(renewed.acquire_time, Some(at(0)));
        assert_eq!(renewed.renew_time, Some(at(5)));
        assert_eq!(renewed.transitions, 3, "no change of hands");
    }

    #[test]
    fn a_released_lease_is_taken_at_once() {
        let mut seen = None;
        let released = LeaseRecord { holder: None, renew_time: None, ..held_by("x", 0) };
        assert!(matches!(
            decide(Some(&released), "me", &mut seen, at(1), Instant::now()),
            LeaseDecision::Write(_)
        ));
    }

    #[test]
    fn a_holder_that_cannot_renew_steps_down_before_a_standby_may_take_over() {
        let renewed = Instant::now();
        assert!(!must_step_down(renewed, renewed + Duration::from_secs(9)));
        assert!(must_step_down(renewed, renewed + RENEW_DEADLINE));
        assert!(RENEW_DEADLINE < LEASE_DURATION);
    }
}
