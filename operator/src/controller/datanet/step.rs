//! One look at a Datanet: the proposal, the manifest, the version, the curation Job and its
//! verified result, in that order; the first that holds it back says why (the decisions are
//! [`super::decide`]'s).

use super::*;

/// The manifest as the operator read it.
pub(super) struct Read {
    /// Its text.
    pub(super) text: String,
    /// Parsed.
    pub(super) parsed: crate::contribution::Manifest,
    /// Its digest.
    pub(super) digest: String,
}

pub(super) async fn step(
    dn: &Datanet,
    ctx: &Context,
    status: &mut DatanetStatus,
) -> Result<Shown, Error> {
    let ns = dn.namespace().unwrap_or_default();
    let proposal = Api::<ModelProposal>::namespaced(ctx.client.clone(), &ns)
        .get_opt(&dn.spec.proposal_ref.name)
        .await?;
    if let Some(held) = decide::proposal_gate(dn, status, proposal.as_ref(), ctx.config.recheck) {
        return Ok(held);
    }
    // Every pool of this Datanet is drawn from the proposal's reward budget on chain.
    let model =
        crate::ledger::ids::model_id(&proposal.as_ref().and_then(|p| p.uid()).unwrap_or_default());
    let read = match read_manifest(dn, ctx, status).await? {
        Ok(r) => r,
        Err(held) => return Ok(held),
    };
    // Which manifests are published, and so the next version, come from the operator's own
    // record (never from `status`, which a tenant can rewrite).
    let published = crate::controller::lineage::versions(ctx, dn).await?;
    let version = match decide::version(status, &published, &read.digest) {
        Ok(v) => v,
        Err(ready) => return Ok(ready),
    };
    // A pool the mandate's budget cannot pay is refused before anything runs.
    if let Some(shown) = over_budget(dn, ctx, model, version).await? {
        return Ok(shown);
    }
    let job = match curation(dn, ctx, version, &read).await? {
        Ok(j) => j,
        Err(held) => return Ok(held),
    };
    let (state, failure) = job_state(&job);
    if state == JobState::Complete
        && let Some(r) = pod_result::<CurationResult, _>(ctx, dn, &job).await?
    {
        return verified(dn, ctx, status, &read, model, version, r).await;
    }
    job_outcome(dn, ctx, &job, state, failure, version).await
}

/// Reads and parses the manifest, or says why it cannot be.
async fn read_manifest(
    dn: &Datanet,
    ctx: &Context,
    status: &DatanetStatus,
) -> Result<Result<Read, Shown>, Error> {
    let ns = dn.namespace().unwrap_or_default();
    let source = match ManifestSource::of(dn) {
        Ok(s) => s,
        Err(m) => {
            let held = Shown::new(DatanetPhase::Failed, reason::MANIFEST_UNSUPPORTED, m, None);
            return Ok(Err(held));
        }
    };
    let text = match source.read(&ctx.client, &ns, &ctx.config).await {
        Ok(m) => m,
        Err(m) => {
            return Ok(Err(decide::manifest_unavailable(
                status,
                &source,
                m,
                ctx.config.recheck,
            )));
        }
    };
    match curate::parse_manifest(&text) {
        Ok(parsed) => {
            let digest = curate::manifest_digest(&parsed);
            Ok(Ok(Read {
                text,
                parsed,
                digest,
            }))
        }
        Err(e) => Ok(Err(Shown::new(
            DatanetPhase::Failed,
            reason::MANIFEST_INVALID,
            format!("{e}; fix the manifest and the version is curated"),
            None,
        ))),
    }
}

/// The operator's curation Job of `version` in the trusted namespace (created once per
/// manifest digest and version, on the manifest bytes the operator read, its inputs handed
/// over beside it); only the operator's own Job counts.
async fn curation(
    dn: &Datanet,
    ctx: &Context,
    version: u32,
    read: &Read,
) -> Result<Result<Job, Shown>, Error> {
    let trusted = &ctx.config.trusted_namespace;
    let jobs = Api::<Job>::namespaced(ctx.client.clone(), trusted);
    let name = job_name(&dn.uid().unwrap_or_default(), version, &read.digest);
    let desired = curation_job(dn, &ctx.config, version, &read.digest)?;
    let job = match jobs.get_opt(&name).await? {
        Some(j) => j,
        None => match create(dn, ctx, &desired, version, read).await? {
            Ok(j) => j,
            Err(held) => return Ok(Err(held)),
        },
    };
    match job_is_ours(&job, dn, &desired) {
        Ok(()) => Ok(Ok(job)),
        Err(why) => Ok(Err(decide::forged_job(trusted, &name, version, &why))),
    }
}

/// Creates the curation Job with its inputs.
async fn create(
    dn: &Datanet,
    ctx: &Context,
    desired: &Job,
    version: u32,
    read: &Read,
) -> Result<Result<Job, Shown>, Error> {
    let trusted = &ctx.config.trusted_namespace;
    let name = desired.name_any();
    if let Some(shown) = hand_over(dn, ctx, &name, &read.text, None).await? {
        return Ok(Err(shown));
    }
    let jobs = Api::<Job>::namespaced(ctx.client.clone(), trusted);
    let j = match ssa(&jobs, desired).await {
        Ok(j) => j,
        Err(Error::Kube(kube::Error::Api(e))) if e.code == 404 => {
            return Ok(Err(decide::trusted_namespace_missing(
                trusted,
                &e.message,
                ctx.config.recheck,
            )));
        }
        Err(e) => return Err(e),
    };
    // The inputs go with the Job (garbage-collected when its TTL removes it).
    hand_over(dn, ctx, &name, &read.text, Some(&j)).await?;
    ctx.event(
        dn,
        EventType::Normal,
        reason::CURATION_STARTED,
        format!(
            "Job {trusted}/{name} curates version {version} (manifest sha256 {})",
            read.digest
        ),
    );
    Ok(Ok(j))
}

/// A completed curation's result: checked against what was asked and recomputed from the
/// artifacts, then published within the mandate's budget.
async fn verified(
    dn: &Datanet,
    ctx: &Context,
    status: &mut DatanetStatus,
    read: &Read,
    model: B256,
    version: u32,
    r: CurationResult,
) -> Result<Shown, Error> {
    let trusted = &ctx.config.trusted_namespace;
    let name = job_name(&dn.uid().unwrap_or_default(), version, &read.digest);
    if r.version != version || r.manifest_sha256 != read.digest {
        return Ok(decide::mismatch(trusted, &name, version, &read.digest, &r));
    }
    let report = match read_verified(ctx, dn, &read.parsed, &r) {
        Ok(report) => report,
        Err(u) => return Ok(decide::unverified(trusted, &name, version, u)),
    };
    if let Some(shown) = over_budget(dn, ctx, model, version).await? {
        return Ok(shown);
    }
    publish(
        dn,
        ctx,
        status,
        model,
        version,
        read.digest.clone(),
        &r,
        report,
    )
    .await
}

/// A curation Job without a result: failed (retried when asked), completed without a
/// report, or running.
async fn job_outcome(
    dn: &Datanet,
    ctx: &Context,
    job: &Job,
    state: JobState,
    failure: Option<(String, String)>,
    version: u32,
) -> Result<Shown, Error> {
    let trusted = &ctx.config.trusted_namespace;
    let name = job.name_any();
    let asked = dn.annotations().get(ANNOTATION_RETRY);
    if state == JobState::Failed
        && asked.is_some()
        && asked != job.annotations().get(ANNOTATION_RETRY)
    {
        // Another attempt asked for: the failed Job (and, with it, its inputs) goes, and the
        // next look creates it again.
        Api::<Job>::namespaced(ctx.client.clone(), trusted)
            .delete(&name, &kube::api::DeleteParams::background())
            .await?;
        return Ok(decide::retried(trusted, &name));
    }
    let said = match state {
        JobState::Failed => pod_failure(ctx, job).await?,
        _ => None,
    };
    let completed = job.status.as_ref().and_then(|s| s.completion_time.clone());
    let facts = decide::JobFacts {
        trusted,
        name: &name,
        version,
        state,
        failure: failure.map(|f| f.1),
        said,
        completed,
    };
    Ok(decide::job_outcome(
        dn,
        &facts,
        &now(),
        ctx.config.result_grace,
        ctx.config.recheck,
    ))
}
