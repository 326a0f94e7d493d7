//! The operator's record of what each mandate's FineTuneJobs hold and used: per proposal one
//! ConfigMap (`proposal-<uid>`) in the trusted namespace, a key per admitted job (its uid)
//! with the GPUs it holds, the GPU-hours reserved at admission and, once it finished, the
//! GPU-hours it used (from its Job's start and completion times). Admission reads it — never
//! the proposal's or the jobs' `status`, which tenants can write, nor the Jobs alone, which a
//! TTL or a tenant deletes — to enforce the mandate's `maxConcurrentGpus` and `gpuHours`;
//! the proposal's `status.budget` mirrors it.

use std::collections::BTreeMap;

use kube::ResourceExt;
use modelcommons_crds::proposal::ModelProposal;
use serde::{Deserialize, Serialize};

use super::{Context, Error};

/// One admitted job.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct JobUsage {
    /// The FineTuneJob, `<namespace>/<name>`.
    pub job: String,
    /// GPUs it holds while it runs (workers × GPUs per worker).
    pub gpus: u32,
    /// GPU-hours reserved at admission: its GPUs × its deadline (the Job is stopped there).
    pub reserved_hours: f64,
    /// GPU-hours it used, once it finished.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub used_hours: Option<f64>,
}

impl JobUsage {
    /// What the job counts against the budget: what it used once finished, else what it
    /// reserved.
    pub fn charged(&self) -> f64 {
        self.used_hours.unwrap_or(self.reserved_hours)
    }

    /// Whether it still holds its GPUs.
    pub fn active(&self) -> bool {
        self.used_hours.is_none()
    }
}

/// The record's ConfigMap name for the proposal with `uid`.
pub fn record_name(uid: &str) -> String {
    format!("proposal-{uid}")
}

/// Every admitted job of `mp`, by FineTuneJob uid.
pub async fn usage(ctx: &Context, mp: &ModelProposal) -> Result<BTreeMap<String, JobUsage>, Error> {
    let data = super::trusted::read(ctx, &record_name(&mp.uid().unwrap_or_default())).await?;
    Ok(parse(&data))
}

/// The jobs in a record's data (anything that does not parse is skipped).
pub fn parse(data: &BTreeMap<String, String>) -> BTreeMap<String, JobUsage> {
    data.iter()
        .filter_map(|(k, v)| Some((k.clone(), serde_json::from_str(v).ok()?)))
        .collect()
}

/// Records (or updates) the job with `uid` under `mp`.
pub async fn record(
    ctx: &Context,
    mp: &ModelProposal,
    uid: &str,
    u: &JobUsage,
) -> Result<(), Error> {
    super::trusted::write(
        ctx,
        &record_name(&mp.uid().unwrap_or_default()),
        "modelcommons-usage",
        (
            "modelcommons.dev/proposal",
            format!("{}/{}", mp.namespace().unwrap_or_default(), mp.name_any()),
        ),
        uid,
        serde_json::to_string(u)?,
    )
    .await
}

/// What the other jobs of a mandate hold: (GPUs of the active ones, GPU-hours charged, names).
pub fn held(
    usage: &BTreeMap<String, JobUsage>,
    except: &str,
    live: &dyn Fn(&str) -> bool,
) -> (u32, f64, Vec<String>) {
    let mut gpus = 0;
    let mut hours = 0.0;
    let mut names = Vec::new();
    for (uid, u) in usage {
        if uid == except {
            continue;
        }
        hours += u.charged();
        // A job deleted while it ran holds nothing any more (its pods are gone); it stays
        // charged what it reserved.
        if u.active() && live(uid) {
            gpus += u.gpus;
            names.push(u.job.clone());
        }
    }
    (gpus, hours, names)
}
