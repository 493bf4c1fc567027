//! Idle auto-suspend, as a pure decision with the clock as an argument: a set nobody used for
//! `spec.idle.after` is suspended by the operator (its own spec untouched); newer activity
//! resumes it. Activity is the `cocoon.cis/last-activity` stamp (RFC 3339, by watch) and any spec
//! edit. `spec.suspend: true` always wins. The deadline is a timer: nothing is polled.

use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;

use crate::api::{IdleSpec, IdleStatus};
use crate::plan::PlanEvent;

/// What the decision reads.
#[derive(Clone, Debug)]
pub struct IdleInput<'a> {
    /// `spec.idle`.
    pub spec: Option<&'a IdleSpec>,
    /// `spec.suspend`: the user's suspend wins.
    pub user_suspend: bool,
    /// The `cocoon.cis/last-activity` annotation as written (parsed here).
    pub stamp: Option<&'a str>,
    /// What the last status remembers.
    pub previous: Option<&'a IdleStatus>,
    /// The spec changed since the last status (`observedGeneration` differs): activity now.
    pub spec_edited: bool,
    /// When the set was created: the first activity.
    pub created: Option<Timestamp>,
    /// The time of the pass.
    pub now: Timestamp,
}

/// What the decision says.
#[derive(Clone, Debug, PartialEq)]
pub struct IdleDecision {
    /// The operator keeps the set suspended for being idle.
    pub suspended: bool,
    /// The bookkeeping to show in status (`None` without `spec.idle`).
    pub status: Option<IdleStatus>,
    /// Look again then: the idle deadline.
    pub wake_after: Option<Duration>,
    /// An Event when the set goes idle or wakes from idling.
    pub event: Option<PlanEvent>,
    /// A problem with the input (a bad duration or stamp), for the status message.
    pub problem: Option<String>,
}

fn time(t: Timestamp) -> Time {
    Time(t)
}

/// Whole seconds, as times are on the wire: the status written and the status remembered in
/// memory must decide alike.
fn second(t: Timestamp) -> Timestamp {
    Timestamp::from_second(t.as_second()).unwrap_or(t)
}

/// Decides whether the set is idle-suspended now.
pub fn decide_idle(input: &IdleInput<'_>) -> IdleDecision {
    let mut decision = IdleDecision {
        suspended: false,
        status: None,
        wake_after: None,
        event: None,
        problem: None,
    };
    let Some(spec) = input.spec else { return decision };
    let after = match crate::duration::parse_duration(&spec.after) {
        Ok(after) if after >= Duration::from_secs(1) => after,
        Ok(_) => {
            decision.problem = Some(format!(
                "idle.after {:?} is shorter than 1s; idle auto-suspend is off",
                spec.after
            ));
            return decision;
        }
        Err(e) => {
            decision.problem = Some(format!("idle.after: {e}; idle auto-suspend is off"));
            return decision;
        }
    };
    let now = second(input.now);
    let stamp = match input.stamp.map(|s| s.trim().parse::<Timestamp>()) {
        None => None,
        Some(Ok(t)) => Some(second(t)),
        Some(Err(_)) => {
            decision.problem = Some(format!(
                "annotation {}={:?} is not an RFC 3339 time; it is ignored",
                crate::contract::ANN_LAST_ACTIVITY,
                input.stamp.unwrap_or_default()
            ));
            None
        }
    };
    let previous = input.previous.cloned().unwrap_or_default();
    let mut active_since =
        previous.active_since.as_ref().map(|t| t.0).or(input.created).map(second);
    if input.spec_edited || active_since.is_none() {
        active_since = Some(now);
    }
    // The latest activity: a stamp in the future counts as now (clocks differ).
    let last = [active_since, stamp.map(|s| s.min(now))].into_iter().flatten().max();
    let mut status = IdleStatus { active_since: active_since.map(time), suspended_since: None };
    if input.user_suspend {
        decision.status = Some(status);
        return decision;
    }
    let last = last.unwrap_or(now);
    match previous.suspended_since.map(|t| second(t.0)) {
        // Times on the wire have whole seconds: activity in the second the set went idle may
        // have come after it, and wakes it (a wrong wake costs one idle period, a missed one
        // a user waiting).
        Some(since) if last < since => {
            // Still idle: only new activity (by watch) ends it.
            decision.suspended = true;
            status.suspended_since = Some(time(since));
        }
        Some(_) => {
            // Activity since the operator suspended it: resume, and count from now.
            status.active_since = Some(time(now));
            decision.event =
                Some(PlanEvent::normal("IdleResumed", format!("activity at {last}; resuming")));
            decision.wake_after = Some(after);
        }
        None => {
            let deadline = crate::plan::clock::after(last, after);
            if deadline <= input.now {
                decision.suspended = true;
                status.suspended_since = Some(time(now));
                decision.event = Some(PlanEvent::normal(
                    "IdleSuspended",
                    format!(
                        "no activity since {last} ({} ago, idle.after {}); suspending",
                        crate::duration::format_duration(Duration::from_secs(
                            crate::plan::clock::since(last, now).as_secs()
                        )),
                        spec.after
                    ),
                ));
            } else {
                // From the real clock: `now` was cut to the second.
                decision.wake_after = Some(
                    crate::plan::clock::until(input.now, deadline).max(Duration::from_millis(10)),
                );
            }
        }
    }
    decision.status = Some(status);
    decision
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: i64) -> Timestamp {
        Timestamp::from_second(1_700_000_000 + s).unwrap()
    }

    fn idle(after: &str) -> IdleSpec {
        IdleSpec { after: after.into() }
    }

    fn input<'a>(spec: &'a IdleSpec, previous: Option<&'a IdleStatus>, now: i64) -> IdleInput<'a> {
        IdleInput {
            spec: Some(spec),
            user_suspend: false,
            stamp: None,
            previous,
            spec_edited: false,
            created: Some(at(0)),
            now: at(now),
        }
    }

    #[test]
    fn without_idle_nothing_happens_and_nothing_is_shown() {
        let d = decide_idle(&IdleInput { spec: None, ..input(&idle("1m"), None, 1000) });
        assert_eq!(
            d,
            IdleDecision {
                suspended: false,
                status: None,
                wake_after: None,
                event: None,
                problem: None
            }
        );
    }

    #[test]
    fn a_set_unused_for_the_idle_period_is_suspended_at_the_deadline_and_not_before() {
        let spec = idle("1m");
        let previous = IdleStatus { active_since: Some(Time(at(0))), suspended_since: None };
        let early = decide_idle(&input(&spec, Some(&previous), 30));
        assert!(!early.suspended);
        assert_eq!(early.wake_after, Some(Duration::from_secs(30)), "a timer, not polling");
        let due = decide_idle(&input(&spec, Some(&previous), 60));
        assert!(due.suspended);
        assert_eq!(due.status.unwrap().suspended_since, Some(Time(at(60))));
        assert_eq!(due.event.unwrap().reason, "IdleSuspended");
    }

    #[test]
    fn a_stamp_pushes_the_deadline_and_a_newer_stamp_resumes_an_idle_set() {
        let spec = idle("1m");
        let previous = IdleStatus { active_since: Some(Time(at(0))), suspended_since: None };
        let stamp = at(50).to_string();
        let d =
            decide_idle(&IdleInput { stamp: Some(&stamp), ..input(&spec, Some(&previous), 90) });
        assert!(!d.suspended);
        assert_eq!(d.wake_after, Some(Duration::from_secs(20)));

        let idling =
            IdleStatus { active_since: Some(Time(at(0))), suspended_since: Some(Time(at(100))) };
        let old = at(90).to_string();
        let still =
            decide_idle(&IdleInput { stamp: Some(&old), ..input(&spec, Some(&idling), 500) });
        assert!(still.suspended && still.event.is_none() && still.wake_after.is_none());
        let new = at(400).to_string();
        let woke =
            decide_idle(&IdleInput { stamp: Some(&new), ..input(&spec, Some(&idling), 500) });
        assert!(!woke.suspended);
        assert_eq!(woke.event.unwrap().reason, "IdleResumed");
        let status = woke.status.unwrap();
        assert_eq!((status.active_since, status.suspended_since), (Some(Time(at(500))), None));
        assert_eq!(woke.wake_after, Some(Duration::from_secs(60)), "the next idle period");
    }

    #[test]
    fn the_users_suspend_wins_and_a_users_edit_counts_as_activity() {
        let spec = idle("1m");
        let idling =
            IdleStatus { active_since: Some(Time(at(0))), suspended_since: Some(Time(at(100))) };
        let user =
            decide_idle(&IdleInput { user_suspend: true, ..input(&spec, Some(&idling), 500) });
        assert!(!user.suspended, "the user's suspend, not ours");
        assert_eq!(user.status.unwrap().suspended_since, None);
        // The user resumed (suspend: true -> false is a spec edit): not undone before the next
        // idle period, whatever the stamp says.
        let resumed = IdleStatus { active_since: Some(Time(at(0))), suspended_since: None };
        let edit =
            decide_idle(&IdleInput { spec_edited: true, ..input(&spec, Some(&resumed), 500) });
        assert!(!edit.suspended);
        assert_eq!(edit.wake_after, Some(Duration::from_secs(60)));
        let edit_idle =
            decide_idle(&IdleInput { spec_edited: true, ..input(&spec, Some(&idling), 500) });
        assert!(!edit_idle.suspended, "an edit wakes an idle set too");
    }

    #[test]
    fn bad_durations_and_stamps_are_reported_not_guessed() {
        let off = decide_idle(&input(&idle("0s"), None, 10));
        assert!(!off.suspended && off.problem.unwrap().contains("shorter than 1s"));
        let bad = decide_idle(&input(&idle("soon"), None, 10));
        assert!(bad.problem.unwrap().contains("idle.after"));
        let spec = idle("1m");
        let garbage =
            decide_idle(&IdleInput { stamp: Some("yesterday"), ..input(&spec, None, 10) });
        assert!(garbage.problem.unwrap().contains("not an RFC 3339 time"));
        assert!(!garbage.suspended);
    }

    #[test]
    fn a_stamp_from_the_future_counts_as_now() {
        let spec = idle("1m");
        let previous = IdleStatus { active_since: Some(Time(at(0))), suspended_since: None };
        let future = at(10_000).to_string();
        let d =
            decide_idle(&IdleInput { stamp: Some(&future), ..input(&spec, Some(&previous), 100) });
        assert_eq!(d.wake_after, Some(Duration::from_secs(60)));
    }
}
