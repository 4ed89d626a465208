//! Every `kiln` command line in `examples/` (the `.gitlab-ci.yml` files, the CLI recipes)
//! is run through kiln's own command line, so a renamed or dropped flag breaks this test
//! rather than a user's first pipeline.
//!
//! A command line is a line that starts with `kiln ` once trimmed of blanks and a YAML list's
//! `- `, joined with the lines a trailing `\` continues onto. Variables become placeholders
//! (`--context` and `--dockerfile` get a real context and Dockerfile made here). A `kiln build`
//! runs with `--dry-run`, which parses the flags, the Dockerfile and the stage graph and stops
//! before pulling anything; other commands (`kiln warm`, which would fetch images) run with
//! `--help` appended, which clap reaches only once every earlier argument has parsed, and
//! after kiln's screening of kaniko's flags.
//!
//! This crate cannot use `CARGO_BIN_EXE_kiln` (only set for the package's own tests): kiln is
//! built next to this test as in `build_image_job.rs`, or taken from `KILN_BIN`.

use kiln_tests::bins::kiln_bin;
use std::path::{Path, PathBuf};
use std::process::Command;

/// A command line found in an example, with where it was.
struct Found {
    place: String,
    line: String,
}

fn files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            files(&p, out);
        } else {
            out.push(p);
        }
    }
}

/// The `kiln …` command lines of `text`.
fn command_lines(text: &str, file: &str) -> Vec<Found> {
    let mut out = Vec::new();
    let mut lines = text.lines().enumerate();
    while let Some((i, l)) = lines.next() {
        let t = l.trim();
        let t = t.strip_prefix("- ").unwrap_or(t).trim_start();
        if !t.starts_with("kiln ") {
            continue;
        }
        let mut line = t.to_owned();
        while line.ends_with('\\') {
            line.pop();
            match lines.next() {
                Some((_, next)) => {
                    line.push(' ');
                    line.push_str(next.trim());
                }
                None => break,
            }
        }
        out.push(Found {
            place: format!("{file}:{}", i + 1),
            line: line.trim().to_owned(),
        });
    }
    out
}

/// `$NAME` and `${NAME}` → `x`: a value kiln takes in any flag but paths that must exist
/// (quotes are not told apart: the examples quote variables only to keep them one word).
fn expand(s: &str) -> String {
    let mut out = String::new();
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '$' {
            out.push(c);
            continue;
        }
        match chars.peek() {
            Some('{') => {
                chars.next();
                for c in chars.by_ref() {
                    if c == '}' {
                        break;
                    }
                }
                out.push('x');
            }
            Some(c) if c.is_ascii_alphabetic() || *c == '_' => {
                while chars
                    .peek()
                    .is_some_and(|c| c.is_ascii_alphanumeric() || *c == '_')
                {
                    chars.next();
                }
                out.push('x');
            }
            _ => out.push('$'),
        }
    }
    out
}

/// Shell words: blanks split, single and double quotes group (after expansion, so no `$`).
fn words(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut in_word = false;
    let mut quote = None;
    for c in s.chars() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), c) => cur.push(c),
            (None, '"' | '\'') => {
                quote = Some(c);
                in_word = true;
            }
            (None, c) if c.is_whitespace() => {
                if in_word {
                    out.push(std::mem::take(&mut cur));
                    in_word = false;
                }
            }
            (None, c) => {
                cur.push(c);
                in_word = true;
            }
        }
    }
    assert!(quote.is_none(), "unbalanced quotes in {s:?}");
    if in_word {
        out.push(cur);
    }
    out
}

/// The argv kiln gets for `words` (without `kiln`): a real context and Dockerfile, and
/// `--dry-run` or `--help`.
fn argv(words: &[String], ctx: &Path, dockerfile: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut it = words.iter().peekable();
    while let Some(w) = it.next() {
        let real = match w.as_str() {
            "--context" | "-c" if words[0] == "build" => Some(ctx),
            "--dockerfile" | "-f" if words[0] == "build" => Some(dockerfile),
            _ => None,
        };
        if let Some(path) = real {
            out.push(w.clone());
            it.next();
            out.push(path.display().to_string());
            continue;
        }
        if let Some(flag) = ["--context=", "--dockerfile="]
            .iter()
            .find(|f| w.starts_with(*f) && words[0] == "build")
        {
            let path = if *flag == "--context=" {
                ctx
            } else {
                dockerfile
            };
            out.push(format!("{flag}{}", path.display()));
            continue;
        }
        out.push(w.clone());
    }
    let docker_backend = words
        .windows(2)
        .any(|w| w[0] == "--backend" && w[1] == "docker")
        || words.iter().any(|w| w == "--backend=docker");
    if words[0] == "build" && !docker_backend {
        if !out.iter().any(|w| w == "--dry-run") {
            out.push("--dry-run".into());
        }
    } else {
        out.push("--help".into());
    }
    out
}

#[test]
fn every_kiln_command_line_in_examples_parses() {
    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples");
    let mut all = Vec::new();
    files(&examples, &mut all);
    all.sort();
    let mut found = Vec::new();
    for f in &all {
        let Ok(text) = std::fs::read_to_string(f) else {
            continue;
        };
        let rel = f.strip_prefix(&examples).unwrap().display().to_string();
        found.extend(command_lines(&text, &rel));
    }
    assert!(
        found.len() >= 10,
        "expected the examples' kiln command lines, found {}",
        found.len()
    );

    let tmp = tempfile::tempdir().unwrap();
    let ctx = tmp.path().join("ctx");
    std::fs::create_dir_all(&ctx).unwrap();
    std::fs::write(ctx.join("hello.txt"), "hello\n").unwrap();
    let kiln = kiln_bin();
    let mut failures = Vec::new();
    for f in &found {
        let w = words(&expand(&f.line));
        assert_eq!(w[0], "kiln");
        let w = &w[1..];
        // A stage for every `--target` the line names, above one it builds on.
        let mut dockerfile = String::from("FROM scratch AS base\nARG VERSION\nCOPY hello.txt /\n");
        for pair in w.windows(2) {
            if pair[0] == "--target" {
                dockerfile.push_str(&format!("FROM base AS {}\n", pair[1]));
            }
        }
        // In the context, where kiln looks when the line names no `--dockerfile`.
        let df = ctx.join("Dockerfile");
        std::fs::write(&df, dockerfile).unwrap();
        let args = argv(w, &ctx, &df);
        let out = Command::new(&kiln)
            .args(&args)
            .current_dir(&ctx)
            .env_remove("DOCKER_HOST")
            .output()
            .unwrap();
        if !out.status.success() {
            failures.push(format!(
                "{}: {}\n  ran: kiln {}\n  {}",
                f.place,
                f.line,
                args.join(" "),
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        } else if args.last().map(String::as_str) == Some("--dry-run") {
            let stdout = String::from_utf8_lossy(&out.stdout);
            assert!(
                stdout.contains("stage"),
                "{}: dry run printed {stdout}",
                f.place
            );
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn extraction_follows_continuations_and_quotes() {
    let text = "script:\n  - kiln build --context \"$CI_PROJECT_DIR\" \\\n      --destination '$X:1'\n# kiln build --nope\necho kiln build\n";
    let f = command_lines(text, "t");
    assert_eq!(f.len(), 1);
    assert_eq!(f[0].place, "t:2");
    assert_eq!(
        words(&expand(&f[0].line)),
        ["kiln", "build", "--context", "x", "--destination", "x:1"]
    );
}
