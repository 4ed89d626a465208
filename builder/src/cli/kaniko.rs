//! kaniko's flags that kiln does not take: a kaniko job that switches to kiln is told plainly
//! which ones matter and which ones kiln makes moot, instead of clap's bare "unexpected argument".

use super::Usage;

/// Flags that change nothing in kiln, with why; they are dropped with a note.
const MOOT: &[(&str, &str)] = &[
    (
        "snapshot-mode",
        "kiln snapshots each step's overlay upper directory, which is always exact",
    ),
    (
        "use-new-run",
        "kiln always snapshots RUN steps by their overlay upper directory",
    ),
    (
        "skip-unused-stages",
        "kiln never builds stages the target does not need",
    ),
    ("cache-copy-layers", "kiln caches COPY and RUN layers alike"),
    ("cache-run-layers", "kiln caches COPY and RUN layers alike"),
    ("compressed-caching", "kiln never holds a layer in memory"),
    (
        "cleanup",
        "kiln leaves the build container's filesystem untouched",
    ),
    (
        "log-timestamp",
        "kiln prints timestamps when its output is not a terminal",
    ),
    ("log-format", "kiln prints plain lines in CI"),
    (
        "ignore-var-run",
        "kiln does not snapshot the build container's own filesystem",
    ),
    (
        "whitelist-var-run",
        "kiln does not snapshot the build container's own filesystem",
    ),
    ("force", "kiln decides by itself where it may run"),
];

/// Flags kiln refuses, with what to do instead.
const UNSUPPORTED: &[(&str, &str)] = &[
    ("git", "give kiln a checked-out directory as --context"),
    (
        "context-sub-path",
        "point --context at the sub-directory itself",
    ),
    ("kaniko-dir", "kiln keeps its state under --cache-dir"),
    ("registry-map", "use --registry-mirror for Docker Hub"),
    (
        "image-fs-extract-retry",
        "kiln retries registry transfers by itself (--push-retry)",
    ),
    (
        "image-download-retry",
        "kiln retries registry transfers by itself (--push-retry)",
    ),
    (
        "no-push-cache",
        "kiln pushes cache layers only with --cache-repo",
    ),
    (
        "skip-push-permission-check",
        "kiln checks push rights only when it pushes",
    ),
];

/// Drops kaniko flags that are moot in kiln (saying so) and refuses the unsupported ones.
pub fn screen(argv: Vec<String>) -> anyhow::Result<Vec<String>> {
    let mut out = Vec::with_capacity(argv.len());
    let mut skip_value = false;
    for (i, arg) in argv.iter().enumerate() {
        if skip_value {
            skip_value = false;
            continue;
        }
        if arg == "--" {
            out.extend(argv[i..].iter().cloned());
            break;
        }
        let Some(body) = arg.strip_prefix("--") else {
            out.push(arg.clone());
            continue;
        };
        let (name, has_value) = match body.split_once('=') {
            Some((n, _)) => (n, true),
            None => (body, false),
        };
        if let Some((_, why)) = UNSUPPORTED.iter().find(|(n, _)| *n == name) {
            return Err(Usage(format!(
                "the kaniko flag --{name} is not supported by kiln: {why}"
            ))
            .into());
        }
        if let Some((_, why)) = MOOT.iter().find(|(n, _)| *n == name) {
            eprintln!("kiln: note: ignoring the kaniko flag --{name}: {why}");
            // A value given as the next word (`--snapshot-mode redo`) goes with the flag.
            let next_is_value = argv.get(i + 1).is_some_and(|n| !n.starts_with('-'));
            skip_value = !has_value && next_is_value && !is_bool(name);
            continue;
        }
        out.push(arg.clone());
    }
    Ok(out)
}

fn is_bool(name: &str) -> bool {
    !matches!(name, "snapshot-mode" | "log-format")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn argv(s: &str) -> Vec<String> {
        s.split_whitespace().map(str::to_string).collect()
    }

    #[test]
    fn moot_flags_are_dropped_with_their_values() {
        let out = screen(argv(
            "kiln build --snapshot-mode redo --cleanup --context . --use-new-run=true",
        ))
        .unwrap();
        assert_eq!(out, argv("kiln build --context ."));
    }

    #[test]
    fn unsupported_flags_are_refused_by_name() {
        let e = screen(argv("kiln build --git branch=main")).unwrap_err();
        assert_eq!(
            e.to_string(),
            "the kaniko flag --git is not supported by kiln: give kiln a checked-out directory as --context"
        );
    }

    #[test]
    fn words_after_double_dash_are_untouched() {
        let out = screen(argv("kiln build -- --cleanup")).unwrap();
        assert_eq!(out, argv("kiln build -- --cleanup"));
    }
}
