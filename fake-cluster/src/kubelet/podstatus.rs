//! Pod status as the kubelet writes it: conditions and container states.

use k8s_openapi::api::core::v1::{
    ContainerState, ContainerStateRunning, ContainerStateTerminated, ContainerStateWaiting,
    ContainerStatus, Pod, PodCondition, PodStatus,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use crate::time::now_time;

/// Sets a condition; its transition time changes only when its status does, as on a real node.
pub(crate) fn set_condition(
    status: &mut PodStatus,
    type_: &str,
    ok: bool,
    reason: Option<&str>,
    message: Option<&str>,
) {
    let conds = status.conditions.get_or_insert_with(Vec::new);
    let value = if ok { "True" } else { "False" }.to_string();
    match conds.iter_mut().find(|c| c.type_ == type_) {
        Some(c) => {
            if c.status != value {
                c.last_transition_time = Some(now_time());
            }
            c.status = value;
            c.reason = reason.map(str::to_string);
            c.message = message.map(str::to_string);
        }
        None => conds.push(PodCondition {
            type_: type_.to_string(),
            status: value,
            reason: reason.map(str::to_string),
            message: message.map(str::to_string),
            last_transition_time: Some(now_time()),
            ..Default::default()
        }),
    }
    // The kubelet's order, which `kubectl describe` shows.
    let rank = |t: &str| {
        [
            "PodReadyToStartContainers",
            "Initialized",
            "Ready",
            "ContainersReady",
            "PodScheduled",
        ]
        .iter()
        .position(|x| *x == t)
        .unwrap_or(9)
    };
    conds.sort_by_key(|c| rank(&c.type_));
}

/// The status entry of a container, made when missing.
pub(crate) fn container_mut<'a>(
    status: &'a mut PodStatus,
    pod: &Pod,
    init: bool,
    name: &str,
) -> &'a mut ContainerStatus {
    let list = if init {
        status.init_container_statuses.get_or_insert_with(Vec::new)
    } else {
        status.container_statuses.get_or_insert_with(Vec::new)
    };
    if let Some(i) = list.iter().position(|c| c.name == name) {
        return &mut list[i];
    }
    let spec = pod.spec.clone().unwrap_or_default();
    let image = spec
        .containers
        .iter()
        .chain(spec.init_containers.iter().flatten())
        .find(|c| c.name == name)
        .and_then(|c| c.image.clone())
        .unwrap_or_default();
    list.push(ContainerStatus {
        name: name.to_string(),
        image,
        image_id: String::new(),
        ready: false,
        restart_count: 0,
        started: Some(false),
        ..Default::default()
    });
    let i = list.len() - 1;
    &mut list[i]
}

pub(crate) fn waiting(reason: &str, message: Option<&str>) -> ContainerState {
    ContainerState {
        waiting: Some(ContainerStateWaiting {
            reason: Some(reason.to_string()),
            message: message.map(str::to_string),
        }),
        ..Default::default()
    }
}

pub(crate) fn running(started: &Time) -> ContainerState {
    ContainerState {
        running: Some(ContainerStateRunning {
            started_at: Some(started.clone()),
        }),
        ..Default::default()
    }
}

pub(crate) fn terminated(
    code: i32,
    reason: &str,
    started: Option<Time>,
    container_id: Option<String>,
) -> ContainerState {
    ContainerState {
        terminated: Some(ContainerStateTerminated {
            exit_code: code,
            reason: Some(reason.to_string()),
            started_at: started,
            finished_at: Some(now_time()),
            container_id,
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// `Completed` for 0, `Error` otherwise, as containerd reports.
pub(crate) fn exit_reason(code: i32) -> &'static str {
    if code == 0 {
        "Completed"
    } else {
        "Error"
    }
}
