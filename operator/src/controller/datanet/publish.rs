//! Publishing a verified version on chain, within the mandate's reward budget.

use super::*;

pub(super) fn datanet_id(dn: &Datanet) -> String {
    format!("{}/{}", dn.namespace().unwrap_or_default(), dn.name_any())
}

/// `RewardBudgetExceeded` when version `version` is not published yet and its pool is more
/// than what is left of the mandate's reward budget on chain.
pub(super) async fn over_budget(
    dn: &Datanet,
    ctx: &Context,
    model: B256,
    version: u32,
) -> Result<Option<Shown>, Error> {
    let h = ctx
        .ledger
        .clone()
        .ok_or_else(|| Error::Invalid("no ledger".into()))?;
    let id = datanet_version_id(&dn.uid().unwrap_or_default(), version);
    if h.ledger
        .published_tx(h.suite.distributor, id)
        .await?
        .is_some()
    {
        return Ok(None);
    }
    let pool = U256::from_str_radix(&dn.spec.rewards.pool, 10).unwrap_or(U256::MAX);
    let (budget, spent) = h.ledger.reward_budget(h.suite.registry, model).await?;
    let left = budget.saturating_sub(spent);
    if pool <= left {
        return Ok(None);
    }
    Ok(Some(Shown::warn(
        DatanetPhase::Failed,
        reason::REWARD_BUDGET_EXCEEDED,
        format!(
            "version {version}'s pool of {pool} OPEN base units is more than is left of ModelProposal {}'s reward budget on chain ({left} of {budget}; {spent} spent; a budget is spendable once the vote has ratified it): nothing is curated or paid. Lower spec.rewards.pool, or fund a new mandate through governance",
            dn.spec.proposal_ref.name
        ),
    )))
}

/// The version's RewardDistributor distribution, funded with exactly the allocated rewards
/// from the mandate's escrowed budget (`ModelRegistry.fundDistribution`), claimable for
/// [`CLAIM_WINDOW_SECONDS`]; none when nothing is allocated.
async fn fund(
    dn: &Datanet,
    ctx: &Context,
    h: &crate::controller::LedgerHandle,
    model: B256,
    version: u32,
    report: &CurationReport,
) -> Result<ChainRecord, Error> {
    let total = report.rewards.allocated;
    let mut record = ChainRecord::default();
    let Some(root) = report.reward_root.filter(|_| !total.is_zero()) else {
        return Ok(record);
    };
    let block = h
        .ledger
        .provider()
        .get_block_by_number(alloy::eips::BlockNumberOrTag::Latest)
        .await
        .map_err(crate::ledger::Error::from)?
        .map(|b| b.header.timestamp)
        .unwrap_or_default();
    let req = PublishDistribution {
        id: datanet_version_id(&dn.uid().unwrap_or_default(), version),
        kind: KIND_DATANET,
        root,
        content_root: report.dataset_root.unwrap_or_default(),
        total,
        deadline: block + CLAIM_WINDOW_SECONDS,
    };
    let w = ctx
        .ledger_write(
            "ModelRegistry.fundDistribution",
            h.ledger
                .fund_distribution(h.suite.registry, h.suite.distributor, model, &req),
        )
        .await?;
    record.tx_hash = match w {
        Write::Written { tx } => Some(tx.to_string()),
        Write::AlreadyDone => h
            .ledger
            .published_tx(h.suite.distributor, req.id)
            .await?
            .map(|t| t.to_string())
            .or_else(|| Some(format!("published as {}", req.id))),
    };
    Ok(record)
}

/// Publishes a verified version on chain — a RewardDistributor distribution of the
/// recomputed reward root, funded with exactly the pool from the mandate's escrowed budget
/// (`ModelRegistry.fundDistribution`) — and makes the Datanet `Ready`.
#[allow(clippy::too_many_arguments)]
pub(super) async fn publish(
    dn: &Datanet,
    ctx: &Context,
    status: &mut DatanetStatus,
    model: B256,
    version: u32,
    digest: String,
    r: &CurationResult,
    report: CurationReport,
) -> Result<Shown, Error> {
    let h = ctx
        .ledger
        .clone()
        .ok_or_else(|| Error::Invalid("no ledger".into()))?;
    let total = report.rewards.allocated;
    let record = fund(dn, ctx, &h, model, version, &report).await?;
    // The operator's record of the version, before the status mirrors it: what FineTuneJobs
    // train on and what the next version is are read from there.
    crate::controller::lineage::record(
        ctx,
        dn,
        version,
        &crate::controller::lineage::VersionRecord {
            dataset_uri: r.dataset_uri.clone(),
            dataset_root: report.dataset_root.map(|x| x.to_string()),
            manifest_sha256: digest.clone(),
            reward_map_uri: r.reward_map_uri.clone(),
            accepted_quality_bps: report
                .items
                .iter()
                .filter(|i| i.accepted())
                .filter_map(|i| i.quality_bps)
                .collect(),
        },
    )
    .await?;
    let counts = report.counts.to_status();
    status.version = Some(version);
    status.manifest_sha256 = Some(digest);
    status.counts = Some(counts.clone());
    status.dataset_root = report.dataset_root.map(|r| r.to_string());
    status.reward_root = report.reward_root.map(|r| r.to_string());
    // Both verified to be content-addressed under this Datanet's directory of the store.
    status.dataset_uri = Some(r.dataset_uri.clone());
    status.reward_map_uri = Some(r.reward_map_uri.clone());
    status.reward_total = Some(total.to_string());
    status.chain = Some(record);
    ctx.event(
        dn,
        EventType::Normal,
        reason::PUBLISHED,
        format!(
            "version {version}: {} accepted, {} rejected; {total} OPEN base units to contributors{}",
            counts.accepted,
            counts.rejected,
            status
                .chain
                .as_ref()
                .and_then(|r| r.tx_hash.as_ref())
                .map(|t| format!(" (tx {t})"))
                .unwrap_or_default()
        ),
    );
    Ok(Shown::new(
        DatanetPhase::Ready,
        reason::PUBLISHED,
        ready_message(status),
        None,
    ))
}

pub(super) fn ready_message(st: &DatanetStatus) -> String {
    let c = st.counts.clone().unwrap_or_default();
    format!(
        "version {} sealed: {} of {} contributions accepted",
        st.version.unwrap_or_default(),
        c.accepted,
        c.total
    )
}
