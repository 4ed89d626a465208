//! `kiln-runner`: the runner's command line.

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
use kiln_runner::config::{self, Config, ExecutorKind};
use kiln_runner::gitlab::{Client, RegisterRequest, VersionInfo};
use kiln_runner::job::{Shutdown, Timings};
use kiln_runner::metrics::{self, Metrics};
use kiln_runner::runner::{Runner, RunnerOptions};
use kiln_runner::system_id;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

const DEFAULT_CONFIG: &str = "/etc/kiln-runner/config.toml";

const EXIT_CODES: &str = "Exit codes: 0 success; 1 the input is wrong (the config file's \
    content, a job payload) or the work failed (`verify` found runners GitLab no longer knows, \
    jobs were killed at the shutdown timeout); 2 usage, or a failure of kiln-runner or its \
    environment (a config file that cannot be read, an unusable listen_address, GitLab \
    unreachable or refusing a request).";

/// What kiln-runner was given or asked to do is wrong, or the work itself failed: exit code 1.
#[derive(Debug)]
struct Input(String);

impl std::fmt::Display for Input {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Input {}

/// 1 when the input is wrong or the work failed, 2 for usage, kiln-runner's own failures and
/// its environment's.
fn exit_code(e: &anyhow::Error) -> i32 {
    let input = e.chain().any(|c| {
        c.is::<Input>()
            || c.is::<kiln_runner::runner::RunnerError>()
            || c.downcast_ref::<config::ConfigError>()
                .is_some_and(config::ConfigError::is_input)
    });
    if input {
        1
    } else {
        2
    }
}

#[derive(Parser)]
#[command(
    name = "kiln-runner",
    version,
    about = "A GitLab runner for image-build jobs",
    after_help = EXIT_CODES
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Poll GitLab and run jobs until SIGQUIT (drain) or SIGTERM/SIGINT (abort).
    Run {
        /// The config file.
        #[arg(long, short, default_value = DEFAULT_CONFIG)]
        config: PathBuf,
        /// Parent of build directories (default: `builds` beside the config).
        #[arg(long)]
        builds_dir: Option<PathBuf>,
    },
    /// Register a runner and add it to the config file.
    Register {
        /// The config file.
        #[arg(long, short, default_value = DEFAULT_CONFIG)]
        config: PathBuf,
        /// GitLab's URL.
        #[arg(long, env = "CI_SERVER_URL")]
        url: String,
        /// A legacy registration token (deprecated by GitLab).
        #[arg(long, env = "REGISTRATION_TOKEN", conflicts_with = "token")]
        registration_token: Option<String>,
        /// A runner authentication token (`glrt-…`) created in GitLab's UI.
        #[arg(long, env = "CI_SERVER_TOKEN")]
        token: Option<String>,
        /// The entry's name.
        #[arg(long, default_value = "kiln-runner")]
        name: String,
        /// Comma-separated tags (registration token only).
        #[arg(long)]
        tag_list: Option<String>,
        /// Also run untagged jobs (registration token only).
        #[arg(long)]
        run_untagged: bool,
        /// Lock the runner to its project (registration token only).
        #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
        locked: bool,
        /// Where the entry's jobs run.
        #[arg(long, value_enum, default_value_t = ExecutorKind::Local)]
        executor: ExecutorKind,
    },
    /// Print the Pod and Secret the kubernetes executor makes for a job (Secret values
    /// redacted), as a YAML stream.
    PodSpec {
        /// The config file.
        #[arg(long, short, default_value = DEFAULT_CONFIG)]
        config: PathBuf,
        /// A job payload as GitLab's `POST /jobs/request` returns it (JSON).
        #[arg(long)]
        job: PathBuf,
        /// The entry to use (default: the only kubernetes one).
        #[arg(long)]
        runner: Option<String>,
    },
    /// Check every entry's token with GitLab.
    Verify {
        /// The config file.
        #[arg(long, short, default_value = DEFAULT_CONFIG)]
        config: PathBuf,
        /// Remove entries GitLab no longer knows.
        #[arg(long)]
        delete: bool,
    },
    /// Delete runners on GitLab and remove them from the config.
    Unregister {
        /// The config file.
        #[arg(long, short, default_value = DEFAULT_CONFIG)]
        config: PathBuf,
        /// The entry to remove.
        #[arg(long, required_unless_present = "all_runners")]
        name: Option<String>,
        /// Remove every entry.
        #[arg(long)]
        all_runners: bool,
    },
}

/// Logs to stderr; warnings and errors are also counted in `metrics`.
fn init_logging(level: Option<&str>, format: Option<&str>, metrics: Arc<Metrics>) {
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    let level = match level.unwrap_or("info") {
        "debug" => tracing::Level::DEBUG,
        "warn" | "warning" => tracing::Level::WARN,
        "error" | "fatal" | "panic" => tracing::Level::ERROR,
        _ => tracing::Level::INFO,
    };
    let builder = tracing_subscriber::fmt()
        .with_max_level(level)
        .with_writer(std::io::stderr);
    let errors = metrics::ErrorCounter(metrics);
    if format == Some("json") {
        builder.json().finish().with(errors).init();
    } else {
        builder.with_ansi(false).finish().with(errors).init();
    }
}

fn builds_dir_for(config: &Path) -> PathBuf {
    config.parent().unwrap_or(Path::new(".")).join("builds")
}

async fn cmd_run(config_path: PathBuf, builds_dir: Option<PathBuf>) -> Result<()> {
    let first = Config::load(&config_path)?;
    let metrics = Arc::new(Metrics::default());
    init_logging(
        first.config.log_level.as_deref(),
        first.config.log_format.as_deref(),
        metrics.clone(),
    );
    let watch = config::watch_config(config_path.clone(), Duration::from_secs(3))?;
    let system_id = system_id::load_or_create(&config_path)?;
    if let Some(addr) = &first.config.listen_address {
        let (bound, _task) = metrics::serve(addr, metrics.clone()).await?;
        tracing::info!(address = %bound, "metrics and health listening");
    }
    let (tx, rx) = tokio::sync::watch::channel(Shutdown::None);
    tokio::spawn(async move {
        use tokio::signal::unix::{signal, SignalKind};
        let (Ok(mut quit), Ok(mut term), Ok(mut int)) = (
            signal(SignalKind::quit()),
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) else {
            tracing::error!("cannot install signal handlers");
            return;
        };
        loop {
            tokio::select! {
                _ = quit.recv() => {
                    tracing::info!("SIGQUIT: finishing running jobs, taking no new ones");
                    tx.send_if_modified(|s| if *s == Shutdown::None { *s = Shutdown::Drain; true } else { false });
                }
                _ = term.recv() => { tracing::info!("SIGTERM: aborting jobs"); let _ = tx.send(Shutdown::Abort); }
                _ = int.recv() => { tracing::info!("SIGINT: aborting jobs"); let _ = tx.send(Shutdown::Abort); }
            }
        }
    });
    let opts = RunnerOptions {
        system_id,
        builds_dir: builds_dir.unwrap_or_else(|| builds_dir_for(&config_path)),
        timings: Timings::default(),
        check_interval: None,
    };
    tracing::info!(version = kiln_runner::VERSION, config = %config_path.display(), "kiln-runner starting");
    Runner::new(opts, watch, rx, metrics).run().await?;
    Ok(())
}

#[allow(clippy::too_many_arguments)]
async fn cmd_register(
    config_path: PathBuf,
    url: String,
    registration_token: Option<String>,
    token: Option<String>,
    name: String,
    tag_list: Option<String>,
    run_untagged: bool,
    locked: bool,
    executor: ExecutorKind,
) -> Result<()> {
    let system_id = system_id::load_or_create(&config_path)?;
    let client = Client::new(&url)?;
    let (id, token) = match (registration_token, token) {
        (_, Some(t)) => {
            let c = client
                .verify(&t, &system_id)
                .await
                .context("verifying the runner token")?;
            (c.id, t)
        }
        (Some(reg), None) => {
            let c = client
                .register(&RegisterRequest {
                    token: reg,
                    description: name.clone(),
                    tag_list,
                    run_untagged,
                    locked,
                    paused: false,
                    maximum_timeout: None,
                    info: VersionInfo::new(executor.as_str()),
                })
                .await
                .context("registering the runner")?;
            let t = c.token.context("GitLab returned no token")?;
            (c.id, t)
        }
        (None, None) => bail!("give --token (glrt-…) or --registration-token"),
    };
    let mut entry = toml::Table::new();
    entry.insert("name".into(), name.clone().into());
    entry.insert("url".into(), url.into());
    if let Some(id) = id {
        entry.insert("id".into(), id.into());
    }
    entry.insert("token".into(), token.into());
    entry.insert("executor".into(), executor.as_str().into());
    config::append_runner(&config_path, entry)?;
    println!("Runner {name} registered in {}", config_path.display());
    Ok(())
}

async fn cmd_verify(config_path: PathBuf, delete: bool) -> Result<()> {
    let cfg = Config::load(&config_path)?.config;
    let system_id = system_id::load_or_create(&config_path)?;
    let mut gone = Vec::new();
    let mut failed = false;
    for r in &cfg.runners {
        match Client::new(&r.url)?.verify(&r.token, &system_id).await {
            Ok(_) => println!(
                "Verifying runner {} ({})... is valid",
                r.name,
                r.short_token()
            ),
            Err(kiln_runner::gitlab::GitlabError::Status { status: 403, .. }) => {
                println!(
                    "Verifying runner {} ({})... is removed",
                    r.name,
                    r.short_token()
                );
                gone.push(r.token.clone());
            }
            Err(e) => {
                eprintln!(
                    "kiln-runner: verifying {}: {}",
                    r.name,
                    kiln_runner::error_chain(&e)
                );
                failed = true;
            }
        }
    }
    if delete && !gone.is_empty() {
        config::remove_runners(&config_path, &gone)?;
    }
    if failed {
        bail!("some runners could not be verified");
    }
    if !gone.is_empty() && !delete {
        bail!(Input("some runners are not valid".into()));
    }
    Ok(())
}

async fn cmd_unregister(config_path: PathBuf, name: Option<String>, all: bool) -> Result<()> {
    let cfg = Config::load(&config_path)?.config;
    let chosen: Vec<_> = cfg
        .runners
        .iter()
        .filter(|r| all || Some(&r.name) == name.as_ref())
        .collect();
    if chosen.is_empty() {
        bail!("no runner entry matches");
    }
    let mut done = Vec::new();
    for r in chosen {
        Client::new(&r.url)?
            .unregister(&r.token)
            .await
            .with_context(|| format!("unregistering {}", r.name))?;
        println!("Unregistered runner {}", r.name);
        done.push(r.token.clone());
    }
    config::remove_runners(&config_path, &done)?;
    Ok(())
}

/// `pod-spec`: what the kubernetes executor would create for a job, without a cluster.
fn cmd_pod_spec(config_path: PathBuf, job_path: PathBuf, runner: Option<String>) -> Result<()> {
    use kiln_runner::config::ExecutorKind;
    use kiln_runner::executor::kubernetes::spec;
    let loaded = Config::load(&config_path)?;
    for key in &loaded.unknown_keys {
        eprintln!("warning: unknown config key ignored: {key}");
    }
    let entries: Vec<_> = loaded
        .config
        .runners
        .iter()
        .filter(|r| match &runner {
            Some(name) => &r.name == name,
            None => r.executor == ExecutorKind::Kubernetes,
        })
        .collect();
    let entry = match entries.as_slice() {
        [one] => *one,
        // Which entry to use is the command line's to say: a usage error.
        [] => bail!(match &runner {
            Some(n) => format!("no runner entry named {n:?}"),
            None => "no runner entry with executor = \"kubernetes\"".into(),
        }),
        _ => bail!("several kubernetes entries: pick one with --runner NAME"),
    };
    let text = std::fs::read_to_string(&job_path)
        .with_context(|| format!("reading {}", job_path.display()))?;
    let job: kiln_runner::gitlab::JobResponse = serde_json::from_str(&text)
        // serde's own words can quote a value of the payload, and its variables hold secrets.
        .map_err(|e| Input(format!("line {}, column {}", e.line(), e.column())))
        .with_context(|| format!("{} is not a jobs/request payload", job_path.display()))?;
    let trace = kiln_runner::trace::Trace::new(Vec::<String>::new(), usize::MAX);
    let plan =
        kiln_runner::job::plan::JobPlan::new(&job, entry, spec::job_layout(&job, entry), &trace);
    let certs = spec::placeholder_certs();
    let objects = spec::job_objects(&job, entry, &plan, Some(&certs))?;
    for w in &objects.warnings {
        eprintln!("warning: {w}");
    }
    print!("{}", spec::to_yaml(&objects)?);
    Ok(())
}

async fn dispatch(cli: Cli) -> Result<()> {
    match cli.cmd {
        Cmd::PodSpec {
            config,
            job,
            runner,
        } => cmd_pod_spec(config, job, runner),
        Cmd::Run { config, builds_dir } => cmd_run(config, builds_dir).await,
        Cmd::Register {
            config,
            url,
            registration_token,
            token,
            name,
            tag_list,
            run_untagged,
            locked,
            executor,
        } => {
            cmd_register(
                config,
                url,
                registration_token,
                token,
                name,
                tag_list,
                run_untagged,
                locked,
                executor,
            )
            .await
        }
        Cmd::Verify { config, delete } => cmd_verify(config, delete).await,
        Cmd::Unregister {
            config,
            name,
            all_runners,
        } => cmd_unregister(config, name, all_runners).await,
    }
}

fn main() {
    let cli = Cli::parse();
    let rt = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("kiln-runner: cannot start the async runtime: {e}");
            std::process::exit(2);
        }
    };
    let result = rt.block_on(dispatch(cli));
    // Jobs told to stop have had their process groups killed already; dropping the tasks
    // before `exit` (which runs no destructors) is the fallback for any that outlived that.
    rt.shutdown_timeout(Duration::from_secs(1));
    if let Err(e) = result {
        eprintln!("kiln-runner: {}", kiln_runner::error_chain(e.as_ref()));
        std::process::exit(exit_code(&e));
    }
}
