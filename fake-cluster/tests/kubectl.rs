//! Fidelity with a real client: kubectl against the fake.

use std::process::Command;

use kiln_fake_cluster::FakeCluster;

fn kubectl(
    kubeconfig: &std::path::Path,
    args: &[&str],
    stdin: Option<&str>,
) -> (bool, String, String) {
    use std::io::Write;
    let mut cmd = Command::new("kubectl");
    cmd.arg("--kubeconfig").arg(kubeconfig).args(args);
    cmd.stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    if let Some(s) = stdin {
        child.stdin.take().unwrap().write_all(s.as_bytes()).unwrap();
    }
    drop(child.stdin.take());
    let out = child.wait_with_output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

const POD: &str = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: k\n  labels:\n    job: \"7\"\nspec:\n  restartPolicy: Never\n  containers:\n  - name: main\n    image: host\n    command: [\"/bin/sh\", \"-c\", \"echo one; sleep 1; echo two\"]\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_create_get_logs_delete() {
    if Command::new("kubectl")
        .arg("version")
        .arg("--client")
        .output()
        .is_err()
    {
        eprintln!("kubectl not installed; skipped");
        return;
    }
    let c = FakeCluster::start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let kc = dir.path().join("kubeconfig");
    c.write_kubeconfig(&kc).unwrap();
    let kc2 = kc.clone();
    let run = move |args: Vec<&'static str>, stdin: Option<&'static str>| {
        let kc = kc2.clone();
        tokio::task::spawn_blocking(move || kubectl(&kc, &args, stdin))
    };
    let (ok, out, err) = run(vec!["create", "--validate=false", "-f", "-"], Some(POD))
        .await
        .unwrap();
    assert!(ok, "{out}{err}");
    assert_eq!(out.trim(), "pod/k created");
    let (ok, out, err) = run(
        vec![
            "get",
            "pod",
            "k",
            "-o",
            "jsonpath={.metadata.name} {.spec.restartPolicy}",
        ],
        None,
    )
    .await
    .unwrap();
    assert!(ok, "{err}");
    assert_eq!(out, "k Never");
    let (ok, out, err) = run(vec!["logs", "-f", "k"], None).await.unwrap();
    assert!(ok, "{err}");
    assert_eq!(out, "one\ntwo\n");
    let (ok, out, err) = run(vec!["get", "pods", "-l", "job=7", "-o", "name"], None)
        .await
        .unwrap();
    assert!(ok, "{err}");
    assert_eq!(out.trim(), "pod/k");
    let (ok, out, _) = run(vec!["get", "pods", "-l", "job=8", "-o", "name"], None)
        .await
        .unwrap();
    assert!(ok && out.trim().is_empty());
    let (ok, out, err) = run(vec!["delete", "pod", "k"], None).await.unwrap();
    assert!(ok, "{err}");
    assert_eq!(out.trim(), "pod \"k\" deleted");

    // The server's refusals reach kubectl as a real server words them.
    let bad = POD.replace("image: host", "image: host\n    restartPolicy: Always");
    let bad: &'static str = Box::leak(bad.into_boxed_str());
    let (ok, _, err) = run(vec!["create", "--validate=false", "-f", "-"], Some(bad))
        .await
        .unwrap();
    assert!(!ok);
    assert!(
        err.contains(
            "spec.containers[0].restartPolicy: Forbidden: may not be set for non-init containers"
        ),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_patch_merges_labels_into_a_secret() {
    if Command::new("kubectl")
        .arg("version")
        .arg("--client")
        .output()
        .is_err()
    {
        eprintln!("kubectl not installed; skipped");
        return;
    }
    let c = FakeCluster::start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let kc = dir.path().join("kubeconfig");
    c.write_kubeconfig(&kc).unwrap();
    let kc2 = kc.clone();
    let run = move |args: Vec<&'static str>| {
        let kc = kc2.clone();
        tokio::task::spawn_blocking(move || kubectl(&kc, &args, None))
    };
    // `kubectl create secret` sends protobuf, which the fake does not speak; a manifest goes as JSON.
    let secret = "apiVersion: v1\nkind: Secret\nmetadata:\n  name: s\ndata:\n  k: dg==\n";
    let (ok, _, err) = tokio::task::spawn_blocking(move || {
        kubectl(
            &kc,
            &["create", "--validate=false", "-f", "-"],
            Some(secret),
        )
    })
    .await
    .unwrap();
    assert!(ok, "{err}");
    let (ok, out, err) = run(vec![
        "patch",
        "secret",
        "s",
        "--type",
        "merge",
        "-p",
        r#"{"metadata":{"labels":{"a":"b"}}}"#,
    ])
    .await
    .unwrap();
    assert!(ok, "{err}");
    assert_eq!(out.trim(), "secret/s patched");
    let (ok, out, err) = run(vec![
        "get",
        "secret",
        "s",
        "-o",
        "jsonpath={.metadata.labels.a} {.data.k}",
    ])
    .await
    .unwrap();
    assert!(ok, "{err}");
    assert_eq!(out, "b dg==");
    let (ok, out, err) = run(vec![
        "patch",
        "secret",
        "s",
        "--type",
        "json",
        "-p",
        r#"[{"op":"test","path":"/metadata/labels/a","value":"c"}]"#,
    ])
    .await
    .unwrap();
    assert!(!ok, "{out}");
    assert!(
        err.contains("The request is invalid") && err.contains("/metadata/labels/a"),
        "{err}"
    );
}
