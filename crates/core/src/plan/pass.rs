//! What every actor pass shares: the ordered steps it returns, the typed outcome of executing
//! one, the retry decision after it, and the one backoff curve of the operator.

use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use super::PlanEvent;

/// One step of a pass, executed in order by the actor. `P` is the resource's pod write, `S` its
/// status.
#[derive(Clone, Debug, PartialEq)]
pub enum Step<P, S> {
    /// Replace the object's finalizer list.
    SetFinalizers {
        /// The whole list.
        finalizers: Vec<String>,
        /// The resourceVersion the decision holds on ([`finalizer_guard`]): any other change
        /// since answers 409.
        guard: Option<String>,
    },
    /// A write to a pod.
    Pod(P),
    /// Record an Event on the object.
    Event(PlanEvent),
    /// Server-side apply the whole status.
    WriteStatus(Box<S>),
}

/// What the API server answered to a step, as the core needs to know it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The write took effect (or an Event was recorded, or could not be: Events are a courtesy).
    Done,
    /// A create met an object of the same name (409 `AlreadyExists`).
    AlreadyExists,
    /// The object is gone (404).
    NotFound,
    /// A precondition failed (409): our view was behind, often by our own last write.
    Conflict,
    /// The request as such was refused; the same request can only succeed after something else
    /// changes (a quota raised, a ServiceAccount created, a spec fixed).
    Rejected {
        /// Why, as a bounded kind.
        kind: RejectKind,
        /// The API server's own words (shown to people, never parsed).
        detail: String,
    },
    /// A transient failure (5xx, 429, transport).
    Failed {
        /// What went wrong, for logs and the actor tree.
        detail: String,
    },
}

/// Why the API server refused a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RejectKind {
    /// 400/422: invalid, or refused by admission (Pod Security, a quota).
    Invalid,
    /// 401/403: RBAC or admission said no.
    Forbidden,
}

/// What the actor does after recording an outcome.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Next {
    /// Execute the next step.
    Continue,
    /// Stop this pass; plan again after this long (the view or the bookkeeping changed).
    Stop(Duration),
}

/// What recording an outcome produced.
#[derive(Clone, Debug, PartialEq)]
pub struct Recorded {
    /// Events to publish now (made from the outcome, e.g. a name conflict).
    pub events: Vec<PlanEvent>,
    /// Whether the pass goes on.
    pub next: Next,
}

impl Recorded {
    /// Go on with no Event.
    pub fn go_on() -> Self {
        Self { events: Vec::new(), next: Next::Continue }
    }

    /// Stop the pass and plan again after `delay`.
    pub fn stop(delay: Duration) -> Self {
        Self { events: Vec::new(), next: Next::Stop(delay) }
    }
}

/// The answer of a planner: steps in order, and when to plan again if nothing happens.
#[derive(Clone, Debug, PartialEq)]
pub struct Pass<P, S> {
    /// Steps to execute in order; a step whose outcome says stop ends the pass.
    pub steps: Vec<Step<P, S>>,
    /// Plan again after this long even without events (a backoff or a deadline ends).
    pub wake_after: Option<Duration>,
}

/// After a 409 on an optimistic write, retry this soon from the fresh view (not a failure).
pub const CONFLICT_RETRY: Duration = Duration::from_millis(200);

/// The operator's one backoff curve: `base` doubling per attempt, never above `cap`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Backoff {
    /// Delay of attempt 0.
    pub base: Duration,
    /// Longest delay.
    pub cap: Duration,
}

impl Backoff {
    /// Retries of a failing object: 1 s, 2 s, 4 s, ... up to `cap`.
    pub fn retry(cap: Duration) -> Self {
        Self { base: Duration::from_secs(1), cap }
    }

    /// Restarts of a failed actor: 100 ms, 200 ms, ... up to `cap`.
    pub fn restart(cap: Duration) -> Self {
        Self { base: Duration::from_millis(100), cap }
    }

    /// The delay before attempt `attempt` (0-based).
    pub fn delay(self, attempt: u32) -> Duration {
        let factor = 1u32.checked_shl(attempt.min(24)).unwrap_or(u32::MAX);
        self.base.checked_mul(factor).unwrap_or(self.cap).min(self.cap)
    }
}

/// Consecutive failed passes of one object, and the decision that follows each outcome that is
/// not specific to a resource (status, finalizer and Event writes; transient failures).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Retry {
    /// Passes in a row that ended in a failure.
    pub failed_passes: u32,
}

impl Retry {
    /// Records a generic outcome: conflicts retry soon, failures back off, the rest goes on.
    pub fn record(&mut self, outcome: &Outcome, backoff: Backoff) -> Recorded {
        match outcome {
            Outcome::Done | Outcome::NotFound | Outcome::AlreadyExists => Recorded::go_on(),
            Outcome::Conflict => Recorded::stop(CONFLICT_RETRY),
            Outcome::Rejected { .. } | Outcome::Failed { .. } => {
                let delay = backoff.delay(self.failed_passes);
                self.failed_passes = self.failed_passes.saturating_add(1);
                Recorded::stop(delay)
            }
        }
    }

    /// Every step of a pass went through: the streak of failures ends.
    pub fn completed(&mut self) {
        self.failed_passes = 0;
    }

    /// The actor tree shows an object in backoff while its last pass failed.
    pub fn backing_off(&self) -> bool {
        self.failed_passes > 0
    }
}

/// The object as our own last status write left it, from the API server's answer: the
/// resourceVersion the view showed when the write was issued, the one the write made, and what
/// a finalizer decision reads of the object then.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct OwnWrite {
    /// The resourceVersion of the view the write was issued on.
    pub viewed: Option<String>,
    /// The resourceVersion the write made.
    pub made: Option<String>,
    /// The spec generation in the answer.
    pub generation: Option<i64>,
    /// Whether the answer shows the object being deleted.
    pub deleting: bool,
    /// The finalizers in the answer.
    pub finalizers: Vec<String>,
}

impl OwnWrite {
    /// Our status write issued on an object viewed at `viewed`, answered with `answer`.
    pub fn new(viewed: &ObjectMeta, answer: &ObjectMeta) -> Self {
        Self {
            viewed: viewed.resource_version.clone(),
            made: answer.resource_version.clone(),
            generation: answer.generation,
            deleting: answer.deletion_timestamp.is_some(),
            finalizers: answer.finalizers.clone().unwrap_or_default(),
        }
    }
}

/// The resourceVersion a finalizer patch decided on the viewed object `view` is guarded by.
/// Normally the view's own: any change since answers 409 and the pass is planned again. But when
/// the view is behind only by our own status write (it still shows the version that write was
/// issued on, and the write's answer shows the same spec generation, deletion state and
/// finalizers, all a finalizer decision reads), the version the write made: the decision holds
/// on it, and guarding by the older one would only buy a certain 409 and a second pass (one per
/// deleted object, whose last status write the watch has not shown yet).
pub fn finalizer_guard(view: &ObjectMeta, own: Option<&OwnWrite>) -> Option<String> {
    match own {
        Some(own)
            if own.viewed.is_some()
                && own.made.is_some()
                && own.viewed == view.resource_version
                && own.generation == view.generation
                && own.deleting == view.deletion_timestamp.is_some()
                && own.finalizers.as_slice() == view.finalizers.as_deref().unwrap_or_default() =>
        {
            own.made.clone()
        }
        _ => view.resource_version.clone(),
    }
}

/// The resourceVersions a release guarded by `guard` was decided under: the view's, and the
/// guard's when it differs (our own status write's; the watch shows that object next).
pub fn released_under(view: &ObjectMeta, guard: Option<&String>) -> Vec<String> {
    let mut under: Vec<String> = view.resource_version.iter().chain(guard).cloned().collect();
    under.dedup();
    under
}

/// The finalizer by which a resource's actor holds its object, as one pass sees it: whether it
/// is on, the step that puts it on, and the step that takes it off, each guarded by the
/// version the decision holds on ([`finalizer_guard`]).
#[derive(Clone, Debug)]
pub struct Finalizer<'a> {
    name: &'static str,
    meta: &'a ObjectMeta,
    guard: Option<String>,
}

impl<'a> Finalizer<'a> {
    /// The finalizer `name` of the object viewed as `meta`, after our own last status write.
    pub fn of(name: &'static str, meta: &'a ObjectMeta, own: Option<&OwnWrite>) -> Self {
        Self { name, meta, guard: finalizer_guard(meta, own) }
    }

    fn list(&self) -> &'a [String] {
        self.meta.finalizers.as_deref().unwrap_or_default()
    }

    /// Whether the object carries it.
    pub fn held(&self) -> bool {
        self.list().iter().any(|f| f == self.name)
    }

    /// Whether the object carries another finalizer `name` (e.g. the API server's `orphan`).
    pub fn also(&self, name: &str) -> bool {
        self.list().iter().any(|f| f == name)
    }

    /// The step that puts it on a live object that lacks it; `None` otherwise.
    pub fn hold<P, S>(&self) -> Option<Step<P, S>> {
        let live = self.meta.deletion_timestamp.is_none();
        (live && !self.held()).then(|| {
            let mut finalizers = self.list().to_vec();
            finalizers.push(self.name.to_string());
            Step::SetFinalizers { finalizers, guard: self.guard.clone() }
        })
    }

    /// The step that takes it off, and the versions that release was decided under (kept by
    /// the actor: see [`released`]).
    pub fn release<P, S>(self) -> (Step<P, S>, Vec<String>) {
        let finalizers = self.list().iter().filter(|f| *f != self.name).cloned().collect();
        let under = released_under(self.meta, self.guard.as_ref());
        (Step::SetFinalizers { finalizers, guard: self.guard }, under)
    }
}

/// Whether `view` is an object whose release the API server already took.
pub fn released(under: &[String], view: &ObjectMeta) -> bool {
    view.resource_version.as_ref().is_some_and(|rv| under.contains(rv))
}

/// Lets go of the status this actor wrote last once the view shows it. Until then it stands in
/// for the stored status (the watch may be behind our own write); after, the stored status is
/// the reference, so a status someone else wrote over ours is put right, and an actor at rest
/// keeps no second copy of its object's status.
pub fn forget_written_once_seen<S: PartialEq>(last_written: &mut Option<Box<S>>, stored: &S) {
    if last_written.as_deref() == Some(stored) {
        *last_written = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(rv: &str, generation: i64, finalizers: &[&str]) -> ObjectMeta {
        ObjectMeta {
            resource_version: Some(rv.into()),
            generation: Some(generation),
            finalizers: Some(finalizers.iter().map(|f| f.to_string()).collect()),
            ..Default::default()
        }
    }

    #[test]
    fn a_finalizer_patch_is_guarded_by_the_version_our_own_status_write_made_only_if_nothing_else_moved()
     {
        let view = meta("10", 2, &["cocoon.cis/teardown"]);
        assert_eq!(
            finalizer_guard(&view, None).as_deref(),
            Some("10"),
            "no write of ours: the view"
        );
        // The view still shows 10; our status write, issued on 10, made 11 and changed nothing
        // a finalizer decision reads: 11.
        let own = OwnWrite::new(&view, &meta("11", 2, &["cocoon.cis/teardown"]));
        assert_eq!(finalizer_guard(&view, Some(&own)).as_deref(), Some("11"));
        // The view has moved on (it saw our write, or anyone's since): its own version.
        let moved = meta("12", 2, &["cocoon.cis/teardown"]);
        assert_eq!(finalizer_guard(&moved, Some(&own)).as_deref(), Some("12"));
        // Someone changed the finalizers or the spec before our write landed: the answer shows
        // it, the decision was made without it, so the view's version (and a 409).
        let theirs = OwnWrite::new(&view, &meta("11", 2, &["cocoon.cis/teardown", "other/x"]));
        assert_eq!(finalizer_guard(&view, Some(&theirs)).as_deref(), Some("10"));
        let edited = OwnWrite::new(&view, &meta("11", 3, &["cocoon.cis/teardown"]));
        assert_eq!(finalizer_guard(&view, Some(&edited)).as_deref(), Some("10"));
        // Deletion began meanwhile.
        let mut deleting = meta("11", 2, &["cocoon.cis/teardown"]);
        deleting.deletion_timestamp = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
            k8s_openapi::jiff::Timestamp::UNIX_EPOCH,
        ));
        let began = OwnWrite::new(&view, &deleting);
        assert_eq!(finalizer_guard(&view, Some(&began)).as_deref(), Some("10"));
    }

    #[test]
    fn retries_back_off_exponentially_up_to_the_cap() {
        let b = Backoff::retry(Duration::from_secs(60));
        let delays: Vec<u64> = (0..9).map(|a| b.delay(a).as_secs()).collect();
        assert_eq!(delays, vec![1, 2, 4, 8, 16, 32, 60, 60, 60]);
        assert_eq!(b.delay(u32::MAX), b.cap, "no overflow on a long failure streak");
    }

    #[test]
    fn restarts_back_off_from_100ms_and_are_capped() {
        let b = Backoff::restart(Duration::from_secs(60));
        let delays: Vec<u128> = (0..4).map(|a| b.delay(a).as_millis()).collect();
        assert_eq!(delays, vec![100, 200, 400, 800]);
        assert_eq!(b.delay(40), b.cap);
    }

    #[test]
    fn a_conflict_retries_soon_without_counting_as_a_failure() {
        let mut r = Retry::default();
        let b = Backoff::retry(Duration::from_secs(60));
        assert_eq!(r.record(&Outcome::Conflict, b).next, Next::Stop(CONFLICT_RETRY));
        assert!(!r.backing_off());
    }

    #[test]
    fn failures_back_off_longer_each_time_until_a_pass_completes() {
        let mut r = Retry::default();
        let b = Backoff::retry(Duration::from_secs(60));
        let failed = Outcome::Failed { detail: "503".into() };
        assert_eq!(r.record(&failed, b).next, Next::Stop(Duration::from_secs(1)));
        assert_eq!(r.record(&failed, b).next, Next::Stop(Duration::from_secs(2)));
        assert!(r.backing_off());
        r.completed();
        assert_eq!(r.record(&failed, b).next, Next::Stop(Duration::from_secs(1)));
    }
}
