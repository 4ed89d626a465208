//! config.toml: golden parse, unknown keys, reload.

use kiln_runner::config::kubernetes::ResourceConfig;
use kiln_runner::config::{
    watch_config, Config, ConfigDuration, ExecutorKind, KilnConfig, KilnMode, KubernetesConfig,
    RunnerConfig,
};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

const GOLDEN: &str = r#"
concurrent = 4
check_interval = 5
log_level = "debug"
log_format = "json"
listen_address = "127.0.0.1:9252"
shutdown_timeout = 45

[[runners]]
  name = "kiln-local"
  url = "https://gitlab.example.com/"
  id = 42
  token = "glrt-abcdefghijkl"
  token_obtained_at = 2024-01-02T03:04:05Z
  token_expires_at = 0001-01-01T00:00:00Z
  executor = "local"
  limit = 2
  request_concurrency = 3
  unhealthy_requests_limit = 5
  unhealthy_interval = "1h30m"
  environment = ["FOO=bar", "EMPTY="]
  output_limit = 8192
  builds_dir = "/var/lib/kiln/builds"
  [runners.kiln]
    mode = "dind"
    cache_dir = "/var/cache/kiln"
    bin_dir = "/opt/kiln/bin"
    allowed_overrides = ["KILN_MODE"]

[[runners]]
  name = "kiln-k8s"
  url = "https://gitlab.example.com"
  token = "glrt-zyxwvutsrqpo"
  executor = "kubernetes"
  [runners.kubernetes]
    namespace = "ci"
    image = "registry.example.com/kiln:latest"
    privileged = false
    service_account = "kiln"
    cpu_request = "500m"
    cpu_limit = "2"
    memory_request = "512Mi"
    memory_limit = "4Gi"
    [runners.kubernetes.node_selector]
      "kubernetes.io/arch" = "amd64"
"#;

#[test]
fn golden_parse() {
    let loaded = Config::parse(GOLDEN, Path::new("config.toml")).unwrap();
    assert!(loaded.unknown_keys.is_empty(), "{:?}", loaded.unknown_keys);
    let expected = Config {
        concurrent: 4,
        check_interval: 5,
        log_level: Some("debug".into()),
        log_format: Some("json".into()),
        listen_address: Some("127.0.0.1:9252".into()),
        shutdown_timeout: 45,
        runners: vec![
            RunnerConfig {
                name: "kiln-local".into(),
                url: "https://gitlab.example.com/".into(),
                token: "glrt-abcdefghijkl".into(),
                id: Some(42),
                executor: ExecutorKind::Local,
                limit: 2,
                request_concurrency: 3,
                unhealthy_requests_limit: 5,
                unhealthy_interval: Some(ConfigDuration(Duration::from_secs(5400))),
                environment: vec!["FOO=bar".into(), "EMPTY=".into()],
                output_limit: 8192,
                builds_dir: Some(PathBuf::from("/var/lib/kiln/builds")),
                kubernetes: None,
                kiln: KilnConfig {
                    mode: KilnMode::Dind,
                    cache_dir: Some("/var/cache/kiln".into()),
                    bin_dir: Some("/opt/kiln/bin".into()),
                    allowed_overrides: vec!["KILN_MODE".into()],
                },
            },
            RunnerConfig {
                name: "kiln-k8s".into(),
                url: "https://gitlab.example.com".into(),
                token: "glrt-zyxwvutsrqpo".into(),
                executor: ExecutorKind::Kubernetes,
                kubernetes: Some(KubernetesConfig {
                    namespace: Some("ci".into()),
                    image: Some("registry.example.com/kiln:latest".into()),
                    privileged: false,
                    service_account: Some("kiln".into()),
                    resources: ResourceConfig {
                        cpu_request: Some("500m".into()),
                        cpu_limit: Some("2".into()),
                        memory_request: Some("512Mi".into()),
                        memory_limit: Some("4Gi".into()),
                        ..Default::default()
                    },
                    node_selector: BTreeMap::from([("kubernetes.io/arch".into(), "amd64".into())]),
                    ..Default::default()
                }),
                ..Default::default()
            },
        ],
    };
    assert_eq!(loaded.config, expected);
    assert_eq!(loaded.config.check_interval(), Duration::from_secs(5));
    assert_eq!(loaded.config.runners[0].output_limit_bytes(), 8192 * 1024);
    assert_eq!(loaded.config.runners[0].short_token(), "abcdefgh");
}

#[test]
fn defaults_match_gitlab_runner() {
    let c = Config::parse(
        "[[runners]]\nurl = \"https://g\"\ntoken = \"t\"\n",
        Path::new("c"),
    )
    .unwrap()
    .config;
    assert_eq!(c.concurrent, 1);
    assert_eq!(c.check_interval(), Duration::from_secs(3));
    assert_eq!(c.shutdown_timeout(), Duration::from_secs(30));
    let r = &c.runners[0];
    assert_eq!(r.output_limit, 4096);
    assert_eq!(r.request_concurrency, 1);
    assert_eq!(r.limit, 0);
    assert_eq!(r.executor, ExecutorKind::Local);
    assert_eq!(r.kiln.mode, KilnMode::Rootless);
    assert_eq!(r.unhealthy_requests_limit(), 3);
    assert_eq!(r.unhealthy_interval(), Duration::from_secs(60));
}

#[test]
fn unhealthy_interval_takes_seconds_or_a_duration() {
    let parse = |v: &str| {
        let text =
            format!("[[runners]]\nurl = \"https://g\"\ntoken = \"t\"\nunhealthy_interval = {v}\n");
        Config::parse(&text, Path::new("c")).map(|l| l.config.runners[0].unhealthy_interval())
    };
    assert_eq!(parse("90").unwrap(), Duration::from_secs(90));
    assert_eq!(parse("\"500ms\"").unwrap(), Duration::from_millis(500));
    assert!(parse("\"soon\"").is_err());
}

#[test]
fn unknown_keys_are_reported_by_dotted_path() {
    let text = r#"
concurrent = 1
sentry_dsn = "x"
[session_server]
  listen_address = "0.0.0.0:8093"
[[runners]]
  url = "https://g"
  token = "t"
  shell = "bash"
  [runners.docker]
    image = "alpine"
  [runners.kiln]
    mode = "rootless"
    colour = "blue"
  [runners.kubernetes]
    namespace = "ci"
    helper_cpus = "x"
[[runners]]
  url = "https://g"
  token = "u"
  tls-ca-file = "/ca"
"#;
    let loaded = Config::parse(text, Path::new("c")).unwrap();
    let mut got = loaded.unknown_keys.clone();
    got.sort();
    assert_eq!(
        got,
        [
            "runners[0].docker",
            "runners[0].kiln.colour",
            "runners[0].kubernetes.helper_cpus",
            "runners[0].shell",
            "runners[1].tls-ca-file",
            "sentry_dsn",
            "session_server",
        ]
    );
    assert_eq!(loaded.config.runners.len(), 2);
}

#[test]
fn invalid_values_are_errors() {
    for bad in [
        "concurrent = 0",
        "concurrent = \"four\"",
        "[[runners]]\nurl = \"u\"\n",
        "[[runners]]\nurl = \"u\"\ntoken = \"t\"\nexecutor = \"docker\"\n",
        "[[runners]]\nurl = \"u\"\ntoken = \"t\"\n[runners.kiln]\nmode = \"privileged\"\n",
        "not toml at all [",
    ] {
        assert!(Config::parse(bad, Path::new("c")).is_err(), "{bad}");
    }
}

#[test]
fn register_and_unregister_edit_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.toml");
    let mut e = toml::Table::new();
    e.insert("name".into(), "a".into());
    e.insert("url".into(), "https://g".into());
    e.insert("token".into(), "glrt-a".into());
    kiln_runner::config::append_runner(&path, e.clone()).unwrap();
    e.insert("name".into(), "b".into());
    e.insert("token".into(), "glrt-b".into());
    kiln_runner::config::append_runner(&path, e).unwrap();
    let c = Config::load(&path).unwrap().config;
    assert_eq!(c.runners.len(), 2);
    kiln_runner::config::remove_runners(&path, &["glrt-a".into()]).unwrap();
    let c = Config::load(&path).unwrap().config;
    assert_eq!(c.runners.len(), 1);
    assert_eq!(c.runners[0].name, "b");
}

fn bump(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap();
    // Same-second writes must still count as a change.
    let f = std::fs::File::options().write(true).open(path).unwrap();
    f.set_modified(std::time::SystemTime::now() + Duration::from_secs(5))
        .unwrap();
}

#[tokio::test]
async fn reloads_when_file_changes_and_keeps_last_good_config() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.toml");
    std::fs::write(&path, "concurrent = 1\n").unwrap();
    let mut rx = watch_config(path.clone(), Duration::from_millis(50)).unwrap();
    assert_eq!(rx.borrow().concurrent, 1);

    bump(&path, "concurrent = 7\n");
    tokio::time::timeout(Duration::from_secs(5), rx.changed())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(rx.borrow_and_update().concurrent, 7);

    // A broken file is not applied.
    std::fs::write(&path, "concurrent = [").unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!rx.has_changed().unwrap());
    assert_eq!(rx.borrow().concurrent, 7);

    bump(&path, "concurrent = 9\n");
    tokio::time::timeout(Duration::from_secs(5), rx.changed())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(rx.borrow().concurrent, 9);
}
