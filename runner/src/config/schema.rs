//! The keys kiln-runner reads, to report the others.

/// What a key holds.
enum Node {
    /// A value read as a whole.
    Leaf,
    /// A table with these keys.
    Table(&'static [(&'static str, Node)]),
    /// An array of tables with these keys.
    Tables(&'static [(&'static str, Node)]),
}

const KUBERNETES: &[(&str, Node)] = &[
    ("namespace", Node::Leaf),
    ("image", Node::Leaf),
    ("privileged", Node::Leaf),
    ("service_account", Node::Leaf),
    ("cpu_request", Node::Leaf),
    ("cpu_limit", Node::Leaf),
    ("memory_request", Node::Leaf),
    ("memory_limit", Node::Leaf),
    ("node_selector", Node::Leaf),
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
        match known.iter().find(|(k, _)| k == key).map(|(_, n)| n) {
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
