//! The API server alone (kubelet off): CRUD, selectors, watches, strictness, RBAC and faults.

use futures_util::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::{Pod, Secret};
use kiln_fake_cluster::{FakeCluster, Options};
use kube::api::{Api, DeleteParams, ListParams, PostParams, WatchEvent, WatchParams};
use serde_json::{json, Value};

async fn cluster() -> FakeCluster {
    FakeCluster::start_with(Options {
        kubelet: false,
        ..Options::default()
    })
    .await
    .unwrap()
}

fn pod(name: &str, labels: Value) -> Pod {
    serde_json::from_value(json!({
        "metadata": {"name": name, "labels": labels},
        "spec": {"containers": [{"name": "main", "image": "busybox"}]},
    }))
    .unwrap()
}

/// A raw request, to see exactly what the server answers.
async fn raw(c: &FakeCluster, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
    let client = c.client();
    let mut req = http::Request::builder().method(method).uri(path);
    req = req.header("content-type", "application/json");
    let req = req
        .body(
            body.map(|b| serde_json::to_vec(&b).unwrap())
                .unwrap_or_default(),
        )
        .unwrap();
    let resp = client
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

#[tokio::test]
async fn create_get_list_delete_with_server_fields() {
    let c = cluster().await;
    let pods: Api<Pod> = Api::namespaced(c.client(), "ci");
    let mut p = pod("", json!({"app": "kiln"}));
    p.metadata.name = None;
    p.metadata.generate_name = Some("runner-".into());
    let created = pods.create(&PostParams::default(), &p).await.unwrap();
    let name = created.metadata.name.clone().unwrap();
    assert!(
        name.starts_with("runner-") && name.len() == "runner-".len() + 5,
        "{name}"
    );
    assert_eq!(created.metadata.namespace.as_deref(), Some("ci"));
    assert!(created.metadata.uid.is_some() && created.metadata.creation_timestamp.is_some());
    let spec = created.spec.clone().unwrap();
    assert_eq!(
        spec.restart_policy.as_deref(),
        Some("Always"),
        "defaults are filled"
    );
    assert_eq!(
        spec.containers[0].image_pull_policy.as_deref(),
        Some("Always")
    );
    assert_eq!(created.status.unwrap().phase.as_deref(), Some("Pending"));
    let got = pods.get(&name).await.unwrap();
    assert_eq!(got.metadata.uid, created.metadata.uid);

    let err = pods
        .create(&PostParams::default(), &{
            let mut q = p.clone();
            q.metadata.name = Some(name.clone());
            q
        })
        .await
        .unwrap_err();
    let kube::Error::Api(s) = err else {
        panic!("{err}")
    };
    assert_eq!((s.code, s.reason.as_str()), (409, "AlreadyExists"));
    assert_eq!(s.message, format!("pods \"{name}\" already exists"));

    pods.delete(&name, &DeleteParams::default()).await.unwrap();
    let kube::Error::Api(s) = pods.get(&name).await.unwrap_err() else {
        panic!()
    };
    assert_eq!(
        (s.code, s.reason.as_str(), s.message.as_str()),
        (404, "NotFound", &*format!("pods \"{name}\" not found"))
    );
}

#[tokio::test]
async fn label_and_field_selectors() {
    let c = cluster().await;
    let pods: Api<Pod> = Api::namespaced(c.client(), "default");
    for (n, l) in [
        ("a", json!({"job": "1", "tier": "x"})),
        ("b", json!({"job": "2"})),
        ("c", json!({"tier": "y"})),
    ] {
        pods.create(&PostParams::default(), &pod(n, l))
            .await
            .unwrap();
    }
    let names = |sel: &'static str| {
        let pods = pods.clone();
        async move {
            let l = pods.list(&ListParams::default().labels(sel)).await.unwrap();
            let mut v: Vec<String> = l
                .items
                .into_iter()
                .map(|p| p.metadata.name.unwrap())
                .collect();
            v.sort();
            v.join(",")
        }
    };
    assert_eq!(names("job=1").await, "a");
    assert_eq!(names("job!=1").await, "b,c");
    assert_eq!(names("job").await, "a,b");
    assert_eq!(names("!job").await, "c");
    assert_eq!(names("job in (1,2),tier").await, "a");
    assert_eq!(names("tier notin (x)").await, "b,c");
    let l = pods
        .list(&ListParams::default().fields("metadata.name=b"))
        .await
        .unwrap();
    assert_eq!(l.items.len(), 1);
    let kube::Error::Api(s) = pods
        .list(&ListParams::default().fields("spec.bogus=1"))
        .await
        .unwrap_err()
    else {
        panic!()
    };
    assert_eq!(
        (s.code, s.message.as_str()),
        (400, "field label not supported: spec.bogus")
    );

    // Delete a collection by selector.
    pods.delete_collection(
        &DeleteParams::default(),
        &ListParams::default().labels("job"),
    )
    .await
    .unwrap();
    assert_eq!(names("").await, "c");
    // Cluster-wide list.
    let all: Api<Pod> = Api::all(c.client());
    assert_eq!(
        all.list(&ListParams::default()).await.unwrap().items.len(),
        1
    );
}

#[tokio::test]
async fn watch_replays_from_a_version_and_expires_old_ones() {
    let c = cluster().await;
    let pods: Api<Pod> = Api::namespaced(c.client(), "default");
    pods.create(&PostParams::default(), &pod("one", json!({"k": "v"})))
        .await
        .unwrap();
    let rv = pods
        .list(&ListParams::default())
        .await
        .unwrap()
        .metadata
        .resource_version
        .unwrap();
    pods.create(&PostParams::default(), &pod("two", json!({"k": "v"})))
        .await
        .unwrap();
    pods.delete("one", &DeleteParams::default()).await.unwrap();

    let mut stream = pods
        .watch(&WatchParams::default().timeout(5), &rv)
        .await
        .unwrap()
        .boxed();
    let mut seen = Vec::new();
    while seen.len() < 2 {
        match stream.try_next().await.unwrap().unwrap() {
            WatchEvent::Added(p) => seen.push(format!("ADDED {}", p.metadata.name.unwrap())),
            WatchEvent::Deleted(p) => seen.push(format!("DELETED {}", p.metadata.name.unwrap())),
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(seen, ["ADDED two", "DELETED one"]);
    // A live change arrives on the open watch.
    pods.create(&PostParams::default(), &pod("three", json!({})))
        .await
        .unwrap();
    let WatchEvent::Added(p) = stream.try_next().await.unwrap().unwrap() else {
        panic!()
    };
    assert_eq!(p.metadata.name.as_deref(), Some("three"));

    c.compact();
    let mut old = pods
        .watch(&WatchParams::default().timeout(5), &rv)
        .await
        .unwrap()
        .boxed();
    match old.try_next().await.unwrap().unwrap() {
        WatchEvent::Error(e) => assert_eq!((e.code, e.reason.as_str()), (410, "Expired")),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn watch_bookmarks_and_selector_transitions() {
    let c = FakeCluster::start_with(Options {
        kubelet: false,
        bookmark_interval: std::time::Duration::from_millis(100),
        ..Options::default()
    })
    .await
    .unwrap();
    let pods: Api<Pod> = Api::namespaced(c.client(), "default");
    let mut stream = pods
        .watch(&WatchParams::default().labels("job=1").timeout(5), "0")
        .await
        .unwrap()
        .boxed();
    pods.create(&PostParams::default(), &pod("x", json!({"job": "2"})))
        .await
        .unwrap();
    pods.create(&PostParams::default(), &pod("y", json!({"job": "1"})))
        .await
        .unwrap();
    let mut added = None;
    let mut bookmark = false;
    while added.is_none() || !bookmark {
        match stream.try_next().await.unwrap().unwrap() {
            WatchEvent::Added(p) => added = p.metadata.name,
            WatchEvent::Bookmark(_) => bookmark = true,
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(added.as_deref(), Some("y"), "x does not match the selector");
}

#[tokio::test]
async fn strict_validation_answers_like_a_real_server() {
    let c = cluster().await;
    let base = "/api/v1/namespaces/default/pods";
    let (code, s) = raw(
        &c,
        "POST",
        base,
        Some(json!({
            "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
            "spec": {"containers": [{"name": "main", "image": "x", "imagee": "y"}]},
        })),
    )
    .await;
    assert_eq!(code, 400);
    assert_eq!(s["reason"], "BadRequest");
    assert_eq!(s["message"], "Pod in version \"v1\" cannot be handled as a Pod: strict decoding error: unknown field \"spec.containers[0].imagee\"");

    let (code, s) = raw(&c, "POST", base, Some(json!({
        "metadata": {"name": "Bad_Name"}, "spec": {"containers": [{"name": "main", "image": "x"}]},
    }))).await;
    assert_eq!((code, s["reason"].as_str()), (422, Some("Invalid")));
    assert!(s["message"].as_str().unwrap().starts_with("Pod \"Bad_Name\" is invalid: metadata.name: Invalid value: \"Bad_Name\": a lowercase RFC 1123 subdomain"), "{s}");

    let (code, s) = raw(&c, "POST", base, Some(json!({
        "metadata": {"name": "p"},
        "spec": {"containers": [{"name": "main", "image": "x", "restartPolicy": "Always"}, {"name": "main", "volumeMounts": [{"name": "nope", "mountPath": "/x"}]}]},
    }))).await;
    assert_eq!(code, 422);
    let fields: Vec<&str> = s["details"]["causes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["field"].as_str().unwrap())
        .collect();
    assert_eq!(
        fields,
        [
            "spec.containers[0].restartPolicy",
            "spec.containers[1].name",
            "spec.containers[1].image",
            "spec.containers[1].volumeMounts[0].name"
        ],
        "{s}"
    );
    assert_eq!(
        s["details"]["causes"][0]["message"],
        "Forbidden: may not be set for non-init containers"
    );

    let (code, s) = raw(&c, "POST", base, Some(json!({
        "metadata": {"name": "p", "labels": {"ok": "not ok!"}}, "spec": {"containers": [{"name": "main", "image": "x"}]},
    }))).await;
    assert_eq!(code, 422, "{s}");
    assert_eq!(s["details"]["causes"][0]["field"], "metadata.labels");

    let secrets = "/api/v1/namespaces/default/secrets";
    let (code, s) = raw(
        &c,
        "POST",
        secrets,
        Some(json!({"metadata": {"name": "s"}, "stringData": {"bad key": "v"}})),
    )
    .await;
    assert_eq!(code, 422, "{s}");
    assert_eq!(s["details"]["causes"][0]["field"], "data[bad key]");
    let (code, _) = raw(
        &c,
        "POST",
        secrets,
        Some(json!({"metadata": {"name": "s"}, "stringData": {"token": "v"}})),
    )
    .await;
    assert_eq!(code, 201);
    let s: Secret = Api::namespaced(c.client(), "default")
        .get("s")
        .await
        .unwrap();
    assert_eq!(
        s.data.unwrap()["token"].0,
        b"v",
        "stringData is folded into data"
    );
    assert!(s.string_data.is_none());
}

#[tokio::test]
async fn rbac_denial_and_injected_failures_and_request_log() {
    let c = cluster().await;
    let pods: Api<Pod> = Api::namespaced(c.client(), "ns");
    c.deny("create", "pods");
    let kube::Error::Api(s) = pods
        .create(&PostParams::default(), &pod("p", json!({})))
        .await
        .unwrap_err()
    else {
        panic!()
    };
    assert_eq!(s.code, 403);
    assert_eq!(
        s.message,
        "pods is forbidden: User \"system:serviceaccount:default:kiln-runner\" cannot create resource \"pods\" in API group \"\" in the namespace \"ns\""
    );
    c.allow("create", "pods");
    c.fail_next("/api/v1/namespaces/ns/pods", 1, 500);
    let kube::Error::Api(s) = pods
        .create(&PostParams::default(), &pod("p", json!({})))
        .await
        .unwrap_err()
    else {
        panic!()
    };
    assert_eq!(s.code, 500);
    pods.create(&PostParams::default(), &pod("p", json!({})))
        .await
        .unwrap();
    let posts = c
        .requests()
        .iter()
        .filter(|r| r.method == "POST" && r.path == "/api/v1/namespaces/ns/pods")
        .count();
    assert_eq!(posts, 3);
}

#[tokio::test]
async fn a_broken_watch_drops_the_connection() {
    let c = cluster().await;
    let pods: Api<Pod> = Api::namespaced(c.client(), "default");
    let mut stream = pods
        .watch(&WatchParams::default().timeout(10), "0")
        .await
        .unwrap()
        .boxed();
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    c.break_watches();
    let r = tokio::time::timeout(std::time::Duration::from_secs(5), stream.next())
        .await
        .unwrap();
    assert!(matches!(r, Some(Err(_)) | None), "{r:?}");
}
