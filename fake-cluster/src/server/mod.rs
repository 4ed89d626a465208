//! The HTTP API server: routing, authentication, authorization and injected failures.

pub(crate) mod body;
mod discovery;
mod exec;
mod logs;
pub(crate) mod query;
mod resources;
mod update;
mod watch;

use std::convert::Infallible;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::{Method, Request, Response};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

use crate::faults::RequestRecord;
use crate::resource::Resource;
use crate::shared::Shared;
use crate::status::ApiError;
use body::Body;
use query::Query;

/// Request bodies above this are refused, as the API server refuses bodies over 3 MiB.
const MAX_BODY: usize = 3 * 1024 * 1024;

/// Accepts connections until the task is aborted.
pub(crate) async fn serve(listener: TcpListener, shared: Arc<Shared>) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let shared = shared.clone();
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(move |req| {
                let shared = shared.clone();
                async move { Ok::<_, Infallible>(handle(shared, req).await) }
            });
            // A client that goes away mid-request is not the server's problem.
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), svc)
                .with_upgrades()
                .await;
        });
    }
}

/// Where a request goes.
enum Route {
    Discovery,
    Collection {
        resource: Resource,
        ns: Option<String>,
    },
    Object {
        resource: Resource,
        ns: String,
        name: String,
    },
    Log {
        ns: String,
        name: String,
    },
    Exec {
        ns: String,
        name: String,
    },
}

fn route(path: &str) -> Option<Route> {
    let segs: Vec<&str> = path.trim_end_matches('/').split('/').skip(1).collect();
    match segs.as_slice() {
        ["version"] | ["api"] | ["apis"] | ["api", "v1"] | ["openapi", ..] => {
            Some(Route::Discovery)
        }
        ["api", "v1", res] => Some(Route::Collection {
            resource: Resource::from_plural(res)?,
            ns: None,
        }),
        ["api", "v1", "namespaces", ns, res] => Some(Route::Collection {
            resource: Resource::from_plural(res)?,
            ns: Some(ns.to_string()),
        }),
        ["api", "v1", "namespaces", ns, res, name] => Some(Route::Object {
            resource: Resource::from_plural(res)?,
            ns: ns.to_string(),
            name: name.to_string(),
        }),
        ["api", "v1", "namespaces", ns, "pods", name, "log"] => Some(Route::Log {
            ns: ns.to_string(),
            name: name.to_string(),
        }),
        ["api", "v1", "namespaces", ns, "pods", name, "exec"] => Some(Route::Exec {
            ns: ns.to_string(),
            name: name.to_string(),
        }),
        _ => None,
    }
}

/// The verb and resource RBAC would check, and the name and namespace its message names.
fn authz_attrs(
    method: &Method,
    route: &Route,
    query: &Query,
) -> Option<(&'static str, String, String, Option<String>)> {
    Some(match route {
        Route::Discovery => return None,
        Route::Collection { resource, ns } => {
            let verb = match *method {
                Method::GET if query.flag("watch") => "watch",
                Method::GET => "list",
                Method::POST => "create",
                Method::DELETE => "deletecollection",
                _ => return None,
            };
            (
                verb,
                resource.plural().to_string(),
                String::new(),
                ns.clone(),
            )
        }
        Route::Object { resource, ns, name } => {
            let verb = match *method {
                Method::GET => "get",
                Method::DELETE => "delete",
                Method::PUT => "update",
                Method::PATCH => "patch",
                _ => return None,
            };
            (
                verb,
                resource.plural().to_string(),
                name.clone(),
                Some(ns.clone()),
            )
        }
        Route::Log { ns, name } => ("get", "pods/log".into(), name.clone(), Some(ns.clone())),
        // Since Kubernetes 1.30 a websocket exec (a GET) needs `create` on pods/exec too.
        Route::Exec { ns, name } => ("create", "pods/exec".into(), name.clone(), Some(ns.clone())),
    })
}

async fn handle(shared: Arc<Shared>, req: Request<Incoming>) -> Response<Body> {
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let raw_query = req.uri().query().unwrap_or_default().to_string();
    shared.requests.lock().unwrap().push(RequestRecord {
        method: method.to_string(),
        path: path.clone(),
        query: raw_query.clone(),
    });
    let query = Query::parse(&raw_query);

    // kubectl (client-go) sends no bearer token over plain http: no token is taken as the
    // configured user, as the old insecure port did; a wrong token is refused.
    let authorized = match req
        .headers()
        .get("authorization")
        .and_then(|h| h.to_str().ok())
    {
        None => true,
        Some(h) => h
            .strip_prefix("Bearer ")
            .is_some_and(|t| t.trim() == shared.token),
    };
    if !authorized {
        return body::error(&ApiError::unauthorized());
    }
    if let Some(code) = shared
        .faults
        .lock()
        .unwrap()
        .take_failure(method.as_str(), &path)
    {
        return body::error(&ApiError::injected(code));
    }
    let Some(route) = route(&path) else {
        return body::error(&ApiError::path_not_found());
    };
    if let Some((verb, resource, name, ns)) = authz_attrs(&method, &route, &query) {
        if shared.faults.lock().unwrap().is_denied(verb, &resource) {
            let user = shared.user.lock().unwrap().clone();
            return body::error(&ApiError::forbidden(
                &user,
                verb,
                &resource,
                &name,
                ns.as_deref(),
            ));
        }
    }

    // The exec upgrade needs the request itself; everything else reads the body first.
    if let Route::Exec { ns, name } = &route {
        return exec::exec(&shared, req, ns, name, &query).await;
    }
    let content_type = req
        .headers()
        .get("content-type")
        .and_then(|h| h.to_str().ok())
        .unwrap_or_default()
        .to_string();
    let body = match read_body(req).await {
        Ok(b) => b,
        Err(e) => return body::error(&e),
    };
    let result = match (&method, route) {
        (_, Route::Discovery) if method == Method::GET => Ok(discovery::serve(&shared, &path)),
        (&Method::GET, Route::Collection { resource, ns }) if query.flag("watch") => {
            watch::watch(&shared, resource, ns.as_deref(), &query)
        }
        (&Method::GET, Route::Collection { resource, ns }) => {
            resources::list(&shared, resource, ns.as_deref(), &query)
        }
        (
            &Method::POST,
            Route::Collection {
                resource,
                ns: Some(ns),
            },
        ) => resources::create(&shared, resource, &ns, &body),
        (
            &Method::DELETE,
            Route::Collection {
                resource,
                ns: Some(ns),
            },
        ) => resources::delete_collection(&shared, resource, &ns, &query, &body),
        (&Method::GET, Route::Object { resource, ns, name }) => {
            resources::get(&shared, resource, &ns, &name)
        }
        (&Method::DELETE, Route::Object { resource, ns, name }) => {
            resources::delete(&shared, resource, &ns, &name, &query, &body)
        }
        (&Method::PATCH, Route::Object { resource, ns, name }) => {
            update::patch(&shared, resource, &ns, &name, &content_type, &body)
        }
        (&Method::PUT, Route::Object { resource, ns, name }) => {
            update::replace(&shared, resource, &ns, &name, &body)
        }
        (&Method::GET, Route::Log { ns, name }) => logs::logs(&shared, &ns, &name, &query),
        _ => Err(ApiError::method_not_allowed(method.as_str())),
    };
    match result {
        Ok(r) => r,
        Err(e) => body::error(&e),
    }
}

async fn read_body(req: Request<Incoming>) -> Result<Bytes, ApiError> {
    let bytes = req
        .into_body()
        .collect()
        .await
        .map_err(|e| ApiError::bad_request(e.to_string()))?
        .to_bytes();
    if bytes.len() > MAX_BODY {
        return Err(ApiError::new_too_large());
    }
    Ok(bytes)
}
