//! Expectations: creates, deletes and hibernate toggles this actor issued that the watch has not
//! confirmed yet. The watch view lags our own writes; without these a stale view would create a
//! slot twice, or label a pod again with what it was just labelled.

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::jiff::Timestamp;

use super::observe::PodView;

/// How long an unconfirmed write is trusted before the view is believed again (a lost watch
/// event must not block a slot forever).
pub const EXPECTATION_TTL: Duration = Duration::from_secs(60);

/// In-flight creates, deletes and hibernate toggles by pod name, each with its expiry.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Expectations {
    creates: BTreeMap<String, Timestamp>,
    deletes: BTreeMap<String, Timestamp>,
    /// The hibernate request each toggled pod was patched to.
    toggles: BTreeMap<String, (bool, Timestamp)>,
}

fn expiry(now: Timestamp) -> Timestamp {
    super::clock::after(now, EXPECTATION_TTL)
}

impl Expectations {
    /// Records a create just issued for `name`, trusted until [`EXPECTATION_TTL`] after `now`.
    pub fn expect_create(&mut self, name: &str, now: Timestamp) {
        self.creates.insert(name.to_string(), expiry(now));
    }

    /// Records a delete just issued for `name`, trusted until [`EXPECTATION_TTL`] after `now`.
    pub fn expect_delete(&mut self, name: &str, now: Timestamp) {
        self.deletes.insert(name.to_string(), expiry(now));
    }

    /// Records a hibernate toggle of `name` to `hibernate` that went through, trusted until
    /// [`EXPECTATION_TTL`] after `now` or until the view shows it.
    pub fn expect_toggle(&mut self, name: &str, hibernate: bool, now: Timestamp) {
        self.toggles.insert(name.to_string(), (hibernate, expiry(now)));
    }

    /// Forgets a create that failed, so the next plan may try again.
    pub fn forget_create(&mut self, name: &str) {
        self.creates.remove(name);
    }

    /// Forgets a delete that failed, so the next plan may try again.
    pub fn forget_delete(&mut self, name: &str) {
        self.deletes.remove(name);
    }

    /// Confirms what the view now shows: a seen pod satisfies its create; a terminating or
    /// vanished pod satisfies its delete; a pod showing the request it was toggled to (or gone)
    /// satisfies its toggle. Expired expectations are dropped.
    pub fn observe(&mut self, pods: &[PodView], now: Timestamp) {
        self.creates.retain(|name, until| *until > now && !pods.iter().any(|p| p.name == *name));
        self.deletes.retain(|name, until| {
            *until > now && pods.iter().any(|p| p.name == *name && !p.terminating)
        });
        self.toggles.retain(|name, (hibernate, until)| {
            *until > now
                && pods.iter().any(|p| p.name == *name && p.hibernate_requested != *hibernate)
        });
    }

    /// Whether a create of `name` is in flight.
    pub fn create_pending(&self, name: &str) -> bool {
        self.creates.contains_key(name)
    }

    /// Whether a delete of `name` is in flight.
    pub fn delete_pending(&self, name: &str) -> bool {
        self.deletes.contains_key(name)
    }

    /// Whether a toggle of `name` to `hibernate` went through and the view does not show it yet.
    pub fn toggle_pending(&self, name: &str, hibernate: bool) -> bool {
        self.toggles.get(name).is_some_and(|(h, _)| *h == hibernate)
    }

    /// Names whose create is in flight.
    pub fn pending_creates(&self) -> impl Iterator<Item = &str> {
        self.creates.keys().map(String::as_str)
    }

    /// Whether nothing is in flight.
    pub fn is_empty(&self) -> bool {
        self.creates.is_empty() && self.deletes.is_empty() && self.toggles.is_empty()
    }

    /// Number of creates, deletes and toggles in flight.
    pub fn len(&self) -> usize {
        self.creates.len() + self.deletes.len() + self.toggles.len()
    }
}

impl super::compact::Compact for Expectations {
    fn compact(&mut self) {
        self.creates.compact();
        self.deletes.compact();
        self.toggles.compact();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: i64) -> Timestamp {
        Timestamp::from_second(s).unwrap()
    }

    #[test]
    fn a_create_stays_expected_until_the_watch_shows_the_pod() {
        let mut e = Expectations::default();
        e.expect_create("demo-0", at(0));
        e.observe(&[], at(1));
        assert!(e.create_pending("demo-0"));
        e.observe(&[PodView::new("demo-0")], at(2));
        assert!(!e.create_pending("demo-0"));
    }

    #[test]
    fn a_delete_is_confirmed_by_a_terminating_or_vanished_pod() {
        let mut e = Expectations::default();
        e.expect_delete("demo-1", at(0));
        e.observe(&[PodView::new("demo-1")], at(1));
        assert!(e.delete_pending("demo-1"));
        let mut terminating = PodView::new("demo-1");
        terminating.terminating = true;
        e.observe(&[terminating], at(2));
        assert!(!e.delete_pending("demo-1"));
    }

    #[test]
    fn a_toggle_is_confirmed_by_a_view_showing_it_and_one_the_other_way_is_not_held() {
        let mut e = Expectations::default();
        e.expect_toggle("demo-1", true, at(0));
        let mut p = PodView::new("demo-1");
        e.observe(&[p.clone()], at(1));
        assert!(e.toggle_pending("demo-1", true));
        assert!(!e.toggle_pending("demo-1", false), "a wish the other way is not held back");
        p.hibernate_requested = true;
        e.observe(&[p], at(2));
        assert!(e.is_empty());
        e.expect_toggle("demo-1", true, at(3));
        e.observe(&[], at(4));
        assert!(e.is_empty(), "a pod that is gone has nothing left to show");
    }

    #[test]
    fn expectations_expire_so_a_lost_event_never_blocks_a_slot_forever() {
        let mut e = Expectations::default();
        e.expect_create("demo-0", at(0));
        e.observe(&[], at(61));
        assert!(e.is_empty());
    }
}
