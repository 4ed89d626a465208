//! Object names and label values, made to pass the API server's rules.

use crate::config::RunnerConfig;
use crate::gitlab::JobResponse;

/// Whether `s` is a DNS-1123 label (pod, volume, container and namespace names): at most
/// 63 of `[a-z0-9-]`, starting and ending with an alphanumeric.
pub fn is_dns_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

/// Whether `s` is a valid label value: empty, or at most 63 of `[A-Za-z0-9._-]` starting and
/// ending with an alphanumeric.
pub fn is_label_value(s: &str) -> bool {
    s.is_empty()
        || (s.len() <= 63
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
            && s.as_bytes()[0].is_ascii_alphanumeric()
            && s.as_bytes()[s.len() - 1].is_ascii_alphanumeric())
}

/// `s` made into a label value: other characters become `_`, cut to 63, trimmed to start
/// and end with an alphanumeric (gitlab-runner's `sanitizeLabel` does the same).
pub fn label_value(s: &str) -> String {
    let mapped: String = s
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                c
            } else {
                '_'
            }
        })
        .take(63)
        .collect();
    mapped
        .trim_matches(|c: char| !c.is_ascii_alphanumeric())
        .to_owned()
}

/// `s` lower-cased with anything outside `[a-z0-9]` as `-`, for use inside a DNS label.
pub fn dns_part(s: &str) -> String {
    let mapped: String = s
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect();
    mapped.trim_matches('-').to_owned()
}

/// The pod's (and its Secret's) name: `kiln-<short token>-job-<job id>`.
///
/// Deterministic, so a runner restarted mid-job finds the pod by name as well as by label,
/// and a second create for the same job fails (409) instead of running it twice. The job id
/// is unique within a GitLab instance; the entry's short token separates runners (and GitLab
/// instances) sharing a namespace. At most 5 + 8 + 5 + 20 = 38 characters.
pub fn pod_name(job: &JobResponse, entry: &RunnerConfig) -> String {
    let token = dns_part(entry.short_token());
    let token = if token.is_empty() {
        "runner".into()
    } else {
        token
    };
    format!("kiln-{token}-job-{}", job.id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_values_are_sanitised() {
        assert_eq!(label_value("group/My Project!"), "group_My_Project");
        assert_eq!(label_value("-x-"), "x");
        assert!(is_label_value(&label_value(&"a".repeat(100))));
        assert!(is_label_value(""));
        assert!(!is_label_value("a/b"));
    }

    #[test]
    fn dns_labels() {
        assert!(is_dns_label("kiln-abc-job-1"));
        assert!(!is_dns_label("Kiln"));
        assert!(!is_dns_label("-a"));
        assert!(!is_dns_label(&"a".repeat(64)));
        assert_eq!(dns_part("Ab_C-"), "ab-c");
    }
}
