//! The keys kiln-runner reads, to report the others.
//!
//! A hand list, not `serde_ignored` over the serde structs: the kubernetes table flattens its
//! resource grid (`#[serde(flatten)]`), and serde's flatten buffers the table and drops what the
//! inner struct leaves, so `serde_ignored` never sees those keys (dtolnay/serde-ignored#10, open).
//! A key added to a struct must be added here too: the golden and example configs that set it
//! (runner/tests/config.rs, examples.rs) fail when it is reported unknown.

/// What a key holds.
#[derive(Clone, Copy)]
enum Node {
    /// A value read as a whole.
    Leaf,
    /// A table with these keys.
    Table(&'static [(&'static str, Node)]),
    /// An array of tables with these keys.
    Tables(&'static [(&'static str, Node)]),
}

const VOLUME_COMMON: [(&str, Node); 3] = [
    ("name", Node::Leaf),
    ("mount_path", Node::Leaf),
    ("read_only", Node::Leaf),
];

const EMPTY_DIR: &[(&str, Node)] = &[
    ("name", Node::Leaf),
    ("mount_path", Node::Leaf),
    ("medium", Node::Leaf),
    ("size_limit", Node::Leaf),
];

const SECRET_VOLUME: &[(&str, Node)] = &[
    VOLUME_COMMON[0],
    VOLUME_COMMON[1],
    VOLUME_COMMON[2],
    ("items", Node::Leaf),
];

const HOST_PATH: &[(&str, Node)] = &[
    VOLUME_COMMON[0],
    VOLUME_COMMON[1],
    VOLUME_COMMON[2],
    ("host_path", Node::Leaf),
];

const VOLUMES: &[(&str, Node)] = &[
    ("empty_dir", Node::Tables(EMPTY_DIR)),
    ("pvc", Node::Tables(&VOLUME_COMMON)),
    ("secret", Node::Tables(SECRET_VOLUME)),
    ("config_map", Node::Tables(SECRET_VOLUME)),
    ("host_path", Node::Tables(HOST_PATH)),
];

const HOST_ALIAS: &[(&str, Node)] = &[("ip", Node::Leaf), ("hostnames", Node::Leaf)];

const POD_SECURITY_CONTEXT: &[(&str, Node)] = &[
    ("run_as_user", Node::Leaf),
    ("run_as_group", Node::Leaf),
    ("run_as_non_root", Node::Leaf),
    ("fs_group", Node::Leaf),
    ("supplemental_groups", Node::Leaf),
];

/// The resource keys: `[service_|helper_](cpu|memory|ephemeral_storage)_(limit|request)`,
/// each with its `_overwrite_max_allowed` ceiling.
fn is_resource_key(key: &str) -> bool {
    let key = key.strip_suffix("_overwrite_max_allowed").unwrap_or(key);
    let key = key
        .strip_prefix("service_")
        .or_else(|| key.strip_prefix("helper_"))
        .unwrap_or(key);
    ["cpu", "memory", "ephemeral_storage"].iter().any(|r| {
        key.strip_prefix(r)
            .is_some_and(|b| b == "_limit" || b == "_request")
    })
}

const KUBERNETES: &[(&str, Node)] = &[
    ("namespace", Node::Leaf),
    ("namespace_overwrite_allowed", Node::Leaf),
    ("image", Node::Leaf),
    ("helper_image", Node::Leaf),
    ("privileged", Node::Leaf),
    ("node_selector", Node::Leaf),
    ("node_tolerations", Node::Leaf),
    // Read whole into the API's Affinity type; its own field names are checked there.
    ("affinity", Node::Leaf),
    ("service_account", Node::Leaf),
    ("service_account_overwrite_allowed", Node::Leaf),
    ("automount_service_account_token", Node::Leaf),
    ("image_pull_secrets", Node::Leaf),
    ("pull_policy", Node::Leaf),
    ("host_aliases", Node::Tables(HOST_ALIAS)),
    ("pod_labels", Node::Leaf),
    ("pod_labels_overwrite_allowed", Node::Leaf),
    ("pod_annotations", Node::Leaf),
    ("pod_annotations_overwrite_allowed", Node::Leaf),
    ("pod_security_context", Node::Table(POD_SECURITY_CONTEXT)),
    ("dns_policy", Node::Leaf),
    ("poll_interval", Node::Leaf),
    ("poll_timeout", Node::Leaf),
    ("cleanup_grace_period_seconds", Node::Leaf),
    ("volumes", Node::Table(VOLUMES)),
    ("mode", Node::Leaf),
    ("dind_image", Node::Leaf),
    ("native_sidecars", Node::Leaf),
    ("isolation", Node::Leaf),
    ("cache_volume", Node::Leaf),
];

const KILN: &[(&str, Node)] = &[
    ("mode", Node::Leaf),
    ("cache_dir", Node::Leaf),
    ("bin_dir", Node::Leaf),
    ("allowed_overrides", Node::Leaf),
];

const RUNNER: &[(&str, Node)] = &[
    ("name", Node::Leaf),
    ("url", Node::Leaf),
    ("token", Node::Leaf),
    ("id", Node::Leaf),
    // Written by gitlab-runner's register; harmless and expected in copied files.
    ("token_obtained_at", Node::Leaf),
    ("token_expires_at", Node::Leaf),
    ("executor", Node::Leaf),
    ("limit", Node::Leaf),
    ("request_concurrency", Node::Leaf),
    ("unhealthy_requests_limit", Node::Leaf),
    ("unhealthy_interval", Node::Leaf),
    ("environment", Node::Leaf),
    ("output_limit", Node::Leaf),
    ("builds_dir", Node::Leaf),
    ("kubernetes", Node::Table(KUBERNETES)),
    ("kiln", Node::Table(KILN)),
];

const ROOT: &[(&str, Node)] = &[
    ("concurrent", Node::Leaf),
    ("check_interval", Node::Leaf),
    ("log_level", Node::Leaf),
    ("log_format", Node::Leaf),
    ("listen_address", Node::Leaf),
    ("shutdown_timeout", Node::Leaf),
    ("runners", Node::Tables(RUNNER)),
];

/// Dotted paths (`runners[0].docker.image`) of the keys in `table` that kiln-runner
/// does not read, in file order.
pub fn unknown_keys(table: &toml::Table) -> Vec<String> {
    let mut out = Vec::new();
    walk(table, ROOT, "", &mut out);
    out
}

fn walk(table: &toml::Table, known: &[(&str, Node)], prefix: &str, out: &mut Vec<String>) {
    for (key, value) in table {
        let path = if prefix.is_empty() {
            key.clone()
        } else {
            format!("{prefix}.{key}")
        };
        let known_here = known.iter().find(|(k, _)| k == key).map(|(_, n)| n);
        // The kubernetes table's resource keys are a grid too big to list one by one.
        let resource = std::ptr::eq(known, KUBERNETES) && is_resource_key(key);
        match known_here {
            None if resource => {}
            None => out.push(path),
            Some(Node::Leaf) => {}
            Some(Node::Table(keys)) => {
                if let toml::Value::Table(t) = value {
                    walk(t, keys, &path, out);
                }
            }
            Some(Node::Tables(keys)) => {
                if let toml::Value::Array(items) = value {
                    for (i, item) in items.iter().enumerate() {
                        if let toml::Value::Table(t) = item {
                            walk(t, keys, &format!("{path}[{i}]"), out);
                        }
                    }
                }
            }
        }
    }
}
