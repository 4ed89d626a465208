//! A pod's life on the fake node: scheduling, sandbox, volumes, init containers and sidecars,
//! main containers, completion, and termination when deleted.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use futures_util::stream::{FuturesUnordered, StreamExt};
use k8s_openapi::api::core::v1::{Container, HostIP, Pod, PodIP};
use rustix::process::Signal;
use tokio::io::AsyncReadExt;
use tokio::sync::watch;

use super::container::{self, ContainerProc, Launch, Mount};
use super::events::{self, field_path, NODE};
use super::images::{full_reference, ImageSource};
use super::logbuf::LogBuf;
use super::podstatus::{self as ps, container_mut, set_condition};
use super::procs::signal_group;
use super::{pod_net, probe, sandbox, PodRuntime};
use crate::resource::Resource;
use crate::shared::Shared;
use crate::time::now_time;

const PREEMPTION: &str =
    "preemption: 0/1 nodes are available: 1 Preemption is not helpful for scheduling.";

/// Runs a pod, then waits for its deletion and tears it down.
pub(crate) async fn pod_task(shared: Arc<Shared>, ns: String, name: String, rt: Arc<PodRuntime>) {
    let mut stop = rt.stop.subscribe();
    tokio::select! {
        _ = run_pod(&shared, &ns, &name, &rt) => {}
        _ = stop.wait_for(|s| s.is_some()) => {}
    }
    let grace = match stop.wait_for(|s| s.is_some()).await {
        Ok(g) => g.unwrap_or(0),
        Err(_) => 0,
    };
    terminate(&shared, &ns, &name, &rt, grace).await;
}

fn unschedulable_reason(shared: &Arc<Shared>, pod: &Pod) -> Option<String> {
    let k = &shared.kubelet;
    let ns = pod.metadata.namespace.clone().unwrap_or_default();
    let spec = pod.spec.clone().unwrap_or_default();
    for v in spec.volumes.iter().flatten() {
        if let Some(c) = &v.persistent_volume_claim {
            if !k
                .pvcs
                .lock()
                .unwrap()
                .contains_key(&(ns.clone(), c.claim_name.clone()))
            {
                return Some(format!(
                    "0/1 nodes are available: persistentvolumeclaim \"{}\" not found. {PREEMPTION}",
                    c.claim_name
                ));
            }
        }
    }
    if !k.schedulable.load(std::sync::atomic::Ordering::SeqCst) {
        return Some(format!(
            "0/1 nodes are available: 1 node(s) were unschedulable. {PREEMPTION}"
        ));
    }
    let labels = k.node_labels.lock().unwrap().clone();
    if spec
        .node_selector
        .iter()
        .flatten()
        .any(|(key, v)| labels.get(key) != Some(v))
    {
        return Some(format!("0/1 nodes are available: 1 node(s) didn't match Pod's node affinity/selector. {PREEMPTION}"));
    }
    None
}

fn names(list: &[String]) -> String {
    format!("[{}]", list.join(" "))
}

async fn run_pod(shared: &Arc<Shared>, ns: &str, name: &str, rt: &Arc<PodRuntime>) {
    // Scheduling, retried as the scheduler retries an unschedulable pod.
    let mut reported = false;
    loop {
        let Some(pod) = shared.get_pod(ns, name) else {
            return;
        };
        match unschedulable_reason(shared, &pod) {
            None => break,
            Some(msg) => {
                if !reported {
                    shared.update_pod(ns, name, |p| {
                        let st = p.status.get_or_insert_with(Default::default);
                        set_condition(st, "PodScheduled", false, Some("Unschedulable"), Some(&msg));
                    });
                    events::record(
                        shared,
                        &pod,
                        None,
                        "Warning",
                        "FailedScheduling",
                        &msg,
                        "default-scheduler",
                    );
                    reported = true;
                }
                tokio::time::sleep(shared.kubelet.backoff()).await;
            }
        }
    }
    let Some(pod) = shared.update_pod(ns, name, |p| {
        if let Some(s) = p.spec.as_mut() {
            s.node_name = Some(NODE.into());
        }
        let st = p.status.get_or_insert_with(Default::default);
        set_condition(st, "PodScheduled", true, None, None);
    }) else {
        return;
    };
    events::record(
        shared,
        &pod,
        None,
        "Normal",
        "Scheduled",
        &format!("Successfully assigned {ns}/{name} to {NODE}"),
        "default-scheduler",
    );

    let spec = pod.spec.clone().unwrap_or_default();
    let inits: Vec<Container> = spec.init_containers.clone().unwrap_or_default();
    let mains: Vec<Container> = spec.containers.clone();
    let init_names: Vec<String> = inits.iter().map(|c| c.name.clone()).collect();
    let main_names: Vec<String> = mains.iter().map(|c| c.name.clone()).collect();
    let host_ip = shared.kubelet.net.node_ip.to_string();
    shared.update_pod(ns, name, |p| {
        let pc = p.clone();
        let st = p.status.get_or_insert_with(Default::default);
        st.host_ip = Some(host_ip.clone());
        st.host_ips = Some(vec![HostIP { ip: host_ip }]);
        st.start_time = Some(now_time());
        set_condition(st, "PodReadyToStartContainers", false, None, None);
        if inits.is_empty() {
            set_condition(st, "Initialized", true, None, None);
        } else {
            set_condition(
                st,
                "Initialized",
                false,
                Some("ContainersNotInitialized"),
                Some(&format!(
                    "containers with incomplete status: {}",
                    names(&init_names)
                )),
            );
        }
        let msg = format!("containers with unready status: {}", names(&main_names));
        set_condition(st, "Ready", false, Some("ContainersNotReady"), Some(&msg));
        set_condition(
            st,
            "ContainersReady",
            false,
            Some("ContainersNotReady"),
            Some(&msg),
        );
        for n in &init_names {
            container_mut(st, &pc, true, n).state = Some(ps::waiting("PodInitializing", None));
        }
        let reason = if inits.is_empty() {
            "ContainerCreating"
        } else {
            "PodInitializing"
        };
        for n in &main_names {
            container_mut(st, &pc, false, n).state = Some(ps::waiting(reason, None));
        }
    });

    let holder = match sandbox::create(shared, rt, &pod).await {
        Ok(h) => {
            // As the kubelet, the pod has an address once its sandbox does.
            let ip = rt.ip().to_string();
            shared.update_pod(ns, name, |p| {
                let st = p.status.get_or_insert_with(Default::default);
                st.pod_ip = Some(ip.clone());
                st.pod_ips = Some(vec![PodIP { ip }]);
            });
            h
        }
        Err(e) => {
            events::record(
                shared,
                &pod,
                None,
                "Warning",
                "FailedCreatePodSandBox",
                &format!("Failed to create pod sandbox: {e}"),
                "kubelet",
            );
            return;
        }
    };
    let mut reported = false;
    let volumes = loop {
        let Some(pod) = shared.get_pod(ns, name) else {
            return;
        };
        match sandbox::prepare_volumes(shared, rt, &pod) {
            Ok(v) => break v,
            Err(msg) => {
                if !reported {
                    events::record(
                        shared,
                        &pod,
                        None,
                        "Warning",
                        "FailedMount",
                        &msg,
                        "kubelet",
                    );
                    reported = true;
                }
                tokio::time::sleep(shared.kubelet.backoff()).await;
            }
        }
    };
    shared.update_pod(ns, name, |p| {
        set_condition(
            p.status.get_or_insert_with(Default::default),
            "PodReadyToStartContainers",
            true,
            None,
            None,
        )
    });

    let ctx = Ctx {
        shared: shared.clone(),
        ns: ns.into(),
        name: name.into(),
        rt: rt.clone(),
        holder,
        volumes,
    };
    let mut sidecars: Vec<String> = Vec::new();
    for (i, c) in inits.iter().enumerate() {
        let sidecar = c.restart_policy.as_deref() == Some("Always");
        let proc = match ctx
            .start(c, true, sidecar && c.startup_probe.is_some())
            .await
        {
            Ok(p) => p,
            Err(_) => {
                ctx.fail_init(&init_names[i..], &sidecars).await;
                return;
            }
        };
        if sidecar {
            sidecars.push(c.name.clone());
            if let Some(probe) = &c.startup_probe {
                let pod = shared.get_pod(ns, name).unwrap_or_default();
                let fp = field_path(true, &c.name);
                let r = probe::run_startup(shared, holder, &proc, c, probe, |e| {
                    events::record(
                        shared,
                        &pod,
                        fp.clone(),
                        "Warning",
                        "Unhealthy",
                        &format!("Startup probe failed: {e}"),
                        "kubelet",
                    );
                })
                .await;
                if r.is_err() {
                    // A real kubelet restarts the sidecar; the fake fails the pod instead.
                    events::record(
                        shared,
                        &pod,
                        fp,
                        "Normal",
                        "Killing",
                        &format!(
                            "Container {} failed startup probe, will be restarted",
                            c.name
                        ),
                        "kubelet",
                    );
                    ctx.fail_init(&init_names[i..], &sidecars).await;
                    return;
                }
                shared.update_pod(ns, name, |p| {
                    let pc = p.clone();
                    let cs = container_mut(
                        p.status.get_or_insert_with(Default::default),
                        &pc,
                        true,
                        &c.name,
                    );
                    cs.started = Some(true);
                    cs.ready = true;
                });
            }
        } else {
            let code = wait_exit(&proc).await;
            ctx.record_exit(&proc, &c.name, code);
            if code != 0 {
                ctx.fail_init(&init_names[i + 1..], &sidecars).await;
                return;
            }
        }
    }
    if !inits.is_empty() {
        shared.update_pod(ns, name, |p| {
            let pc = p.clone();
            let st = p.status.get_or_insert_with(Default::default);
            set_condition(st, "Initialized", true, None, None);
            for n in &main_names {
                container_mut(st, &pc, false, n).state =
                    Some(ps::waiting("ContainerCreating", None));
            }
        });
    }

    let mut running = FuturesUnordered::new();
    let mut failed = false;
    for c in &mains {
        match ctx.start(c, false, false).await {
            Ok(p) => {
                let n = c.name.clone();
                running.push(async move {
                    let code = wait_exit(&p).await;
                    (n, p, code)
                })
            }
            Err(_) => failed = true,
        }
    }
    shared.update_pod(ns, name, |p| {
        let st = p.status.get_or_insert_with(Default::default);
        st.phase = Some("Running".into());
        let all_running = st
            .container_statuses
            .iter()
            .flatten()
            .all(|c| c.state.as_ref().is_some_and(|s| s.running.is_some()));
        if all_running {
            set_condition(st, "Ready", true, None, None);
            set_condition(st, "ContainersReady", true, None, None);
        }
    });
    let mut exited = Vec::new();
    while let Some((cname, p, code)) = running.next().await {
        ctx.record_exit(&p, &cname, code);
        exited.push(cname);
        failed |= code != 0;
        let msg = format!("containers with unready status: {}", names(&exited));
        shared.update_pod(ns, name, |p| {
            let st = p.status.get_or_insert_with(Default::default);
            set_condition(st, "Ready", false, Some("ContainersNotReady"), Some(&msg));
            set_condition(
                st,
                "ContainersReady",
                false,
                Some("ContainersNotReady"),
                Some(&msg),
            );
        });
    }
    let grace = spec.termination_grace_period_seconds.unwrap_or(30).max(0) as u64;
    ctx.stop_containers(&sidecars.iter().rev().cloned().collect::<Vec<_>>(), grace)
        .await;
    shared.update_pod(ns, name, |p| {
        let st = p.status.get_or_insert_with(Default::default);
        st.phase = Some(if failed { "Failed" } else { "Succeeded" }.into());
        set_condition(st, "Ready", false, Some("PodCompleted"), None);
        set_condition(st, "ContainersReady", false, Some("PodCompleted"), None);
    });
}

/// Whether process `pid`'s root directory is another directory than this process's root.
fn root_is_not_ours(pid: u32) -> bool {
    use std::os::unix::fs::MetadataExt;
    let id = |m: std::fs::Metadata| (m.dev(), m.ino());
    match (
        std::fs::metadata(format!("/proc/{pid}/root/")),
        std::fs::metadata("/"),
    ) {
        (Ok(theirs), Ok(ours)) => id(theirs) != id(ours),
        _ => false,
    }
}

async fn wait_exit(p: &ContainerProc) -> i32 {
    let mut rx = p.exit.clone();
    let code = match rx.wait_for(|e| e.is_some()).await {
        Ok(c) => c.unwrap_or(-1),
        Err(_) => -1,
    };
    code
}

/// What every container start of one pod needs.
struct Ctx {
    shared: Arc<Shared>,
    ns: String,
    name: String,
    rt: Arc<PodRuntime>,
    holder: u32,
    volumes: BTreeMap<String, (PathBuf, bool)>,
}

impl Ctx {
    fn pod(&self) -> Pod {
        self.shared
            .get_pod(&self.ns, &self.name)
            .unwrap_or_default()
    }

    fn event(&self, init: bool, c: &str, type_: &str, reason: &str, msg: &str) {
        events::record(
            &self.shared,
            &self.pod(),
            field_path(init, c),
            type_,
            reason,
            msg,
            "kubelet",
        );
    }

    fn set_state(
        &self,
        init: bool,
        c: &str,
        f: impl FnOnce(&mut k8s_openapi::api::core::v1::ContainerStatus),
    ) {
        self.shared.update_pod(&self.ns, &self.name, |p| {
            let pc = p.clone();
            f(container_mut(
                p.status.get_or_insert_with(Default::default),
                &pc,
                init,
                c,
            ));
        });
    }

    fn record_exit(&self, p: &ContainerProc, c: &str, code: i32) {
        self.set_state(p.init, c, |cs| {
            cs.state = Some(ps::terminated(
                code,
                ps::exit_reason(code),
                Some(p.started_at.clone()),
                Some(p.container_id.clone()),
            ));
            cs.ready = false;
            cs.started = Some(false);
        });
    }

    /// An init container failed: the pod fails (restartPolicy Never), its sidecars stop.
    async fn fail_init(&self, pending: &[String], sidecars: &[String]) {
        let grace = self
            .pod()
            .spec
            .and_then(|s| s.termination_grace_period_seconds)
            .unwrap_or(30)
            .max(0) as u64;
        self.stop_containers(&sidecars.iter().rev().cloned().collect::<Vec<_>>(), grace)
            .await;
        let msg = format!("containers with incomplete status: {}", names(pending));
        self.shared.update_pod(&self.ns, &self.name, |p| {
            let st = p.status.get_or_insert_with(Default::default);
            st.phase = Some("Failed".into());
            if !pending.is_empty() {
                set_condition(
                    st,
                    "Initialized",
                    false,
                    Some("ContainersNotInitialized"),
                    Some(&msg),
                );
            }
            set_condition(st, "Ready", false, Some("PodCompleted"), None);
            set_condition(st, "ContainersReady", false, Some("PodCompleted"), None);
        });
    }

    /// SIGTERMs the named running containers, SIGKILLs them after the grace period.
    async fn stop_containers(&self, names: &[String], grace: u64) {
        let procs: Vec<(String, ContainerProc)> = {
            let m = self.rt.containers.lock().unwrap();
            names
                .iter()
                .filter_map(|n| m.get(n).map(|p| (n.clone(), p.clone())))
                .filter(|(_, p)| p.exit.borrow().is_none())
                .collect()
        };
        for (n, p) in &procs {
            self.event(
                p.init,
                n,
                "Normal",
                "Killing",
                &format!("Stopping container {n}"),
            );
            signal_group(p.pid, Signal::TERM);
        }
        for (n, p) in &procs {
            let code = match tokio::time::timeout(Duration::from_secs(grace), wait_exit(p)).await {
                Ok(c) => c,
                Err(_) => {
                    signal_group(p.pid, Signal::KILL);
                    wait_exit(p).await
                }
            };
            self.record_exit(p, n, code);
        }
    }

    /// Pulls (or refuses) the image, resolves the environment, and starts the container.
    /// `Err` is the exit code of a container that failed to start (already recorded).
    async fn start(&self, c: &Container, init: bool, gated: bool) -> Result<ContainerProc, i32> {
        let shared = &self.shared;
        let image = c.image.clone().unwrap_or_default();
        let policy = c
            .image_pull_policy
            .clone()
            .unwrap_or_else(|| "IfNotPresent".into());
        let source = loop {
            let source = shared.kubelet.image(&image);
            if source == ImageSource::Unpullable {
                let full = full_reference(&image);
                if policy == "Never" {
                    let msg = format!(
                        "Container image \"{image}\" is not present with pull policy of Never"
                    );
                    self.set_state(init, &c.name, |cs| {
                        cs.state = Some(ps::waiting("ErrImageNeverPull", Some(&msg)))
                    });
                    self.event(init, &c.name, "Warning", "ErrImageNeverPull", &msg);
                    tokio::time::sleep(shared.kubelet.backoff()).await;
                    continue;
                }
                let err = format!("rpc error: code = NotFound desc = failed to pull and unpack image \"{full}\": failed to resolve reference \"{full}\": {full}: not found");
                self.event(
                    init,
                    &c.name,
                    "Normal",
                    "Pulling",
                    &format!("Pulling image \"{image}\""),
                );
                self.event(
                    init,
                    &c.name,
                    "Warning",
                    "Failed",
                    &format!("Failed to pull image \"{image}\": {err}"),
                );
                self.event(init, &c.name, "Warning", "Failed", "Error: ErrImagePull");
                self.set_state(init, &c.name, |cs| {
                    cs.state = Some(ps::waiting("ErrImagePull", Some(&err)))
                });
                tokio::time::sleep(shared.kubelet.backoff()).await;
                let msg = format!("Back-off pulling image \"{image}\"");
                self.set_state(init, &c.name, |cs| {
                    cs.state = Some(ps::waiting("ImagePullBackOff", Some(&msg)))
                });
                self.event(init, &c.name, "Normal", "BackOff", &msg);
                self.event(
                    init,
                    &c.name,
                    "Warning",
                    "Failed",
                    "Error: ImagePullBackOff",
                );
                tokio::time::sleep(shared.kubelet.backoff()).await;
                continue;
            }
            let present = shared.kubelet.pulled.lock().unwrap().contains(&image);
            if policy == "Always" || (policy == "IfNotPresent" && !present) {
                self.event(
                    init,
                    &c.name,
                    "Normal",
                    "Pulling",
                    &format!("Pulling image \"{image}\""),
                );
                self.event(init, &c.name, "Normal", "Pulled", &format!("Successfully pulled image \"{image}\" in 1ms (1ms including waiting). Image size: 0 bytes."));
            } else {
                self.event(
                    init,
                    &c.name,
                    "Normal",
                    "Pulled",
                    &format!("Container image \"{image}\" already present on machine"),
                );
            }
            shared.kubelet.pulled.lock().unwrap().insert(image.clone());
            break source;
        };
        let env = loop {
            match container::resolve_env(shared, &self.pod(), c, self.rt.ip()) {
                Ok(env) => break env,
                Err(msg) => {
                    self.set_state(init, &c.name, |cs| {
                        cs.state = Some(ps::waiting("CreateContainerConfigError", Some(&msg)))
                    });
                    self.event(init, &c.name, "Warning", "Failed", &format!("Error: {msg}"));
                    tokio::time::sleep(shared.kubelet.backoff()).await;
                }
            }
        };
        let lower = match &source {
            ImageSource::Rootfs(d) => d.clone(),
            _ => PathBuf::from("/"),
        };
        let mut mounts = Vec::new();
        for m in c.volume_mounts.iter().flatten() {
            let Some((src, ro)) = self.volumes.get(&m.name) else {
                continue;
            };
            let mut source = src.clone();
            if let Some(sp) = m.sub_path.as_deref().filter(|s| !s.is_empty()) {
                source = source.join(sp);
                if !source.exists() {
                    let _ = std::fs::create_dir_all(&source);
                }
            }
            mounts.push(Mount {
                source,
                target: container::resolve_in_root(&lower, &m.mount_path),
                read_only: *ro || m.read_only.unwrap_or(false),
            });
        }
        let pod = self.pod();
        let psc = pod
            .spec
            .as_ref()
            .and_then(|s| s.security_context.clone())
            .unwrap_or_default();
        let csc = c.security_context.clone().unwrap_or_default();
        let uid = csc.run_as_user.or(psc.run_as_user);
        let gid = csc.run_as_group.or(psc.run_as_group);
        let argv = container::argv(c, &env);
        let cid = format!(
            "containerd://{:016x}{:016x}{:016x}{:016x}",
            fastrand::u64(..),
            fastrand::u64(..),
            fastrand::u64(..),
            fastrand::u64(..)
        );
        let start_failed = |msg: &str| {
            self.event(init, &c.name, "Warning", "Failed", &format!("Error: {msg}"));
            self.set_state(init, &c.name, |cs| {
                let mut t = ps::terminated(128, "StartError", Some(now_time()), Some(cid.clone()));
                if let Some(tt) = t.terminated.as_mut() {
                    tt.message = Some(msg.to_string());
                }
                cs.state = Some(t);
            });
            Err(128)
        };
        if argv.is_empty() {
            return start_failed("failed to create containerd task: no command specified (the fake kubelet knows no image entrypoint)");
        }
        let launch = Launch {
            dir: self.rt.dir.join("containers").join(&c.name),
            holder: self.holder,
            lower,
            mounts,
            hosts: self.rt.dir.join("hosts"),
            workdir: c.working_dir.clone().unwrap_or_default(),
            uid,
            gid,
            argv,
            env: env.clone(),
        };
        let log = Arc::new(LogBuf::default());
        self.rt
            .logs
            .lock()
            .unwrap()
            .insert(c.name.clone(), log.clone());
        let (mut child, ready) = match container::spawn(&launch) {
            Ok(x) => x,
            Err(e) => return start_failed(&format!("failed to create containerd task: {e}")),
        };
        let pid = child.id().unwrap_or(0);
        shared.kubelet.procs.add(pid);
        let (exit_tx, exit_rx) = watch::channel(None);
        let started_at = now_time();
        let proc = ContainerProc {
            pid,
            env,
            uid,
            gid,
            exit: exit_rx,
            started_at: started_at.clone(),
            container_id: cid.clone(),
            init,
        };
        self.rt
            .containers
            .lock()
            .unwrap()
            .insert(c.name.clone(), proc.clone());
        let (out, err) = (child.stdout.take(), child.stderr.take());
        let task_log = log.clone();
        tokio::spawn(async move {
            let log = task_log;
            let pump = |r: Option<tokio::process::ChildStdout>, log: Arc<LogBuf>| async move {
                if let Some(mut r) = r {
                    let mut buf = vec![0u8; 8192];
                    while let Ok(n) = r.read(&mut buf).await {
                        if n == 0 {
                            break;
                        }
                        log.push(&buf[..n]);
                    }
                }
            };
            let pump_err = |r: Option<tokio::process::ChildStderr>, log: Arc<LogBuf>| async move {
                if let Some(mut r) = r {
                    let mut buf = vec![0u8; 8192];
                    while let Ok(n) = r.read(&mut buf).await {
                        if n == 0 {
                            break;
                        }
                        log.push(&buf[..n]);
                    }
                }
            };
            let readers = tokio::spawn(futures_util::future::join(
                pump(out, log.clone()),
                pump_err(err, log.clone()),
            ));
            let code = match child.wait().await {
                Ok(s) => s.code().unwrap_or_else(|| {
                    128 + std::os::unix::process::ExitStatusExt::signal(&s).unwrap_or(0)
                }),
                Err(_) => 128,
            };
            // A background child may hold the pipes open: the log ends shortly after the container.
            let _ = tokio::time::timeout(Duration::from_millis(300), readers).await;
            log.finish();
            let _ = exit_tx.send(Some(code));
        });
        let mut exit_watch = proc.exit.clone();
        let became_ready = tokio::time::timeout(Duration::from_secs(20), async {
            loop {
                // The marker is written just before the last step roots itself in the
                // container's root; an exec joining before that would see the host's
                // root without the container's mounts. That root is the mount namespace's
                // own, so its path reads as "/" too: it is told from the host's by being
                // another directory (the overlay's).
                let rooted = root_is_not_ours(pid);
                if ready.exists() && rooted {
                    return true;
                }
                if exit_watch.borrow_and_update().is_some() {
                    return ready.exists();
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
        .await
        .unwrap_or(false);
        if !became_ready {
            let _ = wait_exit(&proc).await;
            let msg = log.text();
            return start_failed(&format!(
                "failed to create containerd task: failed to create shim task: {}",
                msg.trim()
            ));
        }
        self.event(
            init,
            &c.name,
            "Normal",
            "Created",
            &format!("Created container: {}", c.name),
        );
        self.event(
            init,
            &c.name,
            "Normal",
            "Started",
            &format!("Started container {}", c.name),
        );
        let image_id = format!("{}@sha256:{:064x}", full_reference(&image), 0);
        self.set_state(init, &c.name, |cs| {
            cs.state = Some(ps::running(&started_at));
            cs.container_id = Some(cid.clone());
            cs.image_id = image_id;
            cs.started = Some(!gated);
            cs.ready = !gated;
        });
        Ok(proc)
    }
}

/// Stops whatever still runs of a deleted pod, then removes it from the API and the disk.
async fn terminate(shared: &Arc<Shared>, ns: &str, name: &str, rt: &Arc<PodRuntime>, grace: u64) {
    for pgid in rt.execs.lock().unwrap().drain() {
        signal_group(pgid, Signal::KILL);
    }
    let procs: Vec<(String, ContainerProc)> = rt
        .containers
        .lock()
        .unwrap()
        .iter()
        .map(|(n, p)| (n.clone(), p.clone()))
        .filter(|(_, p)| p.exit.borrow().is_none())
        .collect();
    let stored = shared.get_pod(ns, name);
    if let Some(pod) = &stored {
        let names: Vec<String> = procs.iter().map(|(n, _)| n.clone()).collect();
        let ctx = Ctx {
            shared: shared.clone(),
            ns: ns.into(),
            name: name.into(),
            rt: rt.clone(),
            holder: 0,
            volumes: BTreeMap::new(),
        };
        ctx.stop_containers(&names, grace).await;
        let phase = pod
            .status
            .as_ref()
            .and_then(|s| s.phase.clone())
            .unwrap_or_default();
        if phase != "Succeeded" && phase != "Failed" && !names.is_empty() {
            shared.update_pod(ns, name, |p| {
                let st = p.status.get_or_insert_with(Default::default);
                let ok = st.container_statuses.iter().flatten().all(|c| {
                    c.state
                        .as_ref()
                        .and_then(|s| s.terminated.as_ref())
                        .is_some_and(|t| t.exit_code == 0)
                });
                st.phase = Some(if ok { "Succeeded" } else { "Failed" }.into());
            });
        }
    } else {
        for (_, p) in &procs {
            signal_group(p.pid, Signal::KILL);
        }
        for (_, p) in &procs {
            let _ = tokio::time::timeout(Duration::from_secs(5), wait_exit(p)).await;
        }
    }
    // The link goes first: while the holder lives, its name cannot belong to another pod.
    let link = rt.host_link.lock().unwrap().take();
    if let Some(link) = link {
        pod_net::detach(&link).await;
    }
    if let Some(h) = rt.holder.lock().unwrap().take() {
        signal_group(h, Signal::KILL);
    }
    // As the kubelet's, the final deletion waits for the sandbox to be torn down. A pod already
    // gone (grace 0) is not looked for again: the name may be a new pod's by now.
    if stored.is_some() {
        shared
            .store
            .lock()
            .unwrap()
            .remove(Resource::Pods, ns, name);
    }
    shared
        .kubelet
        .pods
        .lock()
        .unwrap()
        .remove(&(ns.to_string(), name.to_string()));
    let dir = rt.dir.clone();
    let _ = tokio::task::spawn_blocking(move || std::fs::remove_dir_all(dir)).await;
}
