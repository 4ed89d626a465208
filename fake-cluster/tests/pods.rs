//! The kubelet: pods run as processes, with logs, exec, init order, sidecars, namespaces,
//! volumes, users, and deletion.

use std::time::{Duration, Instant};

use futures_util::{AsyncBufReadExt, TryStreamExt};
use k8s_openapi::api::core::v1::{Pod, Secret};
use kiln_fake_cluster::{live_processes, FakeCluster};
use kube::api::{Api, AttachParams, DeleteParams, LogParams, PostParams};
use serde_json::{json, Value};
use tokio::io::AsyncReadExt;

async fn create(c: &FakeCluster, spec: Value) -> Api<Pod> {
    let pods: Api<Pod> = Api::namespaced(c.client(), "default");
    let p: Pod = serde_json::from_value(json!({"metadata": {"name": "p"}, "spec": spec})).unwrap();
    pods.create(&PostParams::default(), &p).await.unwrap();
    pods
}

async fn wait_for(c: &FakeCluster, what: &str, f: impl Fn(&Pod) -> bool) -> Pod {
    let start = Instant::now();
    loop {
        if let Some(p) = c.pod("default", "p") {
            if f(&p) {
                return p;
            }
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "timed out waiting for {what}: {:#?}",
                p.status
            );
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn phase(p: &Pod) -> String {
    p.status
        .as_ref()
        .and_then(|s| s.phase.clone())
        .unwrap_or_default()
}

async fn finished(c: &FakeCluster) -> Pod {
    wait_for(c, "the pod to finish", |p| {
        matches!(phase(p).as_str(), "Succeeded" | "Failed")
    })
    .await
}

fn sh(name: &str, script: &str) -> Value {
    json!({"name": name, "image": "host", "command": ["/bin/sh", "-c", script]})
}

fn exit_code(p: &Pod, name: &str) -> i32 {
    let st = p.status.clone().unwrap();
    let cs = st
        .container_statuses
        .iter()
        .flatten()
        .chain(st.init_container_statuses.iter().flatten())
        .find(|c| c.name == name)
        .unwrap()
        .clone();
    cs.state.unwrap().terminated.unwrap().exit_code
}

#[tokio::test]
async fn a_pod_runs_to_success_with_its_output_in_the_log() {
    let c = FakeCluster::start().await.unwrap();
    let pods = create(
        &c,
        json!({"restartPolicy": "Never", "containers": [sh("main", "echo hello; echo oops >&2")]}),
    )
    .await;
    let p = finished(&c).await;
    assert_eq!(phase(&p), "Succeeded");
    assert_eq!(exit_code(&p, "main"), 0);
    let log = pods.logs("p", &LogParams::default()).await.unwrap();
    assert_eq!(log, "hello\noops\n");
    let events: Api<k8s_openapi::api::core::v1::Event> = Api::namespaced(c.client(), "default");
    let list = events
        .list(&kube::api::ListParams::default().fields("involvedObject.name=p"))
        .await
        .unwrap();
    let reasons: Vec<String> = list.items.iter().filter_map(|e| e.reason.clone()).collect();
    for r in ["Scheduled", "Pulling", "Pulled", "Created", "Started"] {
        assert!(reasons.contains(&r.to_string()), "{reasons:?}");
    }
}

#[tokio::test]
async fn logs_follow_streams_before_the_container_ends() {
    let c = FakeCluster::start().await.unwrap();
    let pods = create(&c, json!({"restartPolicy": "Never", "containers": [sh("main", "echo first; sleep 2; echo second")]})).await;
    wait_for(&c, "running", |p| phase(p) == "Running").await;
    let started = Instant::now();
    let mut lines = pods
        .log_stream(
            "p",
            &LogParams {
                follow: true,
                ..LogParams::default()
            },
        )
        .await
        .unwrap()
        .lines();
    let first = lines.try_next().await.unwrap().unwrap();
    assert_eq!(first, "first");
    assert!(
        started.elapsed() < Duration::from_millis(1500),
        "the first line came only at the end"
    );
    assert_eq!(lines.try_next().await.unwrap().unwrap(), "second");
    assert!(
        lines.try_next().await.unwrap().is_none(),
        "follow ends with the container"
    );

    let kube::Error::Api(s) = pods
        .logs(
            "p",
            &LogParams {
                container: Some("nope".into()),
                ..LogParams::default()
            },
        )
        .await
        .unwrap_err()
    else {
        panic!()
    };
    assert_eq!(
        (s.code, s.message.as_str()),
        (400, "container nope is not valid for pod p")
    );
}

#[tokio::test]
async fn exec_streams_output_and_reports_the_exit_code() {
    let c = FakeCluster::start().await.unwrap();
    let pods = create(
        &c,
        json!({"restartPolicy": "Never", "containers": [sh("main", "sleep 30")]}),
    )
    .await;
    wait_for(&c, "running", |p| phase(p) == "Running").await;
    let mut proc = pods
        .exec(
            "p",
            ["sh", "-c", "echo early; sleep 2; echo late >&2; exit 3"],
            &AttachParams::default().stderr(true),
        )
        .await
        .unwrap();
    let mut out = proc.stdout().unwrap();
    let started = Instant::now();
    let mut buf = [0u8; 6];
    out.read_exact(&mut buf).await.unwrap();
    assert_eq!(&buf, b"early\n");
    assert!(started.elapsed() < Duration::from_millis(1500));
    let mut err = String::new();
    proc.stderr()
        .unwrap()
        .read_to_string(&mut err)
        .await
        .unwrap();
    assert_eq!(err, "late\n");
    let status = proc.take_status().unwrap().await.unwrap();
    assert_eq!(status.status.as_deref(), Some("Failure"));
    assert_eq!(status.reason.as_deref(), Some("NonZeroExitCode"));
    assert_eq!(
        status.details.unwrap().causes.unwrap()[0]
            .message
            .as_deref(),
        Some("3")
    );
    proc.join().await.unwrap();

    let mut ok = pods
        .exec("p", ["true"], &AttachParams::default())
        .await
        .unwrap();
    let status = ok.take_status().unwrap().await.unwrap();
    assert_eq!(status.status.as_deref(), Some("Success"));
}

#[tokio::test]
async fn init_containers_run_in_order_and_a_sidecar_gates_the_main_container() {
    let c = FakeCluster::start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    c.add_pvc("default", "work", dir.path());
    let spec = json!({
        "restartPolicy": "Never",
        "volumes": [{"name": "w", "persistentVolumeClaim": {"claimName": "work"}}],
        "initContainers": [
            sh("one", "date +%s%N >> /w/order; echo one >> /w/names"),
            sh("two", "echo two >> /w/names"),
            {"name": "side", "image": "host", "restartPolicy": "Always",
             "command": ["/bin/sh", "-c", "sleep 1.5; echo side >> /w/names; touch /tmp/up; exec sleep 30"],
             "volumeMounts": [{"name": "w", "mountPath": "/w"}],
             "startupProbe": {"exec": {"command": ["test", "-e", "/tmp/up"]}, "periodSeconds": 1, "failureThreshold": 10}},
        ],
        "containers": [sh("main", "echo main >> /w/names")],
    });
    let mut spec = spec;
    for list in ["initContainers", "containers"] {
        for ct in spec[list].as_array_mut().unwrap() {
            ct["volumeMounts"] = json!([{"name": "w", "mountPath": "/w"}]);
        }
    }
    create(&c, spec).await;
    let p = finished(&c).await;
    assert_eq!(phase(&p), "Succeeded", "{:#?}", p.status);
    let names = std::fs::read_to_string(dir.path().join("names")).unwrap();
    assert_eq!(
        names, "one\ntwo\nside\nmain\n",
        "main started before the sidecar's startup probe passed"
    );
    let st = p.status.unwrap();
    let side = st
        .init_container_statuses
        .unwrap()
        .into_iter()
        .find(|s| s.name == "side")
        .unwrap();
    assert!(
        side.state.unwrap().terminated.is_some(),
        "the sidecar is stopped when main ends"
    );
}

#[tokio::test]
async fn a_failing_init_container_fails_the_pod() {
    let c = FakeCluster::start().await.unwrap();
    create(&c, json!({"restartPolicy": "Never", "initContainers": [sh("bad", "exit 4")], "containers": [sh("main", "true")]})).await;
    let p = finished(&c).await;
    assert_eq!(phase(&p), "Failed");
    assert_eq!(exit_code(&p, "bad"), 4);
    let main = p
        .status
        .unwrap()
        .container_statuses
        .unwrap()
        .into_iter()
        .next()
        .unwrap();
    assert_eq!(
        main.state.unwrap().waiting.unwrap().reason.as_deref(),
        Some("PodInitializing")
    );
}

#[tokio::test]
async fn containers_share_localhost_and_host_aliases_resolve() {
    let c = FakeCluster::start().await.unwrap();
    let pods = create(&c, json!({
        "restartPolicy": "Never",
        "hostAliases": [{"ip": "127.0.0.1", "hostnames": ["docker"]}],
        "containers": [
            sh("server", "echo from-server | busybox nc -l -p 2375"),
            sh("client", "getent hosts docker; for i in $(seq 50); do busybox nc docker 2375 && exit 0; sleep 0.1; done; exit 1"),
        ],
    })).await;
    let p = finished(&c).await;
    assert_eq!(
        phase(&p),
        "Succeeded",
        "{:?}",
        c.container_log("default", "p", "client")
    );
    let log = pods
        .logs(
            "p",
            &LogParams {
                container: Some("client".into()),
                ..LogParams::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(log, "127.0.0.1       docker\nfrom-server\n");
    // The pod's port is not the host's.
    assert!(std::net::TcpStream::connect("127.0.0.1:2375").is_err());
}

#[tokio::test]
async fn secret_volumes_env_and_run_as_user() {
    let c = FakeCluster::start().await.unwrap();
    let secrets: Api<Secret> = Api::namespaced(c.client(), "default");
    let s: Secret = serde_json::from_value(
        json!({"metadata": {"name": "creds"}, "stringData": {"a": "alpha", "b": "beta"}}),
    )
    .unwrap();
    secrets.create(&PostParams::default(), &s).await.unwrap();
    let pods = create(&c, json!({
        "restartPolicy": "Never",
        "volumes": [
            {"name": "all", "secret": {"secretName": "creds", "defaultMode": 0o444}},
            {"name": "one", "secret": {"secretName": "creds", "items": [{"key": "b", "path": "sub/bee", "mode": 0o600}]}},
        ],
        "containers": [{
            "name": "main", "image": "host",
            "command": ["/bin/sh", "-c", "id -u; id -g; stat -c '%a %n' /s/all/a /s/one/sub/bee; cat /s/all/a; echo; echo $TOKEN; pwd; touch /s/all/x || echo ro"],
            "workingDir": "/tmp",
            "env": [{"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "creds", "key": "b"}}}],
            "securityContext": {"runAsUser": 1000, "runAsGroup": 1000},
            "volumeMounts": [{"name": "all", "mountPath": "/s/all"}, {"name": "one", "mountPath": "/s/one"}],
        }],
    })).await;
    finished(&c).await;
    let log = pods.logs("p", &LogParams::default()).await.unwrap();
    let lines: Vec<&str> = log.lines().collect();
    assert_eq!(
        &lines[..7],
        [
            "1000",
            "1000",
            "444 /s/all/a",
            "600 /s/one/sub/bee",
            "alpha",
            "beta",
            "/tmp"
        ],
        "{log}"
    );
    assert!(log.contains("ro"), "{log}");
}

/// A container's root is its mount namespace's root, not a chroot inside it: the kernel
/// refuses a user namespace to a chrooted process, and rootless builds unshare one (as uid
/// 1000, with a fresh /proc, as kiln's `rootless` isolation does).
#[tokio::test]
async fn a_non_root_container_can_unshare_a_user_namespace() {
    let c = FakeCluster::start().await.unwrap();
    let pods = create(&c, json!({
        "restartPolicy": "Never",
        "containers": [{
            "name": "main", "image": "host",
            "command": ["/bin/sh", "-c", "id -u; unshare -Urm --pid --fork /bin/sh -c 'mount -t proc proc /proc && id -u'"],
            "securityContext": {"runAsUser": 1000, "runAsGroup": 1000},
        }],
    })).await;
    let p = finished(&c).await;
    let log = pods.logs("p", &LogParams::default()).await.unwrap();
    assert_eq!(exit_code(&p, "main"), 0, "{log}");
    assert_eq!(log, "1000\n0\n");
}

#[tokio::test]
async fn a_missing_secret_key_is_a_config_error_and_an_unpullable_image_backs_off() {
    let c = FakeCluster::start().await.unwrap();
    c.set_image("nope:1", kiln_fake_cluster::ImageSource::Unpullable);
    create(&c, json!({
        "restartPolicy": "Never",
        "containers": [
            {"name": "a", "image": "host", "command": ["true"], "env": [{"name": "X", "valueFrom": {"secretKeyRef": {"name": "none", "key": "k"}}}]},
            {"name": "b", "image": "nope:1", "command": ["true"]},
        ],
    })).await;
    let reason = |p: &Pod, n: &str| {
        p.status
            .clone()
            .unwrap()
            .container_statuses
            .unwrap_or_default()
            .into_iter()
            .find(|c| c.name == n)
            .and_then(|c| c.state)
            .and_then(|s| s.waiting)
            .and_then(|w| w.reason)
            .unwrap_or_default()
    };
    let p = wait_for(&c, "config error", |p| {
        reason(p, "a") == "CreateContainerConfigError"
    })
    .await;
    assert_eq!(phase(&p), "Pending");
}

#[tokio::test]
async fn image_pull_back_off() {
    let c = FakeCluster::start().await.unwrap();
    c.set_image("nope:1", kiln_fake_cluster::ImageSource::Unpullable);
    create(&c, json!({"restartPolicy": "Never", "containers": [{"name": "b", "image": "nope:1", "command": ["true"]}]})).await;
    let p = wait_for(&c, "back-off", |p| {
        p.status
            .clone()
            .unwrap()
            .container_statuses
            .unwrap_or_default()
            .iter()
            .any(|c| {
                c.state
                    .clone()
                    .and_then(|s| s.waiting)
                    .and_then(|w| w.reason)
                    .as_deref()
                    == Some("ImagePullBackOff")
            })
    })
    .await;
    let w = p.status.unwrap().container_statuses.unwrap()[0]
        .state
        .clone()
        .unwrap()
        .waiting
        .unwrap();
    assert_eq!(
        w.message.as_deref(),
        Some("Back-off pulling image \"nope:1\"")
    );
}

#[tokio::test]
async fn deletion_stops_processes_and_drop_leaves_nothing() {
    let c = FakeCluster::start().await.unwrap();
    let pods = create(
        &c,
        json!({"restartPolicy": "Never", "terminationGracePeriodSeconds": 1,
        "containers": [sh("main", "trap '' TERM; sleep 60 & wait; sleep 60")]}),
    )
    .await;
    wait_for(&c, "running", |p| phase(p) == "Running").await;
    let mut exec = pods
        .exec("p", ["sleep", "60"], &AttachParams::default())
        .await
        .unwrap();
    let _ = exec.stdout();
    assert!(!c.running_processes().is_empty());
    let started = Instant::now();
    pods.delete("p", &DeleteParams::default()).await.unwrap();
    loop {
        if c.pod("default", "p").is_none() {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(10));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        started.elapsed() >= Duration::from_millis(900),
        "SIGKILL came only after the grace period"
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        c.running_processes().is_empty(),
        "{:?}",
        c.running_processes()
    );

    create(
        &c,
        json!({"restartPolicy": "Never", "containers": [sh("main", "sleep 60")]}),
    )
    .await;
    wait_for(&c, "running", |p| phase(p) == "Running").await;
    let groups = c.process_groups();
    assert!(!live_processes(&groups).is_empty());
    drop(c);
    assert!(live_processes(&groups).is_empty());
}
