//! Progress and result reporting: into the FineTuneJob's status in a cluster, onto the
//! terminal when run by hand.
//!
//! In a FineTuneJob pod (`MODELCOMMONS_FINETUNEJOB` names the object), each report becomes a
//! server-side apply of `status.progress` (and, at the end, `status.result`) on the `status`
//! subresource under the trainer's own field manager, [`FIELD_MANAGER`]. The apply carries only
//! the fields the trainer owns, so the operator's `phase`, `conditions` and
//! `result.targetsMet` are never touched. Writes are rate-bounded: at most one API call per
//! interval, the reports in between coalesced (the latest wins); the first and the final
//! progress are always written. A failed write is logged and retried by a later report; it
//! never stops training. Each write is also one plain line on stderr, for the pod's log.
//!
//! Outside a cluster the same figures go to stderr: a progress bar on a terminal, otherwise
//! one plain line per report, e.g. `step 40/200 (20%) loss 2.3154 1834 tok/s eta 1m12s`.

use std::collections::BTreeMap;
use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Api, Patch, PatchParams};
use kube::{Client, Resource};
use modelcommons_crds::common::MetricValue;
use modelcommons_crds::finetune::{FineTuneJob, FineTuneJobStatus, Progress, TrainResult};
use serde::Serialize;

/// The field manager of every status write the trainer makes (the operator has its own), so
/// `managedFields` shows who wrote what and server-side apply keeps the two apart.
pub const FIELD_MANAGER: &str = "modelcommons.dev/trainer";

/// Names the FineTuneJob to report into; unset means a local run.
pub const JOB_ENV: &str = "MODELCOMMONS_FINETUNEJOB";
/// The FineTuneJob's namespace (falls back to `POD_NAMESPACE`, the pod's service-account
/// namespace file, then `default`).
pub const NAMESPACE_ENV: &str = "MODELCOMMONS_NAMESPACE";
/// The least time between two status writes, in whole seconds (default 5; 0 writes every
/// report).
pub const INTERVAL_ENV: &str = "MODELCOMMONS_REPORT_INTERVAL_SECONDS";
/// The default least time between two status writes.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(5);

/// How long one status write may take before it counts as failed (training goes on).
const WRITE_TIMEOUT: Duration = Duration::from_secs(15);
/// Attempts at writing the result before [`Reporter::result`] gives up.
const RESULT_ATTEMPTS: u32 = 3;
const SERVICE_ACCOUNT_NAMESPACE: &str = "/var/run/secrets/kubernetes.io/serviceaccount/namespace";

/// Errors of reporting.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The report interval variable is not a whole number of seconds.
    #[error("{INTERVAL_ENV}={0:?}: expected a whole number of seconds (0 writes on every report)")]
    Interval(String),
    /// No Kubernetes client could be built (no in-cluster config, no kubeconfig).
    #[error(
        "{JOB_ENV} names FineTuneJob {namespace}/{name}, but no Kubernetes client could be configured \
         (in a pod: is a service account token mounted? by hand: unset {JOB_ENV} or set KUBECONFIG): {source}"
    )]
    Client {
        /// The FineTuneJob's namespace.
        namespace: String,
        /// The FineTuneJob's name.
        name: String,
        /// Why the client could not be built.
        #[source]
        source: kube::Error,
    },
    /// The model digest is not a sha256 in lowercase hex.
    #[error("model digest {0:?}: expected a sha256 as 64 lowercase hex digits")]
    Digest(String),
    /// The result could not be written into the FineTuneJob's status.
    #[error(
        "writing the result into FineTuneJob {target}'s status failed {attempts} times, last: {reason} \
         (does the object exist, and may the pod's service account patch finetunejobs/status?)"
    )]
    Write {
        /// `namespace/name` of the FineTuneJob.
        target: String,
        /// How many writes were tried.
        attempts: u32,
        /// The last failure.
        reason: String,
    },
    /// The result line could not be printed on stdout.
    #[error("printing the result on stdout: {0}")]
    Stdout(#[from] std::io::Error),
}

/// One progress report: where training stands after an optimizer step.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ProgressUpdate {
    /// The last completed optimizer step.
    pub step: u64,
    /// The planned number of steps (0 when unknown: no percent and no ETA).
    pub total_steps: u64,
    /// The latest training loss.
    pub loss: f64,
    /// Training throughput in tokens per second, all workers together.
    pub tokens_per_second: f64,
}

/// The outcome of a finished training run.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ResultUpdate {
    /// The sha256 of the output weights, 64 lowercase hex digits.
    pub model_digest: String,
    /// Where the model was written (the FineTuneJob's `outputUri`, or a local path).
    pub model_uri: String,
    /// The evaluation metrics by name (`loss`, `exactMatch`, …). Written into the status as
    /// decimal strings rounded to 6 significant digits; a non-finite value is written as
    /// `NaN`/`inf` so a diverged run is visible rather than hidden.
    pub metrics: BTreeMap<String, f64>,
}

/// Where reports go.
enum Sink {
    /// The FineTuneJob's status.
    Job {
        api: Box<Api<FineTuneJob>>,
        namespace: String,
        name: String,
    },
    /// A progress bar on a terminal.
    Bar(ProgressBar),
    /// One plain line per report on stderr.
    Lines,
}

/// Reports training progress and the result: into a FineTuneJob's status (see the module
/// docs), or onto the terminal.
pub struct Reporter {
    sink: Sink,
    min_interval: Duration,
    created: Instant,
    /// The step the run resumed from, when the caller said so (see [`Reporter::resumed_from`]).
    start_step: Option<u64>,
    /// The step and time rates are measured from: `(start_step, created)` when the start step
    /// is known, else the first report.
    baseline: Option<(u64, Instant)>,
    /// Everything the trainer owns in the status, as last reported.
    progress: Option<Progress>,
    result: Option<TrainResult>,
    /// Whether `progress`/`result` changed since the last successful write.
    dirty: bool,
    /// When the last status write was tried (the rate bound counts attempts).
    last_attempt: Option<Instant>,
}

impl std::fmt::Debug for Reporter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let sink = match &self.sink {
            Sink::Job {
                namespace, name, ..
            } => format!("FineTuneJob {namespace}/{name}"),
            Sink::Bar(_) => "progress bar".into(),
            Sink::Lines => "stderr lines".into(),
        };
        f.debug_struct("Reporter")
            .field("sink", &sink)
            .field("min_interval", &self.min_interval)
            .field("progress", &self.progress)
            .field("result", &self.result)
            .finish_non_exhaustive()
    }
}

impl Reporter {
    /// The reporter the environment asks for: the FineTuneJob named by
    /// `MODELCOMMONS_FINETUNEJOB` in `MODELCOMMONS_NAMESPACE` (else `POD_NAMESPACE`, the pod's
    /// namespace file, `default`), through `kube::Client::try_default()` (in-cluster config or
    /// `KUBECONFIG`), writing at most once per `MODELCOMMONS_REPORT_INTERVAL_SECONDS` (default
    /// 5). Only the first worker reports: a pod whose `PET_NODE_RANK` (or
    /// `JOB_COMPLETION_INDEX`) is not 0 logs locally. Without the variable: [`Reporter::local`].
    pub async fn from_env() -> Result<Self, Error> {
        let env = |k: &str| std::env::var(k).ok();
        let min_interval = interval_from(env(INTERVAL_ENV))?;
        let Some(name) = env(JOB_ENV)
            .map(|n| n.trim().to_string())
            .filter(|n| !n.is_empty())
        else {
            return Ok(Self::local());
        };
        if !is_first_worker(env) {
            return Ok(Self::lines());
        }
        let namespace = namespace_from(env, || {
            std::fs::read_to_string(SERVICE_ACCOUNT_NAMESPACE).ok()
        });
        let client = Client::try_default()
            .await
            .map_err(|source| Error::Client {
                namespace: namespace.clone(),
                name: name.clone(),
                source,
            })?;
        Ok(Self::for_job(client, &namespace, &name, min_interval))
    }

    /// Reports into the status of FineTuneJob `namespace/name`, writing at most once per
    /// `min_interval` (zero: every report). Nothing is sent until the first report.
    pub fn for_job(client: Client, namespace: &str, name: &str, min_interval: Duration) -> Self {
        Self::with_sink(
            Sink::Job {
                api: Box::new(Api::namespaced(client, namespace)),
                namespace: namespace.to_string(),
                name: name.to_string(),
            },
            min_interval,
        )
    }

    /// Reports on the terminal: a progress bar when stderr is a terminal, else one plain line
    /// per report on stderr.
    pub fn local() -> Self {
        if std::io::stderr().is_terminal() {
            let bar = ProgressBar::new(0);
            if let Ok(style) =
                ProgressStyle::with_template("{elapsed_precise} [{bar:30}] {pos}/{len} {msg}")
            {
                bar.set_style(style.progress_chars("=> "));
            }
            Self::with_sink(Sink::Bar(bar), Duration::ZERO)
        } else {
            Self::lines()
        }
    }

    fn lines() -> Self {
        Self::with_sink(Sink::Lines, Duration::ZERO)
    }

    fn with_sink(sink: Sink, min_interval: Duration) -> Self {
        Self {
            sink,
            min_interval,
            created: Instant::now(),
            start_step: None,
            baseline: None,
            progress: None,
            result: None,
            dirty: false,
            last_attempt: None,
        }
    }

    /// Tells the reporter the step training starts from (0 for a fresh run, the checkpoint's
    /// step when resumed). Rates and the ETA are then measured from this step at the
    /// reporter's creation, so even the first report has an ETA. Without it they are measured
    /// from the first report, so a run resumed at step 500 is never taken to have done 500
    /// steps in its first seconds.
    pub fn resumed_from(mut self, step: u64) -> Self {
        self.start_step = Some(step);
        self
    }

    /// Reports progress. In a FineTuneJob it is written into `status.progress` when the rate
    /// bound allows (always for the first report and for the final step), else kept and
    /// written with a later report; a failed write is logged and retried later, never raised.
    pub async fn progress(&mut self, p: ProgressUpdate) {
        let now = Instant::now();
        let baseline = match self.baseline {
            // A step below the baseline means training restarted: measure afresh.
            Some((step, at)) if p.step >= step => (step, at),
            _ => match self.start_step {
                Some(start) if p.step >= start && self.progress.is_none() => (start, self.created),
                _ => (p.step, now),
            },
        };
        self.baseline = Some(baseline);
        let eta = eta(
            p.step.saturating_sub(baseline.0),
            now.saturating_duration_since(baseline.1),
            p.step,
            p.total_steps,
        );
        let progress = Progress {
            step: p.step,
            total_steps: p.total_steps,
            percent: percent(p.step, p.total_steps).map(|v| format!("{v}%")),
            loss: Some(significant(p.loss, 5)),
            tokens_per_second: (p.tokens_per_second.is_finite() && p.tokens_per_second >= 0.0)
                .then(|| p.tokens_per_second.round() as u64),
            eta: eta.map(human_duration),
            last_update_time: Some(Time(k8s_openapi::jiff::Timestamp::now())),
        };
        let line = progress_line(&progress);
        self.progress = Some(progress);
        self.dirty = true;
        match &self.sink {
            Sink::Bar(bar) => {
                bar.set_length(p.total_steps.max(p.step));
                bar.set_message(self.progress.as_ref().map(figures).unwrap_or_default());
                bar.set_position(p.step);
            }
            Sink::Lines => eprint_line(&line),
            Sink::Job { .. } => {
                // The first report is always due (no attempt yet), and so is the final step.
                let final_step = p.total_steps > 0 && p.step >= p.total_steps;
                let due = self
                    .last_attempt
                    .is_none_or(|t| now.saturating_duration_since(t) >= self.min_interval);
                if final_step || due {
                    eprint_line(&line);
                    if let Err(e) = self.write().await {
                        tracing::warn!(
                            step = p.step,
                            "could not write progress into the FineTuneJob's status (training goes on; a later report retries): {e}"
                        );
                    }
                }
            }
        }
    }

    /// Reports the result, with the latest progress. In a FineTuneJob it is written into
    /// `status.result` (digest, URI, metrics; `targetsMet` and `phase` are the operator's),
    /// retried a few times, and an error returned when every try failed. The result is also
    /// printed as one JSON line on stdout.
    pub async fn result(&mut self, r: ResultUpdate) -> Result<(), Error> {
        if r.model_digest.len() != 64
            || !r
                .model_digest
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        {
            return Err(Error::Digest(r.model_digest));
        }
        self.result = Some(TrainResult {
            model_digest: Some(r.model_digest.clone()),
            model_uri: Some(r.model_uri.clone()),
            metrics: r
                .metrics
                .iter()
                .map(|(name, v)| MetricValue {
                    name: name.clone(),
                    value: trim_zeros(significant(*v, 6)),
                })
                .collect(),
            targets_met: None,
        });
        self.dirty = true;
        if let Sink::Bar(bar) = &self.sink {
            // Cleared rather than left on a line of its own: the final figures are kept as a
            // plain line, and the result's JSON line starts on a fresh line.
            bar.finish_and_clear();
            if let Some(p) = &self.progress {
                eprint_line(&progress_line(p));
            }
        }
        if let Sink::Job {
            namespace, name, ..
        } = &self.sink
        {
            let target = format!("{namespace}/{name}");
            let mut last_error = String::new();
            let mut attempt = 0;
            while self.dirty {
                attempt += 1;
                match self.write().await {
                    Ok(()) => {}
                    Err(e) if attempt < RESULT_ATTEMPTS => {
                        tracing::warn!(
                            attempt,
                            "could not write the result into FineTuneJob {target}'s status, retrying: {e}"
                        );
                        tokio::time::sleep(Duration::from_secs(u64::from(attempt))).await;
                    }
                    Err(e) => {
                        last_error = e;
                        break;
                    }
                }
            }
            if self.dirty {
                return Err(Error::Write {
                    target,
                    attempts: attempt,
                    reason: last_error,
                });
            }
        }
        let mut out = std::io::stdout().lock();
        serde_json::to_writer(&mut out, &r).map_err(std::io::Error::from)?;
        writeln!(out)?;
        out.flush()?;
        Ok(())
    }

    /// Writes reported progress that the rate bound held back (e.g. before exiting on an
    /// error). A failed write is logged, not raised.
    pub async fn flush(&mut self) {
        if self.dirty
            && matches!(self.sink, Sink::Job { .. })
            && let Err(e) = self.write().await
        {
            tracing::warn!("could not write progress into the FineTuneJob's status: {e}");
        }
    }

    /// Applies everything the trainer owns in the status (progress and result) in one
    /// server-side apply: fields left out of an apply are dropped from the manager's set, so
    /// each write carries both.
    async fn write(&mut self) -> Result<(), String> {
        let Sink::Job { api, name, .. } = &self.sink else {
            return Ok(());
        };
        self.last_attempt = Some(Instant::now());
        let status = FineTuneJobStatus {
            progress: self.progress.clone(),
            result: self.result.clone(),
            ..FineTuneJobStatus::default()
        };
        let body = serde_json::json!({
            "apiVersion": FineTuneJob::api_version(&()),
            "kind": FineTuneJob::kind(&()),
            "metadata": { "name": name },
            "status": status,
        });
        let pp = PatchParams::apply(FIELD_MANAGER).force();
        match tokio::time::timeout(
            WRITE_TIMEOUT,
            api.patch_status(name, &pp, &Patch::Apply(&body)),
        )
        .await
        {
            Ok(Ok(_)) => {
                self.dirty = false;
                Ok(())
            }
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err(format!(
                "no answer from the API server within {}s",
                WRITE_TIMEOUT.as_secs()
            )),
        }
    }
}

/// Whether this pod is the first worker (or the only one): torchrun's `PET_NODE_RANK`, else
/// the Indexed Job's `JOB_COMPLETION_INDEX`; unset counts as first.
fn is_first_worker(env: impl Fn(&str) -> Option<String>) -> bool {
    ["PET_NODE_RANK", "JOB_COMPLETION_INDEX"]
        .iter()
        .find_map(|k| env(k).filter(|v| !v.trim().is_empty()))
        .is_none_or(|v| v.trim() == "0")
}

/// The FineTuneJob's namespace: `MODELCOMMONS_NAMESPACE`, `POD_NAMESPACE`, the service-account
/// namespace file, then `default`; blank values are skipped.
fn namespace_from(
    env: impl Fn(&str) -> Option<String>,
    file: impl FnOnce() -> Option<String>,
) -> String {
    let nonblank = |v: Option<String>| v.map(|s| s.trim().to_string()).filter(|s| !s.is_empty());
    nonblank(env(NAMESPACE_ENV))
        .or_else(|| nonblank(env("POD_NAMESPACE")))
        .or_else(|| nonblank(file()))
        .unwrap_or_else(|| "default".into())
}

/// The write interval from `MODELCOMMONS_REPORT_INTERVAL_SECONDS` (unset or blank: 5 s).
fn interval_from(value: Option<String>) -> Result<Duration, Error> {
    match value.as_deref().map(str::trim) {
        None | Some("") => Ok(DEFAULT_INTERVAL),
        Some(v) => v
            .parse()
            .map(Duration::from_secs)
            .map_err(|_| Error::Interval(v.to_string())),
    }
}

/// Whole percent done, rounded down (100 only when finished); `None` without a total.
fn percent(step: u64, total: u64) -> Option<u64> {
    (total > 0).then(|| (u128::from(step.min(total)) * 100 / u128::from(total)) as u64)
}

/// Time left at the rate measured so far: `done` steps in `elapsed`, `total - step` to go.
/// Zero once finished; `None` without a total or before a step was measured.
fn eta(done: u64, elapsed: Duration, step: u64, total: u64) -> Option<Duration> {
    if total == 0 {
        return None;
    }
    if step >= total {
        return Some(Duration::ZERO);
    }
    if done == 0 || elapsed.is_zero() {
        return None;
    }
    let secs = elapsed.as_secs_f64() * (total - step) as f64 / done as f64;
    // Cap at ten years so a stalled run still gives a finite, printable figure.
    Some(Duration::from_secs_f64(secs.min(315_360_000.0)))
}

/// A short duration for people: `45s`, `12m30s`, `3h05m`, rounded up to the second (so an
/// ETA reads `0s` only when training is done).
fn human_duration(d: Duration) -> String {
    let s = d.as_secs() + u64::from(d.subsec_nanos() > 0);
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m{:02}s", s / 60, s % 60),
        _ => format!("{}h{:02}m", s / 3600, s % 3600 / 60),
    }
}

/// `x` as a decimal string with at least `digits` significant digits (never an exponent);
/// non-finite values as `NaN`, `inf`, `-inf`.
fn significant(x: f64, digits: u32) -> String {
    if !x.is_finite() {
        return x.to_string();
    }
    let digits = i64::from(digits.max(1));
    let decimals = if x == 0.0 {
        digits - 1
    } else {
        digits - 1 - x.abs().log10().floor() as i64
    };
    let decimals = decimals.clamp(0, 17) as usize;
    format!("{x:.decimals$}")
}

/// `2.500000` → `2.5`, `3.000` → `3`; strings without a point are left alone.
fn trim_zeros(s: String) -> String {
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        s
    }
}

/// `step 40/200 (20%) loss 2.3154 1834 tok/s eta 1m12s` (parts without a value left out).
fn progress_line(p: &Progress) -> String {
    let mut line = format!("step {}", p.step);
    if p.total_steps > 0 {
        line.push_str(&format!("/{}", p.total_steps));
    }
    if let Some(percent) = &p.percent {
        line.push_str(&format!(" ({percent})"));
    }
    let figures = figures(p);
    if !figures.is_empty() {
        line.push(' ');
        line.push_str(&figures);
    }
    line
}

/// `loss 2.3154 1834 tok/s eta 1m12s`: the figures after the step (the progress bar's message).
fn figures(p: &Progress) -> String {
    let mut parts = Vec::new();
    if let Some(loss) = &p.loss {
        parts.push(format!("loss {loss}"));
    }
    if let Some(tps) = p.tokens_per_second {
        parts.push(format!("{tps} tok/s"));
    }
    if let Some(eta) = &p.eta {
        parts.push(format!("eta {eta}"));
    }
    parts.join(" ")
}

fn eprint_line(line: &str) {
    let _ = writeln!(std::io::stderr().lock(), "{line}");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn progress(step: u64, total: u64) -> Progress {
        Progress {
            step,
            total_steps: total,
            percent: percent(step, total).map(|v| format!("{v}%")),
            loss: Some(significant(2.315_432, 5)),
            tokens_per_second: Some(1834),
            eta: eta(step, Duration::from_secs(18), step, total).map(human_duration),
            last_update_time: None,
        }
    }

    #[test]
    fn the_field_manager_is_the_api_group_s_trainer() {
        assert_eq!(
            FIELD_MANAGER,
            format!("{}/trainer", modelcommons_crds::GROUP)
        );
    }

    #[test]
    fn percent_rounds_down_and_needs_a_total() {
        assert_eq!(percent(40, 200), Some(20));
        assert_eq!(percent(199, 200), Some(99), "100% only when finished");
        assert_eq!(percent(200, 200), Some(100));
        assert_eq!(percent(250, 200), Some(100));
        assert_eq!(percent(0, 200), Some(0));
        assert_eq!(percent(1, 3), Some(33));
        assert_eq!(percent(u64::MAX - 1, u64::MAX), Some(99), "no overflow");
        assert_eq!(percent(5, 0), None);
    }

    #[test]
    fn eta_is_the_remaining_steps_at_the_measured_rate() {
        // 40 steps in 18 s, 160 to go: 72 s.
        assert_eq!(
            eta(40, Duration::from_secs(18), 40, 200),
            Some(Duration::from_secs(72))
        );
        // Resumed at 500: 10 steps measured in 5 s, 490 to go at 2 steps/s = 245 s (not
        // 510 steps in 5 s).
        assert_eq!(
            eta(10, Duration::from_secs(5), 510, 1000),
            Some(Duration::from_secs(245))
        );
        assert_eq!(
            eta(3, Duration::from_secs(9), 200, 200),
            Some(Duration::ZERO)
        );
        assert_eq!(
            eta(0, Duration::from_secs(9), 500, 1000),
            None,
            "nothing measured yet"
        );
        assert_eq!(eta(5, Duration::ZERO, 5, 1000), None);
        assert_eq!(eta(5, Duration::from_secs(9), 5, 0), None, "no total");
        let stalled = eta(1, Duration::from_secs(1_000_000), 1, u64::MAX).unwrap();
        assert_eq!(stalled.as_secs(), 315_360_000, "capped, never a panic");
    }

    #[test]
    fn durations_read_like_a_clock() {
        assert_eq!(human_duration(Duration::ZERO), "0s");
        assert_eq!(
            human_duration(Duration::from_millis(100)),
            "1s",
            "not done yet"
        );
        assert_eq!(human_duration(Duration::from_millis(44_200)), "45s");
        assert_eq!(human_duration(Duration::from_secs(59)), "59s");
        assert_eq!(human_duration(Duration::from_secs(60)), "1m00s");
        assert_eq!(human_duration(Duration::from_secs(72)), "1m12s");
        assert_eq!(human_duration(Duration::from_secs(750)), "12m30s");
        assert_eq!(human_duration(Duration::from_secs(3599)), "59m59s");
        assert_eq!(
            human_duration(Duration::from_secs(3600 + 5 * 60 + 59)),
            "1h05m"
        );
        assert_eq!(human_duration(Duration::from_secs(100 * 3600)), "100h00m");
    }

    #[test]
    fn numbers_are_decimal_strings_without_exponents() {
        assert_eq!(significant(2.315_432, 5), "2.3154");
        assert_eq!(significant(12.5, 5), "12.500");
        assert_eq!(significant(0.000_123_456, 5), "0.00012346");
        assert_eq!(significant(0.0, 5), "0.0000");
        assert_eq!(significant(123_456.7, 5), "123457");
        assert_eq!(significant(f64::NAN, 5), "NaN");
        assert_eq!(significant(f64::INFINITY, 5), "inf");
        assert_eq!(trim_zeros(significant(f64::from(0.6_f32), 6)), "0.6");
        assert_eq!(trim_zeros(significant(2.0, 6)), "2");
        assert_eq!(trim_zeros(significant(1234.0, 3)), "1234");
        assert_eq!(trim_zeros(significant(-0.25, 6)), "-0.25");
        assert_eq!(
            trim_zeros(significant(1e-30, 6)),
            "0",
            "17 decimals at most"
        );
    }

    #[test]
    fn a_progress_line_names_every_figure_it_has() {
        assert_eq!(
            progress_line(&progress(40, 200)),
            "step 40/200 (20%) loss 2.3154 1834 tok/s eta 1m12s"
        );
        let mut unknown = progress(40, 0);
        unknown.tokens_per_second = None;
        assert_eq!(progress_line(&unknown), "step 40 loss 2.3154");
    }

    #[test]
    fn the_namespace_comes_from_the_first_nonblank_source() {
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |k: &str| {
                pairs
                    .iter()
                    .find(|(n, _)| *n == k)
                    .map(|(_, v)| (*v).to_string())
            }
        };
        let file = || Some("from-file\n".to_string());
        assert_eq!(
            namespace_from(
                env(&[("MODELCOMMONS_NAMESPACE", "a"), ("POD_NAMESPACE", "b")]),
                file
            ),
            "a"
        );
        assert_eq!(
            namespace_from(
                env(&[("MODELCOMMONS_NAMESPACE", " "), ("POD_NAMESPACE", "b")]),
                file
            ),
            "b"
        );
        assert_eq!(namespace_from(env(&[]), file), "from-file");
        assert_eq!(namespace_from(env(&[]), || None), "default");
    }

    #[test]
    fn the_interval_is_whole_seconds_defaulting_to_five() {
        assert_eq!(interval_from(None).unwrap(), DEFAULT_INTERVAL);
        assert_eq!(interval_from(Some(" ".into())).unwrap(), DEFAULT_INTERVAL);
        assert_eq!(interval_from(Some("0".into())).unwrap(), Duration::ZERO);
        assert_eq!(
            interval_from(Some("30".into())).unwrap(),
            Duration::from_secs(30)
        );
        let err = interval_from(Some("5s".into())).unwrap_err().to_string();
        assert!(
            err.contains("MODELCOMMONS_REPORT_INTERVAL_SECONDS=\"5s\""),
            "{err}"
        );
    }

    #[test]
    fn only_the_first_worker_reports() {
        let rank =
            |k: &'static str, v: &'static str| move |q: &str| (q == k).then(|| v.to_string());
        assert!(is_first_worker(|_| None));
        assert!(is_first_worker(rank("PET_NODE_RANK", "0")));
        assert!(!is_first_worker(rank("PET_NODE_RANK", "1")));
        assert!(is_first_worker(rank("JOB_COMPLETION_INDEX", "0")));
        assert!(!is_first_worker(rank("JOB_COMPLETION_INDEX", "3")));
    }

    fn update(step: u64, total_steps: u64) -> ProgressUpdate {
        ProgressUpdate {
            step,
            total_steps,
            loss: 1.5,
            tokens_per_second: 100.0,
        }
    }

    /// Seconds of a `human_duration` string (`45s`, `1m12s`, `3h05m`).
    fn seconds(s: &str) -> u64 {
        let (mut total, mut n) = (0, 0);
        for c in s.chars() {
            match c {
                '0'..='9' => n = n * 10 + u64::from(c.to_digit(10).unwrap()),
                'h' => (total, n) = (total + n * 3600, 0),
                'm' => (total, n) = (total + n * 60, 0),
                's' => (total, n) = (total + n, 0),
                _ => panic!("not a duration: {s}"),
            }
        }
        total
    }

    #[tokio::test]
    async fn a_resumed_run_measures_its_rate_from_its_own_steps() {
        let mut r = Reporter::lines();
        r.progress(update(500, 1000)).await;
        let first = r.progress.clone().unwrap();
        assert_eq!(first.eta, None, "one report measures no rate");
        assert_eq!(first.percent.as_deref(), Some("50%"));
        tokio::time::sleep(Duration::from_millis(200)).await;
        r.progress(update(502, 1000)).await;
        // 2 steps in >= 200 ms, 498 to go: at least 49.8 s (counting the 500 steps done
        // before the resume would give 0s).
        let eta = r.progress.clone().unwrap().eta.unwrap();
        assert!(seconds(&eta) >= 49, "eta {eta}");

        // Told where it resumed, the first report already has an ETA, measured from there.
        let mut r = Reporter::lines().resumed_from(500);
        tokio::time::sleep(Duration::from_millis(100)).await;
        r.progress(update(501, 1000)).await;
        let eta = r.progress.clone().unwrap().eta.unwrap();
        assert!(seconds(&eta) >= 49, "eta {eta}");

        // Steps going backwards (training restarted): measured afresh from there.
        r.progress(update(10, 1000)).await;
        assert_eq!(r.baseline.map(|b| b.0), Some(10));
        assert_eq!(r.progress.clone().unwrap().eta, None);
        r.progress(update(1000, 1000)).await;
        assert_eq!(r.progress.clone().unwrap().eta.as_deref(), Some("0s"));
    }

    #[tokio::test]
    async fn a_local_result_with_a_bad_digest_is_refused() {
        let mut r = Reporter::lines();
        let err = r
            .result(ResultUpdate {
                model_digest: "ABC".into(),
                model_uri: "file:///tmp/m".into(),
                metrics: BTreeMap::new(),
            })
            .await
            .unwrap_err();
        assert!(err.to_string().contains("64 lowercase hex"), "{err}");
    }
}
