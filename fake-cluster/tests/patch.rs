//! PATCH and PUT of pods and secrets, and the garbage collection of an owner's dependents.

use std::time::{Duration, Instant};

use futures_util::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::{Pod, Secret};
use kiln_fake_cluster::{FakeCluster, Options};
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams, WatchEvent, WatchParams};
use serde_json::{json, Value};

async fn cluster(kubelet: bool) -> FakeCluster {
    FakeCluster::start_with(Options {
        kubelet,
        ..Options::default()
    })
    .await
    .unwrap()
}

async fn make_pod(c: &FakeCluster, name: &str, command: &str) -> Pod {
    let pods: Api<Pod> = Api::namespaced(c.client(), "default");
    let p: Pod = serde_json::from_value(json!({
        "metadata": {"name": name},
        "spec": {
            "restartPolicy": "Never",
            "terminationGracePeriodSeconds": 5,
            "containers": [{"name": "main", "image": "host", "command": ["/bin/sh", "-c", command]}],
        },
    }))
    .unwrap();
    pods.create(&PostParams::default(), &p).await.unwrap()
}

async fn make_secret(c: &FakeCluster, name: &str) -> Secret {
    let secrets: Api<Secret> = Api::namespaced(c.client(), "default");
    let s: Secret = serde_json::from_value(json!({
        "metadata": {"name": name},
        "stringData": {"token": "t"},
    }))
    .unwrap();
    secrets.create(&PostParams::default(), &s).await.unwrap()
}

fn owner(pod: &Pod) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "name": pod.metadata.name, "uid": pod.metadata.uid,
    })
}

/// A raw request with a content type, to see exactly what the server answers.
async fn raw(c: &FakeCluster, method: &str, path: &str, ct: &str, body: Value) -> (u16, Value) {
    let req = http::Request::builder()
        .method(method)
        .uri(path)
        .header("content-type", ct)
        .body(serde_json::to_vec(&body).unwrap())
        .unwrap();
    let resp = c
        .client()
        .send(req.map(kube::client::Body::from))
        .await
        .unwrap();
    let code = resp.status().as_u16();
    let bytes = http_body_util::BodyExt::collect(resp.into_body())
        .await
        .unwrap()
        .to_bytes();
    (code, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
}

const SECRET_PATH: &str = "/api/v1/namespaces/default/secrets/s";

#[tokio::test]
async fn merge_patch_adds_owner_references_and_a_label_seen_by_a_watch() {
    let c = cluster(false).await;
    let pod = make_pod(&c, "p", "true").await;
    let secret = make_secret(&c, "s").await;
    let secrets: Api<Secret> = Api::namespaced(c.client(), "default");
    let rv = secret.metadata.resource_version.clone().unwrap();
    let mut stream = secrets
        .watch(&WatchParams::default().timeout(5), &rv)
        .await
        .unwrap()
        .boxed();

    let patched = secrets
        .patch(
            "s",
            &PatchParams::default(),
            &Patch::Merge(&json!({
                "metadata": {"ownerReferences": [owner(&pod)], "labels": {"kiln/job": "7"}},
            })),
        )
        .await
        .unwrap();
    let refs = patched.metadata.owner_references.clone().unwrap();
    assert_eq!(refs[0].uid, pod.metadata.uid.clone().unwrap());
    assert_eq!(patched.metadata.labels.unwrap()["kiln/job"], "7");
    assert_eq!(patched.metadata.uid, secret.metadata.uid);
    let new_rv = patched.metadata.resource_version.clone().unwrap();
    assert!(new_rv.parse::<u64>().unwrap() > rv.parse::<u64>().unwrap());
    assert_eq!(
        patched.data.unwrap()["token"].0,
        b"t",
        "untouched data stays"
    );

    match stream.try_next().await.unwrap().unwrap() {
        WatchEvent::Modified(s) => {
            assert_eq!(
                s.metadata.resource_version.as_deref(),
                Some(new_rv.as_str())
            );
            assert!(s.metadata.owner_references.is_some());
        }
        other => panic!("expected MODIFIED, got {other:?}"),
    }

    // A patch that changes nothing is not a write: no new version.
    let same = secrets
        .patch(
            "s",
            &PatchParams::default(),
            &Patch::Merge(&json!({"metadata": {"labels": {"kiln/job": "7"}}})),
        )
        .await
        .unwrap();
    assert_eq!(
        same.metadata.resource_version.as_deref(),
        Some(new_rv.as_str())
    );

    // A strategic merge patch merges maps too; null removes a key.
    let s = secrets
        .patch(
            "s",
            &PatchParams::default(),
            &Patch::Strategic(&json!({"metadata": {"labels": {"kiln/job": null, "b": "c"}}})),
        )
        .await
        .unwrap();
    assert_eq!(
        s.metadata.labels.unwrap().into_iter().collect::<Vec<_>>(),
        [("b".to_string(), "c".to_string())]
    );
}

#[tokio::test]
async fn json_patch_applies_operations_and_refuses_a_failed_test() {
    let c = cluster(false).await;
    make_secret(&c, "s").await;
    let ct = "application/json-patch+json";
    let (code, s) = raw(
        &c,
        "PATCH",
        SECRET_PATH,
        ct,
        json!([
            {"op": "test", "path": "/data/token", "value": "dA=="},
            {"op": "add", "path": "/metadata/labels", "value": {"a": "b"}},
            {"op": "add", "path": "/data/other", "value": "eA=="},
            {"op": "remove", "path": "/data/token"},
        ]),
    )
    .await;
    assert_eq!(code, 200, "{s}");
    assert_eq!(s["metadata"]["labels"], json!({"a": "b"}));
    assert_eq!(s["data"], json!({"other": "eA=="}));

    let (code, s) = raw(
        &c,
        "PATCH",
        SECRET_PATH,
        ct,
        json!([{"op": "test", "path": "/data/other", "value": "nope"}]),
    )
    .await;
    assert_eq!((code, s["reason"].as_str()), (422, Some("Invalid")), "{s}");
    assert_eq!(
        s["message"],
        "the server rejected our request due to an error in our request"
    );

    let (code, _) = raw(&c, "PATCH", SECRET_PATH, ct, json!({"op": "add"})).await;
    assert_eq!(code, 400);

    // Strictness, label rules and server-owned metadata hold for a patched object as on create.
    let merge = "application/merge-patch+json";
    let (code, s) = raw(
        &c,
        "PATCH",
        SECRET_PATH,
        merge,
        json!({"metadata": {"labelz": {}}}),
    )
    .await;
    assert_eq!(code, 422, "{s}");
    assert!(
        s["message"]
            .as_str()
            .unwrap()
            .ends_with("strict decoding error: unknown field \"metadata.labelz\""),
        "{s}"
    );
    let (code, s) = raw(
        &c,
        "PATCH",
        SECRET_PATH,
        merge,
        json!({"metadata": {"labels": {"a": "b c"}}}),
    )
    .await;
    assert_eq!(code, 422);
    assert!(
        s["message"]
            .as_str()
            .unwrap()
            .starts_with("Secret \"s\" is invalid: metadata.labels: Invalid value: \"b c\""),
        "{s}"
    );
    let (code, s) = raw(
        &c,
        "PATCH",
        SECRET_PATH,
        merge,
        json!({"metadata": {"name": "t"}}),
    )
    .await;
    assert_eq!(code, 400);
    assert_eq!(
        s["message"],
        "the name of the object (t) does not match the name on the URL (s)"
    );
    let (code, s) = raw(
        &c,
        "PATCH",
        SECRET_PATH,
        merge,
        json!({"metadata": {"uid": "x"}}),
    )
    .await;
    assert_eq!(code, 422);
    assert_eq!(
        s["message"],
        "Secret \"s\" is invalid: metadata.uid: Invalid value: \"x\": field is immutable"
    );
    let (code, s) = raw(
        &c,
        "PATCH",
        SECRET_PATH,
        merge,
        json!({"metadata": {"resourceVersion": "1"}}),
    )
    .await;
    assert_eq!(code, 409, "{s}");
    let (code, _) = raw(&c, "PATCH", SECRET_PATH, "application/json", json!({})).await;
    assert_eq!(code, 415);
    let (code, s) = raw(
        &c,
        "PATCH",
        "/api/v1/namespaces/default/secrets/gone",
        merge,
        json!({}),
    )
    .await;
    assert_eq!(code, 404);
    assert_eq!(s["message"], "secrets \"gone\" not found");
}

#[tokio::test]
async fn a_pod_spec_change_is_forbidden_but_an_image_or_label_is_not() {
    let c = cluster(false).await;
    make_pod(&c, "p", "true").await;
    let pods: Api<Pod> = Api::namespaced(c.client(), "default");
    let err = pods
        .patch(
            "p",
            &PatchParams::default(),
            &Patch::Merge(&json!({"spec": {"restartPolicy": "Always"}})),
        )
        .await
        .unwrap_err();
    let kube::Error::Api(s) = err else {
        panic!("{err:?}")
    };
    assert_eq!(s.code, 422);
    assert!(
        s.message.starts_with("Pod \"p\" is invalid: spec: Forbidden: pod updates may not change fields other than `spec.containers[*].image`"),
        "{}",
        s.message
    );

    let p = pods
        .patch(
            "p",
            &PatchParams::default(),
            &Patch::Merge(&json!({
                "metadata": {"labels": {"a": "b"}},
                "spec": {"activeDeadlineSeconds": 60},
                "status": {"phase": "Failed"},
            })),
        )
        .await
        .unwrap();
    assert_eq!(p.metadata.labels.unwrap()["a"], "b");
    assert_eq!(p.spec.unwrap().active_deadline_seconds, Some(60));
    assert_eq!(
        p.status.unwrap().phase.as_deref(),
        Some("Pending"),
        "status is not written through the pod"
    );
    // Containers are a list: a merge patch replaces it whole, so only a full list changes an image.
    let (code, s) = raw(
        &c,
        "PATCH",
        "/api/v1/namespaces/default/pods/p",
        "application/json-patch+json",
        json!([{"op": "replace", "path": "/spec/containers/0/image", "value": "busybox"}]),
    )
    .await;
    assert_eq!(code, 200, "{s}");
    assert_eq!(s["spec"]["containers"][0]["image"], "busybox");
    let err = pods
        .patch(
            "p",
            &PatchParams::default(),
            &Patch::Merge(&json!({"spec": {"activeDeadlineSeconds": 120}})),
        )
        .await
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("must be less than or equal to previous value"),
        "{err}"
    );
}

#[tokio::test]
async fn a_denied_patch_is_forbidden() {
    let c = cluster(false).await;
    make_secret(&c, "s").await;
    c.deny("patch", "secrets");
    let secrets: Api<Secret> = Api::namespaced(c.client(), "default");
    let err = secrets
        .patch(
            "s",
            &PatchParams::default(),
            &Patch::Merge(&json!({"metadata": {"labels": {"a": "b"}}})),
        )
        .await
        .unwrap_err();
    let kube::Error::Api(s) = err else {
        panic!("{err:?}")
    };
    assert_eq!(s.code, 403);
    assert!(
        s.message.starts_with("secrets \"s\" is forbidden: User ")
            && s.message.ends_with(
                " cannot patch resource \"secrets\" in API group \"\" in the namespace \"default\""
            ),
        "{}",
        s.message
    );
    assert!(secrets.get("s").await.unwrap().metadata.labels.is_none());
}

#[tokio::test]
async fn replace_checks_the_resource_version() {
    let c = cluster(false).await;
    let secret = make_secret(&c, "s").await;
    let secrets: Api<Secret> = Api::namespaced(c.client(), "default");
    let mut next = secret.clone();
    next.metadata.labels = Some([("a".to_string(), "b".to_string())].into());
    let replaced = secrets
        .replace("s", &PostParams::default(), &next)
        .await
        .unwrap();
    assert_eq!(replaced.metadata.labels.unwrap()["a"], "b");
    // The first version is stale now.
    let err = secrets
        .replace("s", &PostParams::default(), &next)
        .await
        .unwrap_err();
    let kube::Error::Api(s) = err else {
        panic!("{err:?}")
    };
    assert_eq!((s.code, s.reason.as_str()), (409, "Conflict"));
    assert_eq!(s.message, "Operation cannot be fulfilled on secrets \"s\": the object has been modified; please apply your changes to the latest version and try again");
}

async fn wait_gone(secrets: &Api<Secret>, name: &str) {
    let start = Instant::now();
    while secrets.get_opt(name).await.unwrap().is_some() {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "{name} was not collected"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn a_secret_goes_with_its_owner_pod() {
    let c = cluster(false).await;
    let pod = make_pod(&c, "p", "true").await;
    let other = make_pod(&c, "q", "true").await;
    let secrets: Api<Secret> = Api::namespaced(c.client(), "default");
    for (name, owners) in [
        ("owned", vec![owner(&pod)]),
        ("shared", vec![owner(&pod), owner(&other)]),
        ("free", vec![]),
    ] {
        make_secret(&c, name).await;
        secrets
            .patch(
                name,
                &PatchParams::default(),
                &Patch::Merge(&json!({"metadata": {"ownerReferences": owners}})),
            )
            .await
            .unwrap();
    }
    let rv = c.resource_version().to_string();
    let mut stream = secrets
        .watch(&WatchParams::default().timeout(5), &rv)
        .await
        .unwrap()
        .boxed();
    let pods: Api<Pod> = Api::namespaced(c.client(), "default");
    pods.delete("p", &DeleteParams::default()).await.unwrap();
    match stream.try_next().await.unwrap().unwrap() {
        WatchEvent::Deleted(s) => assert_eq!(s.metadata.name.as_deref(), Some("owned")),
        other => panic!("expected DELETED, got {other:?}"),
    }
    // An object with another live owner only loses the reference to the gone one.
    let shared = secrets.get("shared").await.unwrap();
    let refs = shared.metadata.owner_references.unwrap();
    assert_eq!(refs.len(), 1);
    assert_eq!(refs[0].name, "q");
    assert!(secrets.get_opt("free").await.unwrap().is_some());

    // An owner reference to a pod that no longer exists is collected at once.
    make_secret(&c, "late").await;
    secrets
        .patch(
            "late",
            &PatchParams::default(),
            &Patch::Merge(&json!({"metadata": {"ownerReferences": [owner(&pod)]}})),
        )
        .await
        .unwrap();
    wait_gone(&secrets, "late").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_secret_goes_when_its_running_owner_is_finally_removed() {
    let c = cluster(true).await;
    let pod = make_pod(&c, "p", "trap 'exit 0' TERM; sleep 30 & wait").await;
    make_secret(&c, "s").await;
    let secrets: Api<Secret> = Api::namespaced(c.client(), "default");
    secrets
        .patch(
            "s",
            &PatchParams::default(),
            &Patch::Merge(&json!({"metadata": {"ownerReferences": [owner(&pod)]}})),
        )
        .await
        .unwrap();
    let start = Instant::now();
    while c.pod("default", "p").and_then(|p| p.status?.phase) != Some("Running".into()) {
        assert!(start.elapsed() < Duration::from_secs(20), "pod never ran");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let pods: Api<Pod> = Api::namespaced(c.client(), "default");
    let marked = pods
        .delete("p", &DeleteParams::default())
        .await
        .unwrap()
        .left()
        .unwrap();
    assert!(marked.metadata.deletion_timestamp.is_some());
    // The owner is still there while its kubelet stops it; then both go.
    wait_gone(&secrets, "s").await;
    assert!(c.pod("default", "p").is_none(), "the owner went first");
}
