//! `kiln build --backend docker`: the same build, done by a Docker daemon through its HTTP API.
//!
//! kiln reads the Dockerfile and plans it first (so a broken Dockerfile fails as it does
//! natively, and the registries of the base images are known), waits until the daemon answers
//! `/_ping`, streams the context tar into `POST /build` (classic builder, registry credentials
//! in `X-Registry-Config`), prints the daemon's progress as plain lines, pushes every
//! destination with `X-Registry-Auth`, and writes the digest files from the digest the push
//! reports.
//!
//! Docker decodes both registry headers as *URL-safe* base64 (Go's `base64.URLEncoding`): a
//! standard-base64 header (as some clients send) breaks whenever a password's encoding holds
//! `+` or `/`.

use super::client::{empty_body, Body, DockerClient};
use super::endpoint::{DockerEndpoint, EndpointFlags};
use super::progress::{Event, Progress};
use super::ready::wait_ready;
use super::tar_context::{ChannelWriter, ContextTar};
use super::DindError;
use crate::blob::Digest;
use crate::registry::Reference;
use base64::Engine as _;
use bytes::Bytes;
use http_body_util::BodyExt as _;
use kiln_registry_auth::{Credential, CredentialResolver, Environment};
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::time::Duration;

pub use super::tar_context::DockerfileSource;

/// Docker Hub's key in auth maps (`X-Registry-Config`), as the daemon looks it up.
const DOCKER_HUB_AUTH_KEY: &str = "https://index.docker.io/v1/";

/// One build through a daemon; the fields mirror `kiln build`'s flags.
#[derive(Debug, Clone)]
pub struct DockerBuild {
    /// Where the daemon is (flags over `DOCKER_HOST`, `DOCKER_TLS_VERIFY`, `DOCKER_CERT_PATH`).
    pub endpoint: EndpointFlags,
    /// How long to wait for the daemon to answer `/_ping`.
    pub ready_timeout: Duration,
    /// The context directory.
    pub context: PathBuf,
    /// The Dockerfile.
    pub dockerfile: DockerfileSource,
    /// Images to tag and push.
    pub destinations: Vec<String>,
    /// `--build-arg` values.
    pub build_args: BTreeMap<String, String>,
    /// Stage to build.
    pub target: Option<String>,
    /// Labels added to the image.
    pub labels: BTreeMap<String, String>,
    /// Network mode for RUN steps (`host`, `none`, ...); the daemon's default when `None`.
    pub network: Option<String>,
    /// Platform to build for (`os/arch[/variant]`).
    pub platform: Option<String>,
    /// Push the destinations (kaniko's default); `false` only builds and tags.
    pub push: bool,
    /// `--digest-file`.
    pub digest_file: Option<PathBuf>,
    /// `--image-name-with-digest-file`.
    pub image_name_with_digest_file: Option<PathBuf>,
}

/// What a build produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DockerBuildOutcome {
    /// The daemon's image ID (the config digest).
    pub image_id: Option<String>,
    /// The pushed manifest's digest (the same for every destination).
    pub digest: Option<Digest>,
}

/// Runs the build; `out` receives each log line.
///
/// # Errors
/// The Dockerfile's and the plan's errors; the endpoint's, the connection's and readiness
/// errors (see [`wait_ready`]); [`DindError::BuildFailed`] and [`DindError::PushFailed`] with
/// the daemon's message; [`DindError::Unsupported`] for digest files without a push.
pub async fn build(
    req: &DockerBuild,
    env: &Environment,
    out: &mut (dyn FnMut(&str) + Send),
) -> Result<DockerBuildOutcome, DindError> {
    let destinations = req
        .destinations
        .iter()
        .map(|d| {
            let r = Reference::parse(d)?;
            if r.digest.is_some() {
                return Err(DindError::Unsupported(format!(
                    "destination {d}: a digest cannot be pushed to; give a tag"
                )));
            }
            Ok(r)
        })
        .collect::<Result<Vec<_>, _>>()?;
    let wants_digest = req.digest_file.is_some() || req.image_name_with_digest_file.is_some();
    if wants_digest && (!req.push || destinations.is_empty()) {
        return Err(DindError::Unsupported(
            "with --backend docker the digest files hold the digest the registry reports, \
             so they need a --destination and a push"
                .into(),
        ));
    }

    let context = ContextTar::prepare(&req.context, &req.dockerfile)?;
    let bases = base_registries(req, &context)?;
    let resolver = CredentialResolver::new(env.clone());
    let mut auths = BTreeMap::new();
    for host in bases
        .iter()
        .chain(destinations.iter().map(|d| &d.repository.registry))
    {
        if auths.contains_key(host) {
            continue;
        }
        let cred = resolver
            .resolve(host)
            .await
            .map_err(|source| DindError::Credentials {
                host: host.clone(),
                source,
            })?;
        auths.insert(host.clone(), cred.map(|c| c.credential));
    }

    let endpoint = DockerEndpoint::resolve(&req.endpoint, env)?;
    let mut client = DockerClient::new(endpoint)?;
    let ping = wait_ready(&client, req.ready_timeout).await?;
    client.negotiate(&ping);

    let mut progress = Progress::new();
    out(&format!(
        "#0 building with the Docker daemon at {} ({} context paths)",
        client.endpoint(),
        context.len()
    ));
    let image_id = run_build(
        &client,
        req,
        &destinations,
        context,
        &auths,
        &mut progress,
        out,
    )
    .await?;

    let mut digest: Option<Digest> = None;
    if req.push {
        for d in &destinations {
            let got = push(
                &client,
                d,
                auths.get(&d.repository.registry).and_then(Option::as_ref),
                &mut progress,
                out,
            )
            .await?;
            match &digest {
                Some(first) if *first != got => out(&progress.line(&format!(
                    "warning: {d} got manifest {got}, other destinations {first}"
                ))),
                Some(_) => {}
                None => digest = Some(got),
            }
        }
    }
    if let Some(d) = &digest {
        if let Some(path) = &req.digest_file {
            crate::image::export::write_digest_file(path, d)?;
        }
        if let Some(path) = &req.image_name_with_digest_file {
            let names: Vec<&str> = req.destinations.iter().map(String::as_str).collect();
            crate::image::export::write_image_name_with_digest_file(path, &names, d)?;
        }
    }
    Ok(DockerBuildOutcome { image_id, digest })
}

/// Registries the build pulls base images (and `COPY --from` images) from.
fn base_registries(req: &DockerBuild, ctx: &ContextTar) -> Result<BTreeSet<String>, DindError> {
    let df = crate::dockerfile::parse(&ctx.dockerfile_text, &ctx.dockerfile_display)?;
    let opts = crate::plan::Options {
        build_args: req.build_args.clone(),
        target: req.target.clone(),
        ..crate::plan::Options::default()
    };
    let plan = crate::plan::plan(
        &df,
        &ctx.dockerfile_display,
        &opts,
        &crate::plan::NoBaseImages,
    )?;
    let mut hosts = BTreeSet::new();
    for &i in &plan.order {
        let stage = &plan.stages[i];
        let images = stage.images.iter().chain(match &stage.base {
            crate::plan::Base::Image(r) => Some(r),
            _ => None,
        });
        for image in images {
            // An unparsable name fails in the daemon with its own message.
            if let Ok(r) = Reference::parse(image) {
                hosts.insert(r.repository.registry);
            }
        }
    }
    Ok(hosts)
}

/// The JSON the daemon decodes from `X-Registry-Auth` (and per registry in
/// `X-Registry-Config`).
fn auth_json(server: &str, cred: Option<&Credential>) -> serde_json::Value {
    let mut v = serde_json::Map::new();
    match cred {
        Some(Credential::Basic { username, password }) => {
            v.insert("username".into(), username.clone().into());
            v.insert("password".into(), password.expose().into());
        }
        Some(Credential::IdentityToken(t)) => {
            v.insert("identitytoken".into(), t.expose().into());
        }
        Some(Credential::RegistryToken(t)) => {
            v.insert("registrytoken".into(), t.expose().into());
        }
        None => return serde_json::Value::Object(v),
    }
    v.insert("serveraddress".into(), server.into());
    serde_json::Value::Object(v)
}

fn auth_key(host: &str) -> String {
    if host == crate::reference::DOCKER_HUB {
        DOCKER_HUB_AUTH_KEY.to_string()
    } else {
        host.to_string()
    }
}

/// Docker's header encoding: URL-safe base64 with padding.
pub fn encode_auth_header(json: &serde_json::Value) -> String {
    base64::engine::general_purpose::URL_SAFE.encode(json.to_string())
}

async fn run_build(
    client: &DockerClient,
    req: &DockerBuild,
    destinations: &[Reference],
    context: ContextTar,
    auths: &BTreeMap<String, Option<Credential>>,
    progress: &mut Progress,
    out: &mut (dyn FnMut(&str) + Send),
) -> Result<Option<String>, DindError> {
    let mut url = reqwest::Url::parse("http://docker/build").map_err(|e| DindError::Protocol {
        host: client.endpoint().to_string(),
        detail: e.to_string(),
    })?;
    {
        let mut q = url.query_pairs_mut();
        q.append_pair("dockerfile", &context.dockerfile_name);
        for d in destinations {
            q.append_pair("t", &d.to_string());
        }
        q.append_pair(
            "buildargs",
            &serde_json::to_string(&req.build_args).unwrap_or_default(),
        );
        q.append_pair(
            "labels",
            &serde_json::to_string(&req.labels).unwrap_or_default(),
        );
        if let Some(t) = &req.target {
            q.append_pair("target", t);
        }
        if let Some(n) = &req.network {
            q.append_pair("networkmode", n);
        }
        if let Some(p) = &req.platform {
            q.append_pair("platform", p);
        }
        // Fresh base images (as kaniko pulls them), no leftover containers, classic builder:
        // BuildKit over the API needs a gRPC session kiln does not speak.
        q.append_pair("pull", "1");
        q.append_pair("rm", "1");
        q.append_pair("forcerm", "1");
        q.append_pair("version", "1");
    }
    let path = format!("/build?{}", url.query().unwrap_or_default());
    let config: serde_json::Map<String, serde_json::Value> = auths
        .iter()
        .filter(|(_, c)| c.is_some())
        .map(|(h, c)| (auth_key(h), auth_json(h, c.as_ref())))
        .collect();
    let headers = [
        ("content-type", "application/x-tar".to_string()),
        (
            "x-registry-config",
            encode_auth_header(&serde_json::Value::Object(config)),
        ),
    ];

    let (tx, mut rx) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(8);
    let writer = tokio::task::spawn_blocking(move || {
        let err_tx = tx.clone();
        let result = context.write(ChannelWriter::new(tx));
        if let Err(e) = &result {
            let _ = err_tx.blocking_send(Err(std::io::Error::other(
                crate::error_chain::chain_line(e),
            )));
        }
        result
    });
    let stream = futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx));
    let body: Body = http_body_util::StreamBody::new(futures_util::StreamExt::map(stream, |r| {
        r.map(hyper::body::Frame::data)
            .map_err(|e| Box::new(e) as Box<dyn std::error::Error + Send + Sync>)
    }))
    .boxed();

    let sent = client.send(http::Method::POST, &path, &headers, body).await;
    let tar_result = writer.await;
    // A context that cannot be read is the cause, not the connection the daemon then dropped.
    match tar_result {
        Ok(Err(e)) => return Err(e),
        Err(join) => {
            return Err(DindError::Protocol {
                host: client.endpoint().to_string(),
                detail: format!("writing the context: {join}"),
            })
        }
        Ok(Ok(())) => {}
    }
    let resp = client.check("POST /build", sent?).await?;
    let mut image_id = None;
    read_json_stream(client, resp, |msg| match progress.message(&msg) {
        Event::Lines(lines) => {
            for l in lines {
                out(&l);
            }
            Ok(())
        }
        Event::ImageId(id) => {
            image_id = Some(id);
            Ok(())
        }
        Event::Pushed { .. } => Ok(()),
        Event::Error(m) => Err(DindError::BuildFailed(m)),
    })
    .await?;
    if image_id.is_none() {
        return Err(DindError::Protocol {
            host: client.endpoint().to_string(),
            detail: "the build ended without an image ID".into(),
        });
    }
    Ok(image_id)
}

async fn push(
    client: &DockerClient,
    dest: &Reference,
    cred: Option<&Credential>,
    progress: &mut Progress,
    out: &mut (dyn FnMut(&str) + Send),
) -> Result<Digest, DindError> {
    out(&progress.start(&format!("push {dest}")));
    let tag = dest.tag.clone().unwrap_or_else(|| "latest".into());
    let mut url = reqwest::Url::parse("http://docker/").map_err(|e| DindError::Protocol {
        host: client.endpoint().to_string(),
        detail: e.to_string(),
    })?;
    url.query_pairs_mut().append_pair("tag", &tag);
    let path = format!(
        "/images/{}/push?{}",
        dest.repository,
        url.query().unwrap_or_default()
    );
    let auth = encode_auth_header(&auth_json(&dest.repository.registry, cred));
    let resp = client
        .send(
            http::Method::POST,
            &path,
            &[("x-registry-auth", auth)],
            empty_body(),
        )
        .await?;
    let resp = client.check("POST /images/{name}/push", resp).await?;
    let mut digest = None;
    let reference = dest.to_string();
    read_json_stream(client, resp, |msg| match progress.message(&msg) {
        Event::Lines(lines) => {
            for l in lines {
                out(&l);
            }
            Ok(())
        }
        Event::Pushed { digest: d, .. } => {
            digest = Some(d);
            Ok(())
        }
        Event::ImageId(_) => Ok(()),
        Event::Error(m) => Err(DindError::PushFailed {
            reference: reference.clone(),
            message: m,
        }),
    })
    .await?;
    let digest = digest.ok_or_else(|| DindError::PushFailed {
        reference: reference.clone(),
        message: "the daemon reported no manifest digest".into(),
    })?;
    let digest: Digest = digest.parse().map_err(|_| DindError::PushFailed {
        reference: reference.clone(),
        message: format!("the daemon reported digest {digest:?}, not sha256"),
    })?;
    out(&progress.line(&format!("pushed {reference}@{digest}")));
    Ok(digest)
}

/// Feeds each JSON value of a streamed body to `each`; values may arrive split across chunks.
async fn read_json_stream(
    client: &DockerClient,
    resp: http::Response<hyper::body::Incoming>,
    mut each: impl FnMut(serde_json::Value) -> Result<(), DindError>,
) -> Result<(), DindError> {
    let mut body = resp.into_body();
    let mut buf: Vec<u8> = Vec::new();
    loop {
        let frame = body.frame().await;
        let done = frame.is_none();
        if let Some(frame) = frame {
            let frame = frame.map_err(|e| client.transfer_error(&e))?;
            if let Ok(data) = frame.into_data() {
                buf.extend_from_slice(&data);
            }
        }
        let mut values =
            serde_json::Deserializer::from_slice(&buf).into_iter::<serde_json::Value>();
        let mut used = 0;
        loop {
            match values.next() {
                Some(Ok(v)) => {
                    used = values.byte_offset();
                    each(v)?;
                }
                Some(Err(e)) if e.is_eof() && !done => break,
                Some(Err(e)) => {
                    return Err(DindError::Protocol {
                        host: client.endpoint().to_string(),
                        detail: format!("unreadable progress message: {e}"),
                    })
                }
                None => break,
            }
        }
        buf.drain(..used);
        if done {
            return Ok(());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kiln_registry_auth::Secret;

    #[test]
    fn auth_headers_are_url_safe_base64() {
        // "??>" encodes to "Pz8+" in standard base64: the daemon would read garbage.
        let cred = Credential::basic("u", Secret::new("??>"));
        let json = auth_json("127.0.0.1:5000", Some(&cred));
        let header = encode_auth_header(&json);
        assert!(!header.contains('+') && !header.contains('/'), "{header}");
        let back = base64::engine::general_purpose::URL_SAFE
            .decode(&header)
            .unwrap();
        let back: serde_json::Value = serde_json::from_slice(&back).unwrap();
        assert_eq!(back["password"], "??>");
        assert_eq!(back["serveraddress"], "127.0.0.1:5000");
        assert_eq!(encode_auth_header(&auth_json("x", None)), "e30=");
        assert_eq!(auth_key("docker.io"), DOCKER_HUB_AUTH_KEY);
    }
}
