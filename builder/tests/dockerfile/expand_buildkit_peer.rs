//! Runs BuildKit's own expansion tables (`envVarTest`, `wordsTest`) against kiln's lexer.
//!
//! The tables live in `shared/peer-tests/buildkit-dockerfile/` beside the checkout; a missing
//! directory fails the test rather than skipping it, so that CI cannot pass without them.

use std::path::PathBuf;

use kiln::dockerfile::expand::Lexer;

fn peer_dir() -> PathBuf {
    let dir = PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../shared/peer-tests/buildkit-dockerfile"
    ));
    assert!(
        dir.is_dir(),
        "BuildKit peer test data not found at {}: the shared/peer-tests directory must sit \
         beside the checkout (see shared/peer-tests/README.md)",
        dir.display()
    );
    dir
}

fn read(name: &str) -> String {
    let path = peer_dir().join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

fn report(table: &str, checked: usize, failures: &[String]) {
    if !failures.is_empty() {
        panic!(
            "{} of {checked} {table} rows failed:\n{}",
            failures.len(),
            failures.join("\n")
        );
    }
}

#[test]
fn env_var_test_table() {
    let text = read("envVarTest");
    let env: Vec<(String, String)> = [
        ("PWD", "/home"),
        ("SHELL", "bash"),
        ("KOREAN", "한국어"),
        ("NULL", ""),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    let lexer = Lexer::new('\\');

    // Counted apart from the parsing below, so that a parsing slip that drops rows fails.
    let expected_rows = text
        .lines()
        .filter(|l| {
            let l = l.trim_start();
            l.starts_with("A|") || l.starts_with("U|")
        })
        .count();

    let mut checked = 0;
    let mut failures = Vec::new();
    for (n, raw) in text.lines().enumerate() {
        let line_no = n + 1;
        if raw.starts_with('#') || raw.trim().is_empty() {
            continue;
        }
        let fields: Vec<&str> = raw.trim().split('|').collect();
        let [platform, input, expected] = fields[..] else {
            failures.push(format!("line {line_no}: not three fields: {raw:?}"));
            continue;
        };
        let (platform, input, expected) = (platform.trim(), input.trim(), expected.trim());
        match platform {
            "W" => continue,
            "A" | "U" => {}
            other => {
                failures.push(format!("line {line_no}: unknown platform {other:?}"));
                continue;
            }
        }
        checked += 1;
        let got = lexer.process_word(input, &env);
        match (expected, got) {
            ("error", Err(_)) => {}
            ("error", Ok(w)) => failures.push(format!(
                "line {line_no}: {input:?} should fail but gave {w:?}"
            )),
            (want, Ok(w)) if w == want => {}
            (want, Ok(w)) => failures.push(format!(
                "line {line_no}: {input:?} gave {w:?}, want {want:?}"
            )),
            (want, Err(e)) => failures.push(format!(
                "line {line_no}: {input:?} failed ({e}), want {want:?}"
            )),
        }
    }
    assert!(
        checked >= expected_rows && expected_rows > 0,
        "checked {checked} envVarTest rows but the file has {expected_rows}"
    );
    report("envVarTest", checked, &failures);
    eprintln!("envVarTest: {checked} rows passed");
}

#[test]
fn words_test_table() {
    let text = read("wordsTest");
    let lexer = Lexer::new('\\');

    let expected_rows = text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.starts_with("ENV ") && l.contains('|'))
        .count();

    let mut env: Vec<(String, String)> = Vec::new();
    let mut checked = 0;
    let mut failures = Vec::new();
    for (n, raw) in text.lines().enumerate() {
        let line_no = n + 1;
        if raw.starts_with('#') {
            continue;
        }
        if let Some(def) = raw.strip_prefix("ENV ") {
            // Trailing spaces are part of the value; only the separator is dropped.
            let def = def.trim_start_matches(' ');
            let (k, v) = def.split_once('=').unwrap_or((def, ""));
            env.push((k.to_string(), v.to_string()));
            continue;
        }
        let fields: Vec<&str> = raw.split('|').collect();
        let [input, expected] = fields[..] else {
            failures.push(format!("line {line_no}: not exactly one '|': {raw:?}"));
            continue;
        };
        let input = input.trim();
        let want: Vec<String> = expected
            .trim_start_matches(' ')
            .split(',')
            .map(str::to_string)
            .collect();
        checked += 1;
        let got = match lexer.process_words(input, &env) {
            Ok(words) => words,
            Err(_) => vec!["error".to_string()],
        };
        if got != want {
            failures.push(format!(
                "line {line_no}: {input:?} gave {got:?}, want {want:?}"
            ));
        }
    }
    assert!(
        checked >= expected_rows && expected_rows > 0,
        "checked {checked} wordsTest rows but the file has {expected_rows}"
    );
    report("wordsTest", checked, &failures);
    eprintln!("wordsTest: {checked} rows passed");
}
