//! `dr status`: per policy, the RPO exposure now, the last ticks, the next
//! tick, and which replica of `dr serve` leads it.

use super::output::{self, Format, Table};
use super::{Context, Failure};
use crate::config::Schedule;
use crate::names::PolicyName;
use crate::span::human;
use crate::status::{PolicyStatus, policy_status};
use crate::timespec::fmt_time;
use clap::Args;

/// Arguments of `dr status`.
#[derive(Debug, Args)]
pub struct StatusArgs {
    /// Only this policy.
    #[arg(long, short = 'p', env = "DR_POLICY")]
    pub policy: Option<PolicyName>,
    /// How many recent ticks to show per policy.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(i64).range(1..=1000))]
    pub ticks: i64,
}

pub async fn run(ctx: &Context, a: StatusArgs) -> Result<(), Failure> {
    let now = ctx.app.clock.now();
    let catalog = ctx.catalog().await?;
    let mut policies = catalog.policies().await?;
    if let Some(p) = &a.policy {
        catalog.policy(p.as_str()).await.map_err(Failure::input)?;
        policies.retain(|x| &x.name == p);
    }
    // With a configuration, a policy it no longer lists is told apart;
    // without one, it cannot be.
    let listed = |name: &PolicyName| {
        ctx.config_path
            .is_some()
            .then(|| ctx.config().policies.iter().any(|c| &c.name == name))
    };
    let mut out: Vec<PolicyStatus> = Vec::new();
    for p in &policies {
        let newest = catalog.newest_verified_point(&p.name).await?;
        let ticks = catalog.ticks(&p.name, a.ticks).await?;
        let next = p
            .schedule
            .parse::<Schedule>()
            .ok()
            .and_then(|s| s.next_after(now));
        let s = policy_status(
            p.name.as_str(),
            p.namespace.as_str(),
            p.rpo,
            newest.as_ref(),
            ticks,
            next,
            now,
        );
        let s = match ctx.config().policy(&p.name) {
            Some(c) => s.secrets(c.secrets_mode()),
            None => s,
        };
        out.push(match listed(&p.name) {
            Some(yes) => s.configured(yes),
            None => s,
        });
    }
    // Who leads each policy, as the replica that took its Lease last
    // claimed it (a replica that died keeps its name here until another
    // takes the Lease).
    let mut leaders = catalog.leaders().await?;
    leaders.retain(|l| out.iter().any(|s| s.policy == l.policy));
    let leader_of = |policy: &str| {
        leaders
            .iter()
            .find(|l| l.policy == policy)
            .map_or_else(|| "-".into(), |l| l.holder.clone())
    };
    match ctx.output {
        Format::Json => output::json(&serde_json::json!({
            "now": now,
            "policies": out,
            "leaders": leaders,
        }))?,
        Format::Table => {
            if out.is_empty() {
                println!("No policies in the catalog ({}).", ctx.app.catalog_url);
                return Ok(());
            }
            let mut t = Table::new(&[
                "POLICY",
                "NAMESPACE",
                "EXPOSURE",
                "RPO",
                "VERDICT",
                "NEWEST VERIFIED",
                "CONSISTENCY",
                "NEXT TICK",
                "LEADER",
            ]);
            for s in &out {
                t.row(vec![
                    s.policy.clone(),
                    s.namespace.clone(),
                    s.exposure.map(human).unwrap_or_else(|| "-".into()),
                    s.rpo.to_string(),
                    s.verdict.as_str().into(),
                    output::time_or_dash(s.newest_verified),
                    s.consistency
                        .map_or_else(|| "-".into(), |c| c.as_str().to_owned()),
                    output::time_or_dash(s.next_tick),
                    leader_of(&s.policy),
                ]);
            }
            print!("{}", t.render());
            for note in out.iter().filter_map(PolicyStatus::note) {
                println!("{note}");
            }
            for note in out.iter().filter_map(PolicyStatus::secrets_note) {
                println!("{note}");
            }
            for s in &out {
                if s.last_ticks.is_empty() {
                    continue;
                }
                println!("\nLast ticks of {}:", s.policy);
                let mut t = Table::new(&["TICK", "OUTCOME", "POINT", "REASON"]);
                for k in &s.last_ticks {
                    t.row(vec![
                        fmt_time(k.tick_at),
                        k.outcome.to_string(),
                        k.point_id
                            .map(|p| p.to_string())
                            .unwrap_or_else(|| "-".into()),
                        k.reason.clone().unwrap_or_default(),
                    ]);
                }
                print!("{}", t.render());
            }
        }
    }
    Ok(())
}
