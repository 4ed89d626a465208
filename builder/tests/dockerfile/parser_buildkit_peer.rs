//! BuildKit's own parser test data (shared/peer-tests/buildkit-dockerfile): kiln's parser must
//! dump every case exactly as BuildKit does, reject every negative case, and number lines alike.

use std::fs;
use std::path::{Path, PathBuf};

use kiln::dockerfile::parser::{dump_all, parse};

fn peer_dir() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../shared/peer-tests/buildkit-dockerfile");
    assert!(
        dir.is_dir(),
        "peer test data missing: expected BuildKit's parser test files at {} \
         (shared/peer-tests must sit beside the checkout)",
        dir.display()
    );
    dir
}

fn cases(sub: &str) -> Vec<(String, PathBuf)> {
    let dir = peer_dir().join(sub);
    let mut out: Vec<(String, PathBuf)> = fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()))
        .map(|e| e.expect("directory entry"))
        .filter(|e| e.path().is_dir())
        .map(|e| (e.file_name().to_string_lossy().into_owned(), e.path()))
        .collect();
    out.sort();
    out
}

fn read(path: &Path) -> String {
    fs::read_to_string(path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

/// The first differing line of two dumps, for a readable failure.
fn first_difference(want: &str, got: &str) -> String {
    let (w, g): (Vec<&str>, Vec<&str>) = (want.lines().collect(), got.lines().collect());
    for i in 0..w.len().max(g.len()) {
        let (a, b) = (w.get(i), g.get(i));
        if a != b {
            return format!(
                "  line {}:\n    want: {}\n    got:  {}",
                i + 1,
                a.unwrap_or(&"<none>"),
                b.unwrap_or(&"<none>")
            );
        }
    }
    format!("  (only trailing bytes differ)\n    want: {want:?}\n    got:  {got:?}")
}

#[test]
fn every_testfile_dumps_like_buildkit() {
    let cases = cases("testfiles");
    let mut failures = Vec::new();
    for (name, dir) in &cases {
        let text = read(&dir.join("Dockerfile"));
        let want = read(&dir.join("result"));
        match parse(&text) {
            Err(e) => failures.push(format!("{name}: parse failed: {e}")),
            Ok(parsed) => {
                let got = dump_all(&parsed.nodes);
                if got != want {
                    failures.push(format!("{name}:\n{}", first_difference(&want, &got)));
                }
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases differ from BuildKit:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
    assert_eq!(cases.len(), 33, "expected BuildKit's 33 parser test cases");
}

#[test]
fn every_negative_testfile_is_rejected() {
    let cases = cases("testfiles-negative");
    assert_eq!(cases.len(), 4, "expected BuildKit's 4 negative cases");
    for (name, dir) in &cases {
        let text = read(&dir.join("Dockerfile"));
        let result = parse(&text);
        assert!(result.is_err(), "{name} must be rejected, got {result:?}");
    }
}

#[test]
fn negative_cases_fail_for_the_right_reason() {
    let dir = peer_dir().join("testfiles-negative");
    let msg = |case: &str| {
        parse(&read(&dir.join(case).join("Dockerfile")))
            .expect_err(case)
            .message
    };
    assert_eq!(msg("empty_dockerfile"), "file with no instructions");
    assert_eq!(msg("only_comments"), "file with no instructions");
    assert_eq!(msg("env_no_value"), "ENV must have two arguments");
    assert!(msg("shykes-nested-json").contains("strings only"));
    let env = parse(&read(&dir.join("env_no_value/Dockerfile"))).expect_err("env");
    assert_eq!(env.line, 3);
}

/// BuildKit's TestParseIncludesLineNumbers: three instructions at 5-5, 11-12 and 17-31.
#[test]
fn testfile_line_numbers_match_buildkit() {
    let text = read(&peer_dir().join("testfile-line/Dockerfile"));
    let parsed = parse(&text).expect("testfile-line parses");
    let lines: Vec<(usize, usize)> = parsed
        .nodes
        .iter()
        .map(|n| (n.start_line, n.end_line))
        .collect();
    assert_eq!(lines, vec![(5, 5), (11, 12), (17, 31)]);
    assert_eq!(parsed.nodes[0].keyword, "from");
    assert_eq!(parsed.nodes[2].keyword, "run");
    // The `# ESCAPE=\` directive on line 1 sets the (default) escape character.
    assert_eq!(parsed.directives.escape, Some('\\'));
}
