//! Status conditions shared by every kind: `metav1.Condition`, a list-map keyed by `type`.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

/// The condition type every kind carries: the object has reached its goal.
pub const READY: &str = "Ready";

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
