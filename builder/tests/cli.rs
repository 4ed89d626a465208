//! The `kiln` binary as a user runs it: output, error lines and exit codes.

use kiln_testkit::need_root;
use kiln_testkit::privilege;
use std::path::Path;
use std::process::{Command, Output};

fn kiln(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_kiln"))
        .current_dir(dir)
        .args(args)
        .output()
        .unwrap()
}

fn write(dir: &Path, name: &str, text: &str) {
    std::fs::write(dir.join(name), text).unwrap();
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn dry_run_prints_needed_stages_and_expanded_steps() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "Dockerfile",
        "ARG BASE=busybox\nFROM $BASE AS build\nARG V=1\nRUN make V=$V\nFROM scratch AS unused\nFROM scratch\nCOPY --from=build /out /out-$TARGETOS\n",
    );
    let o = kiln(
        dir.path(),
        &[
            "build",
            "--dry-run",
            "--build-arg",
            "V=2",
            "--custom-platform",
            "linux/arm64",
        ],
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let out = String::from_utf8(o.stdout).unwrap();
    assert!(
        out.starts_with("./Dockerfile: 3 stages, target #2 (stage 2)\n"),
        "{out}"
    );
    assert!(
        out.contains("not needed for the target: \"unused\"\n"),
        "{out}"
    );
    assert!(
        out.contains("stage \"build\" (#0, line 2) from image busybox, wave 0\n"),
        "{out}"
    );
    assert!(out.contains("        3  ARG V=2\n"), "{out}");
    assert!(out.contains("        4  RUN make V=$V\n"), "{out}");
    assert!(
        out.contains("stage #2 (#2, line 6) from scratch, wave 1, after \"build\"\n"),
        "{out}"
    );
    assert!(
        out.contains("        7  COPY --from=build /out /out-\n"),
        "TARGETOS needs an ARG in the stage: {out}"
    );
    assert!(
        out.ends_with("context .: 1 paths visible to COPY and ADD (0 .dockerignore patterns)\n"),
        "{out}"
    );
}

#[test]
fn a_wrong_dockerfile_gives_one_line_with_file_and_line_and_exit_1() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "Dockerfile",
        "FROM scratch\n\n# build\nRUNN make\n",
    );
    let o = kiln(dir.path(), &["build", "--dry-run"]);
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(
        stderr(&o),
        "kiln: ./Dockerfile:4: unknown instruction \"RUNN\" (did you mean \"RUN\"?)\n"
    );
    assert!(o.stdout.is_empty());
}

#[test]
fn missing_dockerfile_names_the_path() {
    let dir = tempfile::tempdir().unwrap();
    let o = kiln(
        dir.path(),
        &["build", "--dry-run", "-f", "nope/Dockerfile.dev"],
    );
    assert_eq!(o.status.code(), Some(1));
    let e = stderr(&o);
    assert!(
        e.starts_with("kiln: ./nope/Dockerfile.dev: No such file or directory"),
        "{e}"
    );
}

#[test]
fn unknown_target_and_kaniko_flags() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "Dockerfile", "FROM scratch AS app\n");
    let o = kiln(dir.path(), &["build", "--dry-run", "--target", "ap"]);
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(
        stderr(&o),
        "kiln: target stage \"ap\" could not be found in ./Dockerfile (stages: app)\n"
    );

    let o = kiln(
        dir.path(),
        &["build", "--dry-run", "--context-sub-path", "x"],
    );
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("the kaniko flag --context-sub-path is not supported by kiln"));

    let o = kiln(
        dir.path(),
        &[
            "build",
            "--dry-run",
            "--snapshot-mode=redo",
            "--cache=true",
            "--no-push",
        ],
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(stderr(&o).contains("ignoring the kaniko flag --snapshot-mode"));
}

#[test]
fn reads_the_dockerfile_from_stdin() {
    use std::io::Write;
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_kiln"))
        .current_dir(dir.path())
        .args(["build", "--dry-run", "-f", "-"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"FROM scratch\nWROKDIR /x\n")
        .unwrap();
    let o = child.wait_with_output().unwrap();
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(
        stderr(&o),
        "kiln: <stdin>:2: unknown instruction \"WROKDIR\" (did you mean \"WORKDIR\"?)\n"
    );
}

#[test]
fn demo_plans_the_embedded_build() {
    let dir = tempfile::tempdir().unwrap();
    let ctx = dir.path().join("ctx");
    let o = kiln(
        dir.path(),
        &["demo", "--dry-run", "--dir", ctx.to_str().unwrap()],
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let out = String::from_utf8(o.stdout).unwrap();
    let ctx = ctx.join("context");
    assert!(ctx.join("Dockerfile").is_file() && ctx.join("greet.sh").is_file());
    assert!(out.contains("not needed for the target: \"test\""), "{out}");
    assert!(
        out.contains("stage \"base\" (#0, line 5) from scratch"),
        "{out}"
    );
    assert!(out.contains("from stage \"base\""), "{out}");
    assert!(out.contains("RUN <<EOF"), "{out}");
    assert!(
        out.contains(": 3 paths visible to COPY and ADD (1 .dockerignore patterns)"),
        "{out}"
    );
}

/// `kiln build --dry-run` of the repository's own Dockerfile with `extra` arguments: its plan.
fn plan_shipped(extra: &[&str]) -> String {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let args: Vec<&str> = ["build", "--dry-run"]
        .iter()
        .chain(extra)
        .copied()
        .collect();
    let o = kiln(&root, &args);
    assert_eq!(o.status.code(), Some(0), "{extra:?}: {}", stderr(&o));
    String::from_utf8(o.stdout).unwrap()
}

#[test]
fn the_dockerfile_kiln_ships_plans_both_targets() {
    let out = plan_shipped(&[]);
    assert!(out.contains("target \"kiln\""), "{out}");
    assert!(
        out.contains("not needed for the target: \"prebuilt\", \"runner\""),
        "{out}"
    );
    assert!(out.contains("from image rust:1.85-bookworm"), "{out}");
    let out = plan_shipped(&["--target", "runner", "--build-arg", "DEBIAN=trixie"]);
    assert!(out.contains("from image debian:trixie-slim"), "{out}");

    // CI's way: binaries from the context, a base of its own, no rust image needed.
    let out = plan_shipped(&[
        "--target",
        "runner",
        "--build-arg",
        "BINARIES=prebuilt",
        "--build-arg",
        "BASE=localhost:5000/debian:bookworm-slim",
    ]);
    assert!(
        out.contains("not needed for the target: \"build\", \"kiln\""),
        "{out}"
    );
    assert!(!out.contains("rust:"), "{out}");
    assert!(
        out.contains("from image localhost:5000/debian:bookworm-slim"),
        "{out}"
    );
    assert!(out.contains("COPY bin/kiln bin/kiln-runner /out/"), "{out}");
}

#[test]
fn unterminated_heredoc_and_quote_name_their_lines() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "Dockerfile",
        "FROM scratch\nRUN true\nRUN <<EOF\necho hi\n",
    );
    let o = kiln(dir.path(), &["build", "--dry-run"]);
    assert_eq!(o.status.code(), Some(1));
    let e = stderr(&o);
    assert!(
        e.starts_with("kiln: ./Dockerfile:3: ") && e.contains("EOF"),
        "{e}"
    );
    assert_eq!(e.lines().count(), 1, "{e}");

    write(
        dir.path(),
        "Dockerfile",
        "FROM scratch\nWORKDIR \"/app\nRUN true\n",
    );
    let o = kiln(dir.path(), &["build", "--dry-run"]);
    assert_eq!(o.status.code(), Some(1));
    let e = stderr(&o);
    assert!(
        e.starts_with("kiln: ./Dockerfile:2: WORKDIR: ") && e.contains("double-quote"),
        "{e}"
    );
}

/// A Dockerfile in the context that is a symlink is refused (exit 1), and nothing of the file it
/// points to is printed; one named by an absolute path is the user's own choice and is read.
#[test]
fn a_symlinked_dockerfile_in_the_context_is_refused_without_echoing_its_target() {
    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("host-secret");
    write(
        dir.path(),
        "host-secret",
        "root:TOPSECRET:19000:0:99999:7:::\n",
    );
    let ctx = dir.path().join("ctx");
    std::fs::create_dir(&ctx).unwrap();
    std::os::unix::fs::symlink(&secret, ctx.join("Dockerfile")).unwrap();
    for args in [
        &["build", "--dry-run", "-c", "ctx"][..],
        &["build", "--dry-run", "-c", "ctx", "-f", "Dockerfile"][..],
    ] {
        let o = kiln(dir.path(), args);
        assert_eq!(o.status.code(), Some(1), "{args:?}");
        let e = stderr(&o);
        assert!(e.contains("the Dockerfile is a symbolic link"), "{e}");
        assert!(!e.contains("TOPSECRET") && !e.contains("root:"), "{e}");
    }
    // From inside the context, `-f Dockerfile` names the same link.
    let o = kiln(&ctx, &["build", "--dry-run", "-f", "Dockerfile"]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    // A real Dockerfile named by an absolute path through a link is read.
    write(dir.path(), "real.Dockerfile", "FROM scratch\nENV A=1\n");
    std::os::unix::fs::symlink(dir.path().join("real.Dockerfile"), dir.path().join("abs")).unwrap();
    let abs = dir.path().join("abs");
    let o = kiln(
        dir.path(),
        &[
            "build",
            "--dry-run",
            "-c",
            "ctx",
            "-f",
            abs.to_str().unwrap(),
        ],
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
}

/// A `.dockerignore` symlink is followed only inside the context: one pointing at a host file
/// (by an absolute path or `..`) reads the context's own file of that name, or nothing.
#[test]
fn a_symlinked_dockerignore_is_read_only_inside_the_context() {
    use kiln::context::dockerignore::DockerIgnore;
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "outside", "[broken\n");
    let ctx = dir.path().join("ctx");
    std::fs::create_dir(&ctx).unwrap();
    std::os::unix::fs::symlink(dir.path().join("outside"), ctx.join(".dockerignore")).unwrap();
    // The absolute target is looked up in the context, where it does not exist.
    let ig = DockerIgnore::load(&ctx).unwrap();
    assert!(ig.is_empty(), "{:?}", ig.patterns());
    std::fs::remove_file(ctx.join(".dockerignore")).unwrap();
    std::os::unix::fs::symlink("../outside", ctx.join(".dockerignore")).unwrap();
    assert!(DockerIgnore::load(&ctx).unwrap().is_empty());
    // A link to a file inside the context is followed.
    write(&ctx, "ignores", "*.log\n");
    std::fs::remove_file(ctx.join(".dockerignore")).unwrap();
    std::os::unix::fs::symlink("ignores", ctx.join(".dockerignore")).unwrap();
    assert_eq!(DockerIgnore::load(&ctx).unwrap().patterns().len(), 1);
}

/// `<Dockerfile>.dockerignore` follows the same rule: a symlink to a host file is looked up in
/// the context (or, for a Dockerfile outside it, in the Dockerfile's directory).
#[test]
fn a_symlinked_dockerfile_dockerignore_is_read_only_inside_the_context() {
    use kiln::context::dockerignore::DockerIgnore;
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "outside", "[broken\n");
    let ctx = dir.path().join("ctx");
    std::fs::create_dir_all(ctx.join("sub")).unwrap();
    write(&ctx, "sub/Dockerfile", "FROM scratch\n");
    let specific = ctx.join("sub/Dockerfile.dockerignore");
    let load = || DockerIgnore::load_for_dockerfile(&ctx, &ctx.join("sub/Dockerfile"));
    std::os::unix::fs::symlink(dir.path().join("outside"), &specific).unwrap();
    // Followed on the host this would read "[broken" and fail to parse; inside the context
    // the target does not exist, which excludes nothing.
    assert!(load().unwrap().is_empty());
    std::fs::remove_file(&specific).unwrap();
    std::os::unix::fs::symlink("../../outside", &specific).unwrap();
    assert!(load().unwrap().is_empty());
    write(&ctx, "ignores", "*.log\n");
    std::fs::remove_file(&specific).unwrap();
    std::os::unix::fs::symlink("../ignores", &specific).unwrap();
    assert_eq!(load().unwrap().patterns().len(), 1);
    // A Dockerfile outside the context: its directory bounds the link.
    let other = dir.path().join("other");
    std::fs::create_dir(&other).unwrap();
    std::os::unix::fs::symlink("../outside", other.join("Dockerfile.dockerignore")).unwrap();
    let ig = DockerIgnore::load_for_dockerfile(&ctx, &other.join("Dockerfile")).unwrap();
    assert!(ig.is_empty());
}

#[test]
fn isolation_is_read_from_kiln_isolation_when_the_flag_is_absent() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "Dockerfile", "FROM scratch\n");
    let run = |env: Option<&str>, args: &[&str]| {
        let mut c = Command::new(env!("CARGO_BIN_EXE_kiln"));
        c.current_dir(dir.path()).args(args);
        if let Some(v) = env {
            c.env("KILN_ISOLATION", v);
        }
        c.output().unwrap()
    };
    // A dry run never isolates anything: a real build (no push) reads the setting.
    let cache = dir.path().join("cache");
    let cache = cache.to_str().unwrap();
    let o = run(Some("bogus"), &["build", "--no-push", "--cache-dir", cache]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("--isolation \"bogus\""),
        "{}",
        stderr(&o)
    );
    // The flag wins over the environment.
    let o = run(
        Some("bogus"),
        &[
            "build",
            "--no-push",
            "--cache-dir",
            cache,
            "--isolation",
            "auto",
        ],
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
}

/// An error names its cause once, though the error's own message already holds it.
#[test]
fn an_error_prints_its_cause_once() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "Dockerfile", "FROM scratch\n");
    write(dir.path(), "file", "");
    let o = kiln(
        dir.path(),
        &[
            "build",
            "--no-push",
            "--destination",
            "a/b",
            "--cache-dir",
            "file/cache",
        ],
    );
    let e = stderr(&o);
    assert_ne!(o.status.code(), Some(0), "{e}");
    let cause = std::io::Error::from_raw_os_error(20).to_string();
    assert_eq!(e.matches(&cause).count(), 1, "{e}");
    assert!(
        e.lines()
            .any(|l| l.starts_with("kiln: ") && l.contains("file/cache")),
        "{e}"
    );
}

/// A real build (no push) in `dir` with its own cache directory, plus `extra`.
fn build(dir: &Path, extra: &[&str]) -> Output {
    let cache = dir.join("cache");
    let mut args = vec!["build", "--no-push", "--cache-dir", cache.to_str().unwrap()];
    args.extend_from_slice(extra);
    kiln(dir, &args)
}

/// The input's failures exit 1; usage, kiln's own and its environment's exit 2.
#[test]
fn exit_codes_say_whose_failure_it_is() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();

    write(d, "Dockerfile", "FROM scratch\nCOPYY a /a\n");
    let o = build(d, &[]);
    assert_eq!(
        o.status.code(),
        Some(1),
        "a bad Dockerfile line: {}",
        stderr(&o)
    );

    write(d, "Dockerfile", "FROM scratch\nCOPY missing /missing\n");
    let o = build(d, &[]);
    assert_eq!(
        o.status.code(),
        Some(1),
        "a missing COPY source: {}",
        stderr(&o)
    );
    assert!(
        stderr(&o).starts_with("kiln: ./Dockerfile:2: "),
        "{}",
        stderr(&o)
    );

    write(d, "Dockerfile", "FROM scratch\n");
    let o = build(d, &["--no-such-flag"]);
    assert_eq!(o.status.code(), Some(2), "an unknown flag: {}", stderr(&o));

    write(d, "not-a-dir", "");
    let o = kiln(d, &["build", "--no-push", "--cache-dir", "not-a-dir"]);
    assert_eq!(
        o.status.code(),
        Some(2),
        "a --cache-dir that is a file: {}",
        stderr(&o)
    );
    assert!(stderr(&o).starts_with("kiln: not-a-dir"), "{}", stderr(&o));

    let o = kiln(d, &["--help"]);
    assert_eq!(o.status.code(), Some(0));
    let help = String::from_utf8_lossy(&o.stdout);
    assert!(
        help.contains("Exit codes: 0 success; 1 the input is wrong"),
        "{help}"
    );
}

/// A base image kiln cannot reach is the environment's failure (2), named at its FROM line.
#[test]
fn an_unreachable_base_image_exits_2_naming_its_from_line() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "Dockerfile",
        "FROM scratch AS first\n\nFROM 127.0.0.1:1/app:1\nENV A=1\n",
    );
    let o = build(
        dir.path(),
        &["--insecure-registry", "127.0.0.1:1", "--push-retry", "0"],
    );
    let e = stderr(&o);
    assert_eq!(o.status.code(), Some(2), "{e}");
    assert!(
        e.starts_with("kiln: ./Dockerfile:3: base image 127.0.0.1:1/app:1: "),
        "{e}"
    );
    assert_eq!(e.lines().count(), 1, "{e}");
}

/// A RUN step's own failure is the build's (1), whatever code it exits with.
#[test]
fn a_run_step_exiting_3_exits_1() {
    need_root!();
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(privilege::BUSYBOX, dir.path().join("busybox")).unwrap();
    write(
        dir.path(),
        "Dockerfile",
        "FROM scratch\nCOPY busybox /bin/sh\nRUN exit 3\n",
    );
    let o = build(dir.path(), &[]);
    let e = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{e}");
    assert!(
        e.contains("Dockerfile:3:") && e.contains("exited with code 3"),
        "{e}"
    );
}
