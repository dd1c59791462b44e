//! `dr serve`: the daemon.

use super::{Context, Failure};
use clap::Args;

/// Arguments of `dr serve`.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address for /healthz and /readyz (port 0 picks a free port; the bound
    /// address is logged on stderr).
    #[arg(
        long,
        env = "DR_LISTEN",
        default_value = "0.0.0.0:8080",
        value_name = "ADDR"
    )]
    pub listen: String,
}

pub async fn run(ctx: &Context, a: ServeArgs) -> Result<(), Failure> {
    let catalog = ctx.catalog().await?;
    let (listener, local) = crate::serve::bind(&a.listen)
        .await
        .map_err(Failure::input)?;
    eprintln!(
        "dr serve: catalog {}, {} polic{}, listening on http://{local}",
        ctx.catalog_url,
        ctx.config.policies.len(),
        if ctx.config.policies.len() == 1 {
            "y"
        } else {
            "ies"
        }
    );
    crate::serve::run(listener, local, catalog, crate::serve::shutdown_signal()).await?;
    eprintln!("dr serve: stopped");
    Ok(())
}
