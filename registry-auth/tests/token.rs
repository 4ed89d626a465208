//! Token handshake tests against a real HTTP server on 127.0.0.1.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine as _;
use common::{Request, Response, TestServer};
use kiln_registry_auth::{
    Challenge, Clock, Credential, Scope, ScopeSet, Secret, TokenClient, TokenError,
};

/// A clock the test moves by hand.
struct ManualClock {
    base: Instant,
    offset: Mutex<Duration>,
}

impl ManualClock {
    fn new() -> Arc<Self> {
        Arc::new(Self {
            base: Instant::now(),
            offset: Mutex::new(Duration::ZERO),
        })
    }

    fn advance(&self, by: Duration) {
        *self.offset.lock().unwrap() += by;
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Instant {
        self.base + *self.offset.lock().unwrap()
    }
}

fn bearer(server: &TestServer) -> Challenge {
    Challenge::new(
        "Bearer",
        [
            ("realm", server.url("/token")),
            ("service", "test-registry".to_owned()),
        ],
    )
}

fn client(clock: &Arc<ManualClock>) -> TokenClient {
    TokenClient::new().unwrap().with_clock(clock.clone())
}

fn basic_header(user: &str, pass: &str) -> String {
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"))
    )
}

/// A server issuing numbered tokens to GET requests carrying the expected
/// Basic credentials.
async fn numbered_server(expires_in: Option<u64>) -> TestServer {
    let n = AtomicUsize::new(0);
    TestServer::start(move |r: &Request| {
        if r.method != "GET" || r.path != "/token" {
            return Response::json(404, "{}");
        }
        if r.header("authorization") != Some(&basic_header("alice", "pw-alice-123")) {
            return Response::json(
                401,
                r#"{"errors":[{"code":"UNAUTHORIZED","message":"bad credentials"}]}"#,
            );
        }
        let i = n.fetch_add(1, Ordering::SeqCst) + 1;
        match expires_in {
            Some(e) => Response::json(200, format!(r#"{{"token":"tok-{i}","expires_in":{e}}}"#)),
            None => Response::json(200, format!(r#"{{"token":"tok-{i}"}}"#)),
        }
    })
    .await
}

fn alice() -> Credential {
    Credential::basic("alice", "pw-alice-123")
}

#[tokio::test]
async fn get_with_basic_auth_service_and_scopes_then_cache_hit() {
    let server = numbered_server(Some(300)).await;
    let clock = ManualClock::new();
    let tc = client(&clock);
    let ch = bearer(&server);
    let scopes = ScopeSet::new()
        .with(Scope::push("team/app"))
        .with(Scope::pull("library/base"));

    let t = tc
        .token("reg.example.com", &ch, &scopes, Some(&alice()))
        .await
        .unwrap();
    assert_eq!(t.token().expose(), "tok-1");
    assert_eq!(t.authorization().expose(), "Bearer tok-1");
    let reqs = server.requests();
    assert_eq!(reqs.len(), 1);
    assert_eq!(reqs[0].query_one("service"), Some("test-registry"));
    assert_eq!(
        reqs[0].query_all("scope"),
        vec![
            "repository:library/base:pull",
            "repository:team/app:pull,push"
        ]
    );

    // Same scopes built in another order, another spelling of the host: cached.
    let same = ScopeSet::parse(
        "repository:team/app:push repository:library/base:pull repository:team/app:pull",
    )
    .unwrap();
    let t = tc
        .token("https://reg.example.com:443/", &ch, &same, Some(&alice()))
        .await
        .unwrap();
    assert_eq!(t.token().expose(), "tok-1");
    assert_eq!(server.count(), 1);

    // Different scopes or registry: new tokens.
    let t = tc
        .token(
            "reg.example.com",
            &ch,
            &ScopeSet::new().with(Scope::pull("team/app")),
            Some(&alice()),
        )
        .await
        .unwrap();
    assert_eq!(t.token().expose(), "tok-2");
    let t = tc
        .token("other.example.com", &ch, &scopes, Some(&alice()))
        .await
        .unwrap();
    assert_eq!(t.token().expose(), "tok-3");
    assert_eq!(server.count(), 3);
}

#[tokio::test]
async fn expiry_triggers_refresh() {
    let server = numbered_server(Some(300)).await;
    let clock = ManualClock::new();
    let tc = client(&clock);
    let ch = bearer(&server);
    let s = ScopeSet::new().with(Scope::pull("a"));
    assert_eq!(
        tc.token("r", &ch, &s, Some(&alice()))
            .await
            .unwrap()
            .token()
            .expose(),
        "tok-1"
    );
    clock.advance(Duration::from_secs(250));
    assert_eq!(
        tc.token("r", &ch, &s, Some(&alice()))
            .await
            .unwrap()
            .token()
            .expose(),
        "tok-1"
    );
    clock.advance(Duration::from_secs(45));
    assert_eq!(
        tc.token("r", &ch, &s, Some(&alice()))
            .await
            .unwrap()
            .token()
            .expose(),
        "tok-2"
    );
    assert_eq!(server.count(), 2);
}

#[tokio::test]
async fn missing_or_short_expiry_means_sixty_seconds() {
    for expires_in in [None, Some(5)] {
        let server = numbered_server(expires_in).await;
        let clock = ManualClock::new();
        let tc = client(&clock);
        let ch = bearer(&server);
        let s = ScopeSet::new();
        tc.token("r", &ch, &s, Some(&alice())).await.unwrap();
        clock.advance(Duration::from_secs(40));
        assert_eq!(
            tc.token("r", &ch, &s, Some(&alice()))
                .await
                .unwrap()
                .token()
                .expose(),
            "tok-1",
            "{expires_in:?}: still valid at 40 s"
        );
        clock.advance(Duration::from_secs(20));
        assert_eq!(
            tc.token("r", &ch, &s, Some(&alice()))
                .await
                .unwrap()
                .token()
                .expose(),
            "tok-2",
            "{expires_in:?}: expired at 60 s"
        );
    }
}

#[tokio::test]
async fn invalidate_forces_a_new_fetch() {
    let server = numbered_server(Some(3600)).await;
    let clock = ManualClock::new();
    let tc = client(&clock);
    let ch = bearer(&server);
    let s = ScopeSet::new().with(Scope::push("x"));
    let other = ScopeSet::new().with(Scope::pull("y"));
    tc.token("r", &ch, &s, Some(&alice())).await.unwrap();
    tc.token("r", &ch, &other, Some(&alice())).await.unwrap();
    tc.invalidate("r", &s);
    assert_eq!(
        tc.token("r", &ch, &s, Some(&alice()))
            .await
            .unwrap()
            .token()
            .expose(),
        "tok-3"
    );
    // The other scope set kept its token.
    assert_eq!(
        tc.token("r", &ch, &other, Some(&alice()))
            .await
            .unwrap()
            .token()
            .expose(),
        "tok-2"
    );
    tc.invalidate_registry("r");
    assert_eq!(
        tc.token("r", &ch, &other, Some(&alice()))
            .await
            .unwrap()
            .token()
            .expose(),
        "tok-4"
    );
    assert_eq!(server.count(), 4);
}

#[tokio::test]
async fn identity_token_uses_oauth2_post() {
    let server = TestServer::start(|r: &Request| {
        let f = r.form();
        let ok = r.method == "POST"
            && f.get("grant_type").map(String::as_str) == Some("refresh_token")
            && f.get("refresh_token").map(String::as_str) == Some("refresh-xyz-789")
            && f.get("client_id").map(String::as_str) == Some("kiln")
            && f.get("service").map(String::as_str) == Some("test-registry")
            && f.get("scope").map(String::as_str)
                == Some("repository:a:pull repository:b:pull,push")
            && r.header("authorization").is_none();
        if ok {
            Response::json(
                200,
                r#"{"access_token":"oauth-tok","expires_in":120,"refresh_token":"new-refresh"}"#,
            )
        } else {
            Response::json(400, r#"{"error":"invalid_request"}"#)
        }
    })
    .await;
    let clock = ManualClock::new();
    let tc = client(&clock);
    let cred = Credential::IdentityToken(Secret::new("refresh-xyz-789"));
    // One scope comes from the challenge, merged in by the caller.
    let ch = Challenge::new(
        "Bearer",
        [
            ("realm", server.url("/token")),
            ("service", "test-registry".to_owned()),
            ("scope", "repository:a:pull".to_owned()),
        ],
    );
    let mut s = ScopeSet::new().with(Scope::push("b"));
    s.extend(ch.scope_set().unwrap());
    let t = tc.token("r", &ch, &s, Some(&cred)).await.unwrap();
    assert_eq!(t.token().expose(), "oauth-tok");
    assert_eq!(t.refresh_token().map(Secret::expose), Some("new-refresh"));
    assert_eq!(server.count(), 1);
    assert!(!format!("{t:?}").contains("oauth-tok"));
}

#[tokio::test]
async fn post_falls_back_to_get_on_404_and_405() {
    for status in [404u16, 405] {
        let server = TestServer::start(move |r: &Request| {
            if r.method == "POST" {
                Response::json(status, "{}")
            } else {
                Response::json(200, r#"{"token":"get-tok"}"#)
            }
        })
        .await;
        let clock = ManualClock::new();
        let tc = client(&clock);
        let cred = Credential::IdentityToken(Secret::new("refresh"));
        let t = tc
            .token(
                "r",
                &bearer(&server),
                &ScopeSet::new().with(Scope::pull("a")),
                Some(&cred),
            )
            .await
            .unwrap();
        assert_eq!(t.token().expose(), "get-tok");
        let reqs = server.requests();
        let methods: Vec<&str> = reqs.iter().map(|r| r.method.as_str()).collect();
        assert_eq!(methods, vec!["POST", "GET"], "status {status}");
        assert_eq!(reqs[1].query_one("scope"), Some("repository:a:pull"));
    }
}

#[tokio::test]
async fn post_errors_other_than_404_405_do_not_fall_back() {
    let server =
        TestServer::start(|_: &Request| Response::json(401, r#"{"error":"invalid_grant"}"#)).await;
    let tc = client(&ManualClock::new());
    let cred = Credential::IdentityToken(Secret::new("refresh"));
    let err = tc
        .token("r", &bearer(&server), &ScopeSet::new(), Some(&cred))
        .await
        .unwrap_err();
    assert!(
        matches!(err, TokenError::Unauthorized { status: 401, .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains("invalid_grant"));
    assert_eq!(server.count(), 1);
}

#[tokio::test]
async fn password_grant_when_enabled() {
    let server = TestServer::start(|r: &Request| {
        let f = r.form();
        if r.method == "POST"
            && f.get("grant_type").map(String::as_str) == Some("password")
            && f.get("username").map(String::as_str) == Some("alice")
            && f.get("password").map(String::as_str) == Some("pw-alice-123")
            && f.get("client_id").map(String::as_str) == Some("custom-id")
        {
            Response::json(200, r#"{"access_token":"pw-grant-tok"}"#)
        } else {
            Response::json(400, "{}")
        }
    })
    .await;
    let tc = client(&ManualClock::new())
        .with_oauth_password_grant(true)
        .with_client_id("custom-id");
    let t = tc
        .token("r", &bearer(&server), &ScopeSet::new(), Some(&alice()))
        .await
        .unwrap();
    assert_eq!(t.token().expose(), "pw-grant-tok");
}

#[tokio::test]
async fn anonymous_get_sends_no_authorization() {
    let server = TestServer::start(|r: &Request| {
        if r.header("authorization").is_none() {
            Response::json(200, r#"{"token":"anon"}"#)
        } else {
            Response::json(400, "{}")
        }
    })
    .await;
    let tc = client(&ManualClock::new());
    let t = tc
        .token("r", &bearer(&server), &ScopeSet::new(), None)
        .await
        .unwrap();
    assert_eq!(t.token().expose(), "anon");
}

#[tokio::test]
async fn errors_never_contain_secrets_even_when_echoed() {
    // A hostile server that echoes everything it got, including the
    // Authorization header and form body.
    let server = TestServer::start(|r: &Request| {
        let echo = format!(
            "denied for {} body {}",
            r.header("authorization").unwrap_or_default(),
            String::from_utf8_lossy(&r.body)
        );
        Response::json(
            403,
            format!(r#"{{"errors":[{{"code":"DENIED","message":{echo:?}}}]}}"#),
        )
    })
    .await;
    let tc = client(&ManualClock::new());
    let ch = bearer(&server);
    let basic = Credential::basic("alice", "pw-alice-123");
    let err = tc
        .token("r", &ch, &ScopeSet::new(), Some(&basic))
        .await
        .unwrap_err();
    let shown = format!("{err} {err:?}");
    assert!(matches!(err, TokenError::Unauthorized { status: 403, .. }));
    assert!(!shown.contains("pw-alice-123"), "{shown}");
    // The base64 form of the credentials would leak them too.
    assert!(
        !shown.contains(&basic_header("alice", "pw-alice-123")[6..]),
        "{shown}"
    );

    let id = Credential::IdentityToken(Secret::new("refresh-secret-999"));
    let err = tc
        .token("r", &ch, &ScopeSet::new(), Some(&id))
        .await
        .unwrap_err();
    let shown = format!("{err} {err:?}");
    assert!(!shown.contains("refresh-secret-999"), "{shown}");
    assert!(shown.contains("DENIED"), "{shown}");
}

#[tokio::test]
async fn invalid_responses_and_realms() {
    let server = TestServer::start(|r: &Request| match r.query_one("scope") {
        Some("repository:garbage:pull") => Response::json(200, "not json"),
        Some("repository:empty:pull") => Response::json(200, r#"{"token":""}"#),
        _ => Response::json(500, "boom"),
    })
    .await;
    let tc = client(&ManualClock::new());
    let ch = bearer(&server);
    for name in ["garbage", "empty"] {
        let err = tc
            .token("r", &ch, &ScopeSet::new().with(Scope::pull(name)), None)
            .await
            .unwrap_err();
        assert!(matches!(err, TokenError::InvalidResponse { .. }), "{err:?}");
    }
    let err = tc
        .token("r", &ch, &ScopeSet::new(), None)
        .await
        .unwrap_err();
    assert!(
        matches!(err, TokenError::Status { status: 500, .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains("boom"));

    let err = tc
        .token(
            "r",
            &Challenge::new("Bearer", [("service", "x")]),
            &ScopeSet::new(),
            None,
        )
        .await
        .unwrap_err();
    assert!(matches!(err, TokenError::MissingRealm));
    let err = tc
        .token(
            "r",
            &Challenge::new("Bearer", [("realm", "ftp://x/")]),
            &ScopeSet::new(),
            None,
        )
        .await
        .unwrap_err();
    assert!(matches!(err, TokenError::InvalidRealm(_)));
    let err = tc
        .token(
            "r",
            &Challenge::new("Basic", [("realm", "x")]),
            &ScopeSet::new(),
            None,
        )
        .await
        .unwrap_err();
    assert!(matches!(err, TokenError::NotBearer(_)));
    // Nothing listening: an HTTP error naming the realm without its query.
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let ch = Challenge::new("Bearer", [("realm", format!("http://{closed}/token?x=1"))]);
    let err = tc
        .token("r", &ch, &ScopeSet::new(), Some(&alice()))
        .await
        .unwrap_err();
    let shown = format!("{err} {err:?}");
    assert!(matches!(err, TokenError::Http { .. }), "{shown}");
    assert!(shown.contains(&format!("http://{closed}/token")), "{shown}");
    assert!(!shown.contains("pw-alice-123"), "{shown}");
}

#[tokio::test]
async fn authorize_answers_basic_bearer_and_registry_tokens() {
    let server = numbered_server(Some(300)).await;
    let tc = client(&ManualClock::new());
    let s = ScopeSet::new();
    let basic = Challenge::new("Basic", [("realm", "Registry")]);
    assert_eq!(
        tc.authorize("r", &basic, &s, Some(&alice()))
            .await
            .unwrap()
            .unwrap()
            .expose(),
        basic_header("alice", "pw-alice-123")
    );
    assert_eq!(tc.authorize("r", &basic, &s, None).await.unwrap(), None);
    let rt = Credential::RegistryToken(Secret::new("pre-issued"));
    assert_eq!(
        tc.authorize("r", &bearer(&server), &s, Some(&rt))
            .await
            .unwrap()
            .unwrap()
            .expose(),
        "Bearer pre-issued"
    );
    assert_eq!(server.count(), 0);
    assert_eq!(
        tc.authorize("r", &bearer(&server), &s, Some(&alice()))
            .await
            .unwrap()
            .unwrap()
            .expose(),
        "Bearer tok-1"
    );
    assert_eq!(server.count(), 1);
}

#[tokio::test]
async fn concurrent_callers_share_the_client() {
    let server = Arc::new(numbered_server(Some(300)).await);
    let tc = Arc::new(client(&ManualClock::new()));
    let ch = bearer(&server);
    tc.token("r", &ch, &ScopeSet::new(), Some(&alice()))
        .await
        .unwrap();
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let tc = tc.clone();
        let ch = ch.clone();
        tasks.push(tokio::spawn(async move {
            tc.token("r", &ch, &ScopeSet::new(), Some(&alice()))
                .await
                .unwrap()
        }));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap().token().expose(), "tok-1");
    }
    assert_eq!(server.count(), 1);
}

#[tokio::test]
async fn concurrent_cold_callers_cause_one_request() {
    let server = Arc::new(numbered_server(Some(300)).await);
    let tc = Arc::new(client(&ManualClock::new()));
    let ch = bearer(&server);
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let tc = tc.clone();
        let ch = ch.clone();
        tasks.push(tokio::spawn(async move {
            tc.token(
                "r",
                &ch,
                &ScopeSet::new().with(Scope::push("p")),
                Some(&alice()),
            )
            .await
            .unwrap()
        }));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap().token().expose(), "tok-1");
    }
    assert_eq!(server.count(), 1);
}

#[tokio::test]
async fn failed_fetch_is_not_cached() {
    let fail = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let f = fail.clone();
    let server = TestServer::start(move |_: &Request| {
        if f.load(Ordering::SeqCst) {
            Response::json(503, "{}")
        } else {
            Response::json(200, r#"{"token":"after-outage"}"#)
        }
    })
    .await;
    let tc = client(&ManualClock::new());
    let ch = bearer(&server);
    assert!(tc.token("r", &ch, &ScopeSet::new(), None).await.is_err());
    fail.store(false, Ordering::SeqCst);
    let t = tc.token("r", &ch, &ScopeSet::new(), None).await.unwrap();
    assert_eq!(t.token().expose(), "after-outage");
    assert_eq!(server.count(), 2);
}
