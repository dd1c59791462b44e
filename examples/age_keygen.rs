//! Writes a new age identity file (as `age-keygen -o FILE` does) and prints
//! its recipient, for the demo's `secrets: {recipients: [...]}` without the
//! age CLI: `cargo run --example age_keygen -- FILE`.

use std::path::PathBuf;

fn main() -> anyhow::Result<()> {
    let path: PathBuf = std::env::args_os()
        .nth(1)
        .map(PathBuf::from)
        .ok_or_else(|| anyhow::anyhow!("usage: age_keygen FILE"))?;
    let (id, text) = dr::secrets::Identity::generate(&path);
    std::fs::write(&path, text)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))?;
    }
    for r in id.recipients() {
        println!("{r}");
    }
    Ok(())
}
