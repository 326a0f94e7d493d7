//! Status conditions shared by every kind: `metav1.Condition`, a list-map keyed by `type`.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

/// The condition type every kind carries: the object has reached its goal.
pub const READY: &str = "Ready";
/// kstatus: True while the operator works towards the goal (absent otherwise).
pub const RECONCILING: &str = "Reconciling";
/// kstatus: True when progress needs a person — a spec to fix, a grant to give, a terminal
/// failure (absent otherwise).
pub const STALLED: &str = "Stalled";

/// Where an object stands, in the terms GitOps tools read (kstatus: `Ready`, `Reconciling`,
/// `Stalled`, each with `observedGeneration`): Flux health checks, `kubectl wait
/// --for=condition=Ready`, and the Argo CD health checks in `deploy/gitops/health`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Progress {
    /// The goal is reached.
    Ready,
    /// On the way: waiting for time, votes, pods, the chain.
    Reconciling,
    /// Needs a person.
    Stalled,
}

/// The conditions of one status write: every condition set through it carries the object's
/// generation and one timestamp.
#[derive(Debug)]
pub struct Conditions<'a> {
    list: &'a mut Vec<Condition>,
    generation: Option<i64>,
    now: Time,
    changed: bool,
}

impl<'a> Conditions<'a> {
    /// Edits `list` for an object at `generation`.
    pub fn new(list: &'a mut Vec<Condition>, generation: Option<i64>, now: Time) -> Self {
        Self {
            list,
            generation,
            now,
            changed: false,
        }
    }

    /// Sets the condition `type_` (see [`set_condition`]).
    pub fn set(&mut self, type_: &str, status: bool, reason: &str, message: &str) -> &mut Self {
        self.changed |= set_condition(
            self.list,
            type_,
            status,
            reason,
            message,
            self.generation,
            self.now.clone(),
        );
        self
    }

    /// Removes the condition `type_`.
    pub fn remove(&mut self, type_: &str) -> &mut Self {
        let before = self.list.len();
        self.list.retain(|c| c.type_ != type_);
        self.changed |= self.list.len() != before;
        self
    }

    /// Sets `Ready` and the kstatus pair from one reason and message: `Ready` True and neither
    /// `Reconciling` nor `Stalled`; or `Ready` False with `Reconciling` (or `Stalled`) True
    /// beside it saying the same.
    pub fn progress(&mut self, progress: Progress, reason: &str, message: &str) -> &mut Self {
        self.set(READY, progress == Progress::Ready, reason, message);
        match progress {
            Progress::Ready => self.remove(RECONCILING).remove(STALLED),
            Progress::Reconciling => self.set(RECONCILING, true, reason, message).remove(STALLED),
            Progress::Stalled => self.set(STALLED, true, reason, message).remove(RECONCILING),
        }
    }

    /// Sets the kstatus pair beside an already set `Ready`, saying what it says: for a
    /// controller that decides `Ready` first and its [`Progress`] from it.
    pub fn beside_ready(&mut self, progress: Progress) -> &mut Self {
        let ready = self.list.iter().find(|c| c.type_ == READY).cloned();
        match ready {
            Some(r) => self.progress(progress, &r.reason, &r.message),
            None => self,
        }
    }

    /// Whether a condition of `type_` is set.
    pub fn has(&self, type_: &str) -> bool {
        self.list.iter().any(|c| c.type_ == type_)
    }

    /// Whether the condition of `type_` is set and not True.
    pub fn is_false(&self, type_: &str) -> bool {
        self.list
            .iter()
            .any(|c| c.type_ == type_ && c.status != "True")
    }

    /// Whether anything changed.
    pub fn changed(&self) -> bool {
        self.changed
    }
}

/// Sets (or replaces) the condition of `type_` in `conditions`. `lastTransitionTime` changes
/// only when the status changes, as the Kubernetes API conventions require. Returns whether
/// anything changed, so a no-op reconcile can skip its status write.
pub fn set_condition(
    conditions: &mut Vec<Condition>,
    type_: &str,
    status: bool,
    reason: &str,
    message: &str,
    observed_generation: Option<i64>,
    now: Time,
) -> bool {
    let status = if status { "True" } else { "False" };
    match conditions.iter_mut().find(|c| c.type_ == type_) {
        Some(c) => {
            let changed = c.status != status
                || c.reason != reason
                || c.message != message
                || c.observed_generation != observed_generation;
            if c.status != status {
                c.last_transition_time = now;
            }
            c.status = status.into();
            c.reason = reason.into();
            c.message = message.into();
            c.observed_generation = observed_generation;
            changed
        }
        None => {
            conditions.push(Condition {
                type_: type_.into(),
                status: status.into(),
                reason: reason.into(),
                message: message.into(),
                observed_generation,
                last_transition_time: now,
            });
            true
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::jiff::Timestamp;

    fn t(secs: i64) -> Time {
        Time(Timestamp::from_second(secs).unwrap())
    }

    fn get<'a>(cs: &'a [Condition], t: &str) -> Option<&'a Condition> {
        cs.iter().find(|c| c.type_ == t)
    }

    #[test]
    fn progress_sets_ready_and_exactly_one_kstatus_condition() {
        let mut cs = Vec::new();
        let mut c = Conditions::new(&mut cs, Some(3), t(1));
        c.progress(Progress::Reconciling, "Rolling", "rolling out");
        assert!(c.changed());
        assert_eq!(get(&cs, READY).unwrap().status, "False");
        let r = get(&cs, RECONCILING).unwrap();
        assert_eq!((r.status.as_str(), r.reason.as_str()), ("True", "Rolling"));
        assert_eq!(r.observed_generation, Some(3));
        assert!(get(&cs, STALLED).is_none());

        let mut c = Conditions::new(&mut cs, Some(3), t(2));
        c.progress(Progress::Stalled, "ModelNotFound", "create it");
        assert!(get(&cs, RECONCILING).is_none());
        assert_eq!(get(&cs, STALLED).unwrap().message, "create it");

        let mut c = Conditions::new(&mut cs, Some(4), t(3));
        c.progress(Progress::Ready, "Serving", "2/2");
        assert_eq!(get(&cs, READY).unwrap().status, "True");
        assert_eq!(get(&cs, READY).unwrap().observed_generation, Some(4));
        assert_eq!(cs.len(), 1, "only Ready is left once the goal is reached");

        let mut c = Conditions::new(&mut cs, Some(4), t(4));
        c.progress(Progress::Ready, "Serving", "2/2");
        assert!(!c.changed(), "the same progress twice changes nothing");
    }

    #[test]
    fn transition_time_moves_only_when_status_changes() {
        let mut cs = Vec::new();
        assert!(set_condition(
            &mut cs,
            READY,
            false,
            "Waiting",
            "waiting for votes",
            Some(1),
            t(10)
        ));
        assert!(set_condition(
            &mut cs,
            READY,
            false,
            "Waiting",
            "still waiting",
            Some(2),
            t(20)
        ));
        assert_eq!(
            cs[0].last_transition_time,
            t(10),
            "same status keeps the transition time"
        );
        assert!(!set_condition(
            &mut cs,
            READY,
            false,
            "Waiting",
            "still waiting",
            Some(2),
            t(30)
        ));
        assert!(set_condition(
            &mut cs,
            READY,
            true,
            "Approved",
            "quorum reached",
            Some(2),
            t(40)
        ));
        assert_eq!(cs[0].last_transition_time, t(40));
        assert_eq!(
            cs.len(),
            1,
            "a list-map keyed by type holds one entry per type"
        );
    }
}
