//! `.dockerignore` behaviour checked against Docker's documentation and the cases of moby's
//! patternmatcher and ignorefile tests; the expectations were derived from those, not from
//! running kiln.

use std::path::Path;

use kiln::context::dockerignore::DockerIgnore;
use kiln::context::walk::{walk, BuildContext, EntryKind};
use kiln::context::ContextError;

fn ignore(lines: &[&str]) -> DockerIgnore {
    DockerIgnore::parse(&lines.join("\n"), ".dockerignore")
        .unwrap_or_else(|e| panic!("{lines:?} should parse: {e}"))
}

/// Checks every `(path, excluded)` pair and reports all mismatches at once.
fn check(lines: &[&str], cases: &[(&str, bool)]) {
    let ig = ignore(lines);
    let wrong: Vec<String> = cases
        .iter()
        .filter(|(path, want)| ig.is_excluded(path) != *want)
        .map(|(path, want)| format!("{path:?}: expected excluded={want}"))
        .collect();
    assert!(
        wrong.is_empty(),
        "patterns {lines:?}:\n{}",
        wrong.join("\n")
    );
}

#[test]
fn docker_docs_example_temp_patterns() {
    // "*/temp*" — names starting with temp in any immediate subdirectory of the root.
    check(
        &["*/temp*"],
        &[
            ("somedir/temporary.txt", true),
            ("somedir/temp", true),
            ("somedir/temp/inside.txt", true),
            ("temp", false),
            ("temporary.txt", false),
            ("a/b/temp", false),
            ("somedir/atemp", false),
        ],
    );
    // "*/*/temp*" — the same two levels below the root.
    check(
        &["*/*/temp*"],
        &[
            ("somedir/subdir/temporary.txt", true),
            ("somedir/subdir/temp/x", true),
            ("somedir/temporary.txt", false),
            ("a/b/c/temp", false),
        ],
    );
    // "temp?" — one character after temp, at the root only.
    check(
        &["temp?"],
        &[
            ("tempa", true),
            ("tempb", true),
            ("tempa/inside", true),
            ("temp", false),
            ("tempab", false),
            ("dir/tempa", false),
            ("temp/", false),
        ],
    );
    // The whole documented file, with its comment line.
    check(
        &["# comment", "*/temp*", "*/*/temp*", "temp?"],
        &[
            ("# comment", false),
            ("somedir/temporary.txt", true),
            ("somedir/subdir/temporary.txt", true),
            ("tempa", true),
            ("README.md", false),
        ],
    );
}

#[test]
fn double_star_matches_any_number_of_directories() {
    check(
        &["**/*.go"],
        &[
            ("main.go", true),
            ("cmd/main.go", true),
            ("a/b/c/d.go", true),
            ("vendor.go/readme", true),
            ("main.gox", false),
            ("a/main.go.txt", false),
            ("go", false),
        ],
    );
    check(
        &["**"],
        &[("a", true), ("a/b/c", true), (".hidden", true), ("/", true)],
    );
    check(&["**/"], &[("file", true), ("dir/file", true)]);
    check(
        &["dir/**"],
        &[
            ("dir/file", true),
            ("dir/dir2/file", true),
            ("dir", false),
            ("dirx/file", false),
        ],
    );
    check(
        &["**/dir2/*"],
        &[
            ("dir/dir2/file", true),
            ("dir2/file", true),
            ("dir/dir2", false),
            ("dir/dir3/file", false),
        ],
    );
    check(
        &["a**/*.txt"],
        &[
            ("a/file.txt", true),
            ("a/dir/file.txt", true),
            ("a/dir/dir/file.txt", true),
            ("b/file.txt", false),
        ],
    );
    check(
        &["**/foo/bar"],
        &[
            ("foo/bar", true),
            ("dir/foo/bar", true),
            ("dir/dir2/foo/bar", true),
            ("dir/foo/barx", false),
            ("foo", false),
        ],
    );
}

#[test]
fn patternmatcher_match_table() {
    // (pattern, path, excluded) from patternmatcher's TestMatches, as seen through
    // MatchesOrParentMatches, plus the filepath.Match cases it borrows.
    let cases: &[(&str, &str, bool)] = &[
        ("**", "file", true),
        ("**", "dir/file", true),
        ("**/**", "dir/file", true),
        ("**/dir", "dir", true),
        ("**/dir", "dir/file", true),
        ("**/dir2/**", "dir/dir2/dir3/file", true),
        ("**file", "file", true),
        ("**file", "dir/file", true),
        // A leading `**` followed by plain text is a bare suffix test in patternmatcher.
        ("**file", "myfile", true),
        ("**/file", "myfile", false),
        // Elsewhere `**` becomes the regular expression `.*`, which stops at a newline.
        ("a/**/b", "a/x/y/b", true),
        ("a/**/b", "a/x\ny/b", false),
        ("**/file", "dir/dir/file", true),
        ("**/file*", "dir/dir/file.txt", true),
        ("**/file*txt", "dir/dir/file.txt", true),
        ("**/file*.txt*", "dir/dir/file.txt", true),
        ("**/**/*.txt", "dir/dir/file.txt", true),
        ("**/**/*.txt2", "dir/dir/file.txt", false),
        ("**/*.txt", "file.txt", true),
        ("**/**/*.txt", "file.txt", true),
        ("a/*.txt", "a/dir/file.txt", false),
        ("a/*.txt", "a/file.txt", true),
        ("a/*.txt**", "a/file.txt", true),
        ("a[b-d]e", "ae", false),
        ("a[b-d]e", "ace", true),
        ("a[b-d]e", "aae", false),
        ("a[^b-d]e", "aze", true),
        (".*", ".foo", true),
        (".*", "foo", false),
        ("abc.def", "abcdef", false),
        ("abc.def", "abc.def", true),
        ("abc.def", "abcZdef", false),
        ("abc?def", "abcZdef", true),
        ("abc?def", "abcdef", false),
        ("abc/**", "abc", false),
        ("abc/**", "abc/def", true),
        ("abc/**", "abc/def/ghi", true),
        ("**/.foo", ".foo", true),
        ("**/.foo", "bar.foo", false),
        ("a(b)c/def", "a(b)c/def", true),
        ("a(b)c/def", "a(b)c/xyz", false),
        ("a.|)$(}+{bc", "a.|)$(}+{bc", true),
        (
            "dist/*.whl",
            "dist/proxy.py-2.4.0rc3.dev36+g08acad9-py3-none-any.whl",
            true,
        ),
        ("a\\\\", "a\\", true),
        ("a\\*b", "a*b", true),
        ("a\\*b", "axb", false),
        ("a\\*b", "ab", false),
        // filepath.Match cases.
        ("abc", "abc", true),
        ("*", "abc", true),
        ("*c", "abc", true),
        ("a*", "a", true),
        ("a*", "ab/c", true),
        ("a*/b", "abc/b", true),
        ("a*/b", "a/c/b", false),
        ("a*b*c*d*e*/f", "axbxcxdxe/f", true),
        ("a*b*c*d*e*/f", "axbxcxdxexxx/f", true),
        ("a*b*c*d*e*/f", "axbxcxdxe/xxx/f", false),
        ("a*b*c*d*e*/f", "axbxcxdxexxx/fff", false),
        ("a*b?c*x", "abxbbxdbxebxczzx", true),
        ("a*b?c*x", "abxbbxdbxebxczzy", false),
        ("ab[c]", "abc", true),
        ("ab[b-d]", "abc", true),
        ("ab[e-g]", "abc", false),
        ("ab[^c]", "abc", false),
        ("ab[^b-d]", "abc", false),
        ("ab[^e-g]", "abc", true),
        ("a?b", "a☺b", true),
        ("a[^a]b", "a☺b", true),
        ("a???b", "a☺b", false),
        ("a[^a][^a][^a]b", "a☺b", false),
        ("[a-ζ]*", "α", true),
        ("*[a-ζ]", "A", false),
        ("a?b", "a/b", false),
        ("a*b", "a/b", false),
        ("[\\]a]", "]", true),
        ("[\\-]", "-", true),
        ("[x\\-]", "x", true),
        ("[x\\-]", "-", true),
        ("[x\\-]", "z", false),
        ("[\\-x]", "x", true),
        ("[\\-x]", "-", true),
        ("[\\-x]", "a", false),
        ("*x", "xxx", true),
        // Docker turns a class into a regular-expression class, which (like filepath.Match)
        // does not stop at `/`.
        ("a[^x]b", "a/b", true),
    ];
    let wrong: Vec<String> = cases
        .iter()
        .filter(|(pattern, path, want)| ignore(&[pattern]).is_excluded(path) != *want)
        .map(|(pattern, path, want)| format!("{pattern:?} on {path:?}: expected {want}"))
        .collect();
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

#[test]
fn exceptions_and_their_order() {
    // Docker docs: all markdown files but README.md.
    check(
        &["*.md", "!README.md"],
        &[
            ("README.md", false),
            ("CHANGES.md", true),
            ("docs/guide.md", false),
            ("main.go", false),
        ],
    );
    // Docker docs: no markdown files but README files other than README-secret.md.
    check(
        &["*.md", "!README*.md", "README-secret.md"],
        &[
            ("README-secret.md", true),
            ("README.md", false),
            ("README-public.md", false),
            ("CHANGES.md", true),
        ],
    );
    // Docker docs: the middle line has no effect, since !README*.md comes last.
    check(
        &["*.md", "README-secret.md", "!README*.md"],
        &[
            ("README-secret.md", false),
            ("README.md", false),
            ("CHANGES.md", true),
        ],
    );
    // An exception before the pattern it would override does nothing.
    check(&["!fileutils.go", "*.go"], &[("fileutils.go", true)]);
    check(
        &["*.go", "!fileutils.go"],
        &[("fileutils.go", false), ("x.go", true)],
    );
    // Docker docs: include-only contexts start with `*`.
    check(
        &["*", "!src", "!Dockerfile"],
        &[
            ("src", false),
            ("src/main.rs", false),
            ("Dockerfile", false),
            ("README.md", true),
            ("target/debug/app", true),
        ],
    );
}

#[test]
fn exception_reincludes_a_file_inside_an_excluded_directory() {
    for dir in ["docs", "docs/", "docs/*", "/docs"] {
        check(
            &[dir, "!docs/README.md"],
            &[
                ("docs/README.md", false),
                ("docs/guide.md", true),
                ("docs/sub/README.md", true),
                ("README.md", false),
            ],
        );
    }
    check(
        &["**", "!util/docker/web"],
        &[("util/docker/web/foo", false), ("util/docker/other", true)],
    );
    check(
        &["**", "!util/docker/web", "util/docker/web/foo"],
        &[
            ("util/docker/web/foo", true),
            ("util/docker/web/bar", false),
        ],
    );
    check(
        &["**", "!dist/*.whl"],
        &[
            (
                "dist/proxy.py-2.4.0rc3.dev36+g08acad9-py3-none-any.whl",
                false,
            ),
            ("dist/proxy.tar.gz", true),
        ],
    );
    // A later include pattern is tested against every parent, as in MatchesOrParentMatches.
    check(&["d", "!d/f", "d"], &[("d/f", true)]);
}

#[test]
fn root_relative_paths_and_trailing_slashes() {
    for pattern in [
        "/foo/bar",
        "foo/bar",
        "//foo/bar",
        "./foo/bar",
        "foo/./baz/../bar",
    ] {
        check(
            &[pattern],
            &[
                ("foo/bar", true),
                ("foo/bar/baz", true),
                ("foo", false),
                ("bar", false),
                ("x/foo/bar", false),
                ("foo/barx", false),
            ],
        );
    }
    // The slash is cleaned away, so a plain file named foo is excluded too.
    check(
        &["foo/"],
        &[
            ("foo", true),
            ("foo/x", true),
            ("foox", false),
            ("a/foo", false),
        ],
    );
    // `.` cleans to the context root, which Docker never excludes; it matches nothing.
    check(
        &["."],
        &[("a", false), ("a/b", false), (".", false), ("", false)],
    );
    check(&["./"], &[("a", false)]);
    // `..` cannot reach anything inside the context.
    check(&["../a", ".."], &[("a", false), ("..", true)]);
    // Paths given to is_excluded are cleaned too.
    check(
        &["foo/bar"],
        &[
            ("./foo/bar", true),
            ("foo//bar/", true),
            ("foo/x/../bar", true),
        ],
    );
}

#[test]
fn file_syntax_comments_whitespace_and_line_endings() {
    let text = "\u{feff}# comment\r\n  spaced  \r\n\r\n #notacomment\n\tnode_modules\t\n! /inverted/abs/path\n!  x \n";
    let ig = DockerIgnore::parse(text, ".dockerignore").unwrap();
    let got: Vec<(String, bool, usize)> = ig
        .patterns()
        .iter()
        .map(|p| (p.text().to_owned(), p.is_exception(), p.line()))
        .collect();
    let want = [
        ("spaced", false, 2),
        ("#notacomment", false, 4),
        ("node_modules", false, 5),
        ("inverted/abs/path", true, 6),
        ("x", true, 7),
    ];
    let want: Vec<(String, bool, usize)> = want
        .iter()
        .map(|(t, e, l)| (t.to_string(), *e, *l))
        .collect();
    assert_eq!(got, want);
    assert!(ig.has_exceptions());
    assert!(ig.is_excluded("#notacomment"));
    assert!(!ig.is_excluded("# comment"));
    assert!(ig.is_excluded("spaced"));

    // ignorefile's own example.
    let ig = DockerIgnore::parse(
        "test1\n/test2\n/a/file/here\n\nlastfile\n# this is a comment\n! /inverted/abs/path\n",
        ".dockerignore",
    )
    .unwrap();
    let texts: Vec<&str> = ig.patterns().iter().map(|p| p.text()).collect();
    assert_eq!(
        texts,
        [
            "test1",
            "test2",
            "a/file/here",
            "lastfile",
            "inverted/abs/path"
        ]
    );

    let empty = DockerIgnore::parse("# only a comment\n\n   \n", ".dockerignore").unwrap();
    assert!(empty.is_empty());
    assert!(!empty.is_excluded("anything"));
    assert!(!empty.has_exceptions());

    // A lone `/` survives cleaning and matches no relative path.
    check(&["/"], &[("a", false)]);
}

#[test]
fn invalid_patterns_name_the_file_and_line() {
    let err = DockerIgnore::parse("ok\n# comment\n[abc\n", "ctx/.dockerignore").unwrap_err();
    assert_eq!(
        err.to_string(),
        "ctx/.dockerignore:3: invalid pattern \"[abc\": unterminated character class '['"
    );
    match err {
        ContextError::BadPattern {
            file,
            line,
            pattern,
            ..
        } => {
            assert_eq!(
                (file.as_str(), line, pattern.as_str()),
                ("ctx/.dockerignore", 3, "[abc")
            );
        }
        other => panic!("unexpected error {other:?}"),
    }

    // (text, line of the bad pattern)
    let bad: &[(&str, usize)] = &[
        ("[", 1),
        ("a\n[^", 2),
        ("[^bc", 1),
        ("a[", 1),
        ("[]a]", 1),
        ("[-]", 1),
        ("[x-]", 1),
        ("[-x]", 1),
        ("[a-b-c]", 1),
        ("foo\\", 1),
        ("\n\n!", 3),
        ("!/", 1),
        ("! ", 1),
        ("[z-a]", 1),
        ("!docs/[", 1),
    ];
    for (text, line) in bad {
        match DockerIgnore::parse(text, "Dockerfile.dockerignore") {
            Err(ContextError::BadPattern {
                file, line: got, ..
            }) => {
                assert_eq!(file, "Dockerfile.dockerignore");
                assert_eq!(got, *line, "line for {text:?}");
            }
            other => panic!("{text:?} should be a bad pattern, got {other:?}"),
        }
    }
}

#[test]
fn can_skip_dir_only_when_no_exception_can_reach_inside() {
    let cases: &[(&[&str], &str, bool)] = &[
        (&["target"], "target", true),
        (&["target"], "src", false),
        (&["docs", "!docs/README.md"], "docs", false),
        (&["docs", "!docs/README.md"], "docs/sub", true),
        (&["docs", "!other/file"], "docs", true),
        (&["ab", "!abc/d"], "ab", true),
        (&["a", "!a/b/c"], "a", false),
        (&["a", "!a/b/c"], "a/b", false),
        (&["a", "!a/x"], "a/b", true),
        // A wildcard exception could match anywhere, so no excluded directory is skipped.
        (&["docs", "!**/*.md"], "docs", false),
        (&["docs", "!keep?"], "docs", false),
        // Not excluded at all: there is nothing to skip.
        (&["docs", "!docs"], "docs", false),
    ];
    for (lines, dir, want) in cases {
        assert_eq!(
            ignore(lines).can_skip_dir(dir),
            *want,
            "patterns {lines:?}, dir {dir:?}"
        );
    }
}

fn write(root: &Path, rel: &str, content: &str) {
    let path = root.join(rel);
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).unwrap();
    }
    std::fs::write(path, content).unwrap();
}

#[test]
fn walking_a_real_context() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    write(
        root,
        ".dockerignore",
        "# build output\ntarget\n*.log\n!important.log\ndocs\n!docs/README.md\nDockerfile\n.dockerignore\nsecrets/\n",
    );
    write(root, "Dockerfile", "FROM scratch\n");
    write(root, "src/main.rs", "fn main() {}\n");
    write(root, "src/lib.rs", "");
    write(root, "src/debug.log", "");
    write(root, "important.log", "");
    write(root, "app.log", "");
    write(root, "target/debug/app", "");
    write(root, "docs/README.md", "");
    write(root, "docs/guide.md", "");
    write(root, "secrets/key", "");
    std::fs::create_dir(root.join("empty")).unwrap();
    std::os::unix::fs::symlink("target", root.join("link")).unwrap();
    std::os::unix::fs::symlink("/nonexistent", root.join("dangling")).unwrap();

    let ctx = BuildContext::open(root).unwrap();
    let listing: Vec<(&str, EntryKind)> = ctx
        .entries()
        .iter()
        .map(|e| (e.path.as_str(), e.kind))
        .collect();
    assert_eq!(
        listing,
        [
            ("dangling", EntryKind::Symlink),
            // Excluded, but listed because the re-included README.md lives in it.
            ("docs", EntryKind::Dir),
            ("docs/README.md", EntryKind::File),
            ("empty", EntryKind::Dir),
            ("important.log", EntryKind::File),
            ("link", EntryKind::Symlink),
            ("src", EntryKind::Dir),
            // `*.log` only applies at the root.
            ("src/debug.log", EntryKind::File),
            ("src/lib.rs", EntryKind::File),
            ("src/main.rs", EntryKind::File),
        ]
    );

    // COPY and ADD cannot see the ignored Dockerfile or .dockerignore ...
    assert!(!ctx.is_visible("Dockerfile"));
    assert!(!ctx.is_visible(".dockerignore"));
    assert!(!ctx.is_visible("docs/guide.md"));
    assert!(ctx.is_visible("./src//main.rs"));
    assert!(ctx.is_visible("/src/main.rs"));
    assert_eq!(ctx.get("src").map(|e| e.kind), Some(EntryKind::Dir));
    // ... but the frontend still reads them.
    let dockerfile = ctx.frontend_path("Dockerfile");
    assert_eq!(
        std::fs::read_to_string(dockerfile).unwrap(),
        "FROM scratch\n"
    );
    assert!(ctx.frontend_path(".dockerignore").is_file());
    assert_eq!(ctx.root(), root);
    assert_eq!(ctx.ignore().patterns().len(), 8);
}

#[test]
fn walking_without_an_ignore_file_lists_everything() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    write(root, "Dockerfile", "FROM scratch\n");
    write(root, "a.txt", "");
    write(root, "a/b/c", "");
    write(root, "a-b", "");
    let ctx = BuildContext::open(root).unwrap();
    assert!(ctx.ignore().is_empty());
    let paths: Vec<&str> = ctx.paths().collect();
    // Component order: a directory is followed by its contents before `a-b` and `a.txt`.
    assert_eq!(paths, ["Dockerfile", "a", "a/b", "a/b/c", "a-b", "a.txt"]);
    assert!(ctx.is_visible("Dockerfile"));
}

#[test]
fn walker_skips_excluded_directories_it_can_and_enters_those_it_must() {
    use std::ffi::OsStr;
    use std::os::unix::ffi::OsStrExt;

    // A name that is not UTF-8 makes the walker fail if, and only if, it reads the directory
    // holding it, which shows whether that directory was skipped.
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    write(root, "cache/keep.md", "");
    std::fs::write(root.join("cache").join(OsStr::from_bytes(b"bad\xff")), "").unwrap();

    let skipped = walk(root, &ignore(&["cache", "!docs/README.md"])).unwrap();
    assert!(skipped.is_empty(), "{skipped:?}");

    match walk(root, &ignore(&["cache", "!**/*.md"])) {
        Err(ContextError::NonUtf8Path { path }) => {
            assert!(path.starts_with(root.join("cache")), "{path:?}");
        }
        other => panic!("expected the walker to enter cache/, got {other:?}"),
    }

    std::fs::remove_file(root.join("cache").join(OsStr::from_bytes(b"bad\xff"))).unwrap();
    let entered = walk(root, &ignore(&["cache", "!**/*.md"])).unwrap();
    let paths: Vec<&str> = entered.iter().map(|e| e.path.as_str()).collect();
    assert_eq!(paths, ["cache", "cache/keep.md"]);
}

#[test]
fn load_handles_missing_and_unreadable_files() {
    let dir = tempfile::tempdir().unwrap();
    assert!(DockerIgnore::load(dir.path()).unwrap().is_empty());

    write(dir.path(), ".dockerignore", "a\n[\n");
    let err = DockerIgnore::load(dir.path()).unwrap_err();
    let expected_file = dir.path().join(".dockerignore").display().to_string();
    assert!(
        err.to_string().starts_with(&format!("{expected_file}:2: ")),
        "{err}"
    );

    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join(".dockerignore")).unwrap();
    match DockerIgnore::load(dir.path()) {
        Err(ContextError::Io(kiln::path_io::PathIo { path, .. })) => {
            assert_eq!(path, dir.path().join(".dockerignore"))
        }
        other => panic!("expected an Io error, got {other:?}"),
    }

    let missing = dir.path().join("nope");
    assert!(matches!(
        BuildContext::open(&missing),
        Err(ContextError::Io(_))
    ));
}

#[test]
fn dockerfile_specific_ignore_file_takes_precedence() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    write(root, ".dockerignore", "from-root\n");
    write(root, "build/app.Dockerfile", "FROM scratch\n");
    write(root, "build/app.Dockerfile.dockerignore", "from-specific\n");

    let specific =
        DockerIgnore::load_for_dockerfile(root, &root.join("build/app.Dockerfile")).unwrap();
    assert!(specific.is_excluded("from-specific"));
    assert!(!specific.is_excluded("from-root"));

    let fallback = DockerIgnore::load_for_dockerfile(root, &root.join("Dockerfile")).unwrap();
    assert!(fallback.is_excluded("from-root"));
    assert!(!fallback.is_excluded("from-specific"));
}

proptest::proptest! {
    #[test]
    fn no_input_panics(text in "[ -~\\n\\t☺]{0,60}", path in "[a-z*?\\[\\]/.\\\\!-]{0,30}") {
        if let Ok(ig) = DockerIgnore::parse(&text, ".dockerignore") {
            let _ = ig.is_excluded(&path);
            let _ = ig.can_skip_dir(&path);
        }
        if let Ok(ig) = DockerIgnore::parse(&path, ".dockerignore") {
            let _ = ig.is_excluded(&text);
        }
    }
}
