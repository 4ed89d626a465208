//! `kiln certs DIR`: one job's Docker TLS certificates in the `docker:dind` layout.

use super::Usage;
use clap::Args;
use kiln::dind::certs::{self, CertOptions};
use std::path::PathBuf;
use std::time::Duration;

/// `kiln certs` flags.
#[derive(Debug, Args)]
pub struct CertsArgs {
    /// Directory to write `ca/`, `server/` and `client/` into (as `DOCKER_TLS_CERTDIR`).
    pub dir: PathBuf,
    /// Extra name (DNS name or IP address) for the server certificate (repeatable); `docker`,
    /// `localhost`, `127.0.0.1` and `::1` are always in it.
    #[arg(long, value_name = "NAME")]
    pub san: Vec<String>,
    /// Days the certificates are valid.
    #[arg(long, default_value_t = 1)]
    pub days: u32,
    /// Also write the CA's private key (`ca/key.pem`). The `docker:dind` entrypoint then makes
    /// new certificates over the given ones, so leave it out of a directory dind reads.
    #[arg(long)]
    pub with_ca_key: bool,
}

/// `kiln certs`.
pub fn run(args: &CertsArgs) -> anyhow::Result<()> {
    if args.days == 0 {
        return Err(Usage("--days must be at least 1".into()).into());
    }
    let made = certs::generate(&CertOptions {
        extra_sans: args.san.clone(),
        validity: Duration::from_secs(u64::from(args.days) * 24 * 60 * 60),
    })?;
    made.write_to(&args.dir, args.with_ca_key)?;
    for f in made.files(args.with_ca_key) {
        println!("{:o} {}", f.mode(), args.dir.join(f.path).display());
    }
    println!(
        "server names: {}; valid for {} day{}",
        made.sans.join(", "),
        args.days,
        if args.days == 1 { "" } else { "s" }
    );
    Ok(())
}
