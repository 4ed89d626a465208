//! The instruction keywords BuildKit knows, and "did you mean" suggestions.

/// Every instruction keyword BuildKit dispatches, lower-cased.
pub const KNOWN_INSTRUCTIONS: &[&str] = &[
    "add",
    "arg",
    "cmd",
    "copy",
    "entrypoint",
    "env",
    "expose",
    "from",
    "healthcheck",
    "label",
    "maintainer",
    "onbuild",
    "run",
    "shell",
    "stopsignal",
    "user",
    "volume",
    "workdir",
];

fn edit_distance(a: &[char], b: &[char]) -> usize {
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.iter().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let subst = prev[j] + usize::from(ca != cb);
            cur[j + 1] = subst.min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

/// The known instruction closest to `word` (case-insensitive) when it is at most two edits
/// away; the earliest in [`KNOWN_INSTRUCTIONS`] wins a tie. A known word suggests itself.
pub fn suggest(word: &str) -> Option<&'static str> {
    let word: Vec<char> = word.to_lowercase().chars().collect();
    // Longer words cannot be within two edits of any keyword; skip the quadratic work.
    if word.len() > 13 {
        return None;
    }
    let mut best: Option<(usize, &'static str)> = None;
    for known in KNOWN_INSTRUCTIONS {
        let k: Vec<char> = known.chars().collect();
        let d = edit_distance(&word, &k);
        if d <= 2 && best.is_none_or(|(bd, _)| d < bd) {
            best = Some((d, known));
        }
    }
    best.map(|(_, k)| k)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggestions() {
        assert_eq!(suggest("RUNN"), Some("run"));
        assert_eq!(suggest("copy"), Some("copy"));
        assert_eq!(suggest("entrypont"), Some("entrypoint"));
        assert_eq!(suggest("xyzzy"), None);
        assert_eq!(suggest("workdri"), Some("workdir"));
    }
}
