//! The equivalence corpus (`tests/corpus/`): its cases, and the helpers the tests that build
//! them share (`tests/equivalence.rs` against buildah, `tests/isolation_envs.rs` in containers).

use crate::image_tree::{self, ImageTree};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

/// Whether `test` can run, given the tools it lacks (`missing`): without them it is skipped,
/// except in CI (.ci/run sets KILN_REQUIRE_REGISTRY), where a missing tool fails it.
pub fn tools_here(test: &str, missing: Option<String>) -> bool {
    let Some(why) = missing else {
        return true;
    };
    assert!(
        std::env::var_os("KILN_REQUIRE_REGISTRY").is_none(),
        "{test}: {why}"
    );
    eprintln!("SKIPPED {test}: {why}");
    false
}

/// Why a corpus test cannot run here: not root (the reference builds use chroot isolation),
/// or one of `tools` (absolute paths) missing, with the Debian packages that bring them
/// (`packages`).
pub fn missing_as_root(tools: &[&str], packages: &str) -> Option<String> {
    let uid = Command::new("id").arg("-u").output().ok()?;
    if uid.stdout != b"0\n" {
        return Some("not root: the builds use chroot isolation".into());
    }
    tools
        .iter()
        .find(|t| !Path::new(t).exists())
        .map(|t| format!("{t} missing (apt-get install -y {packages})"))
}

/// Where [`push_base`] pushes the corpus's base image in a registry.
pub const BASE_REF: &str = "kiln-corpus/base:1";

/// Makes the corpus's base image (`make-base.sh`, with buildah's `global` flags) and pushes it
/// to the registry at `registry`; its reference.
pub fn push_base(registry: &str, global: &[impl AsRef<std::ffi::OsStr>]) -> String {
    run(Command::new("sh")
        .arg(corpus_dir().join("make-base.sh"))
        .arg(registry)
        .arg(BASE_REF)
        .args(global))
    .unwrap_or_else(|e| panic!("making the base image: {e}"));
    format!("{registry}/{BASE_REF}")
}

/// buildah's global flags for a store of its own under `dir` (vfs, no daemon).
pub fn buildah_store(dir: &Path) -> Vec<std::ffi::OsString> {
    vec![
        "--root".into(),
        dir.join("root").into(),
        "--runroot".into(),
        dir.join("runroot").into(),
        "--storage-driver".into(),
        "vfs".into(),
    ]
}

/// `tests/corpus/`.
pub fn corpus_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus")
}

/// The last `lines` lines of `bytes`.
pub fn tail(bytes: &[u8], lines: usize) -> String {
    let s = String::from_utf8_lossy(bytes);
    let v: Vec<&str> = s.lines().collect();
    v[v.len().saturating_sub(lines)..].join("\n")
}

/// Runs `cmd` (stdin closed); an error names it, its status and the tails of its output.
pub fn run(cmd: &mut Command) -> Result<Output, String> {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("{cmd:?}: {e}"))?;
    if out.status.success() {
        Ok(out)
    } else {
        Err(format!(
            "{cmd:?} failed ({}):\n{}\n{}",
            out.status,
            tail(&out.stdout, 20),
            tail(&out.stderr, 30)
        ))
    }
}

/// One directory of the corpus and what its files ask for.
pub struct Case {
    /// The directory's name (`01-minimal`).
    pub name: String,
    /// The case's directory, the build context.
    pub dir: PathBuf,
    /// What kiln builds.
    pub dockerfile: PathBuf,
    /// What the peers build: `Dockerfile.peer` where buildah 1.28 and docker 20.10's BuildKit
    /// cannot parse the original (heredocs), the same Dockerfile otherwise.
    pub peer_dockerfile: PathBuf,
    /// Whether kiln's image is compared with buildah's (the `peers` file lists `buildah`, or
    /// there is no `peers` file).
    pub buildah: bool,
    /// Whether kiln's image is compared with docker's BuildKit's (`peers` lists `buildkit`, or
    /// there is no `peers` file).
    pub buildkit: bool,
    /// More `NAME=value` build arguments.
    pub build_args: Vec<String>,
    /// The stage to build.
    pub target: Option<String>,
    /// `id=ID,src=ABSOLUTE` for `--secret`.
    pub secrets: Vec<String>,
    /// What running the image prints, when the case says.
    pub expect: Option<String>,
    /// `buildkit-history`: history texts docker 20.10's BuildKit writes otherwise than
    /// current BuildKit (and kiln), as (20.10's, current) pairs.
    pub buildkit_history: Vec<(String, String)>,
}

impl Case {
    /// The case's `--build-arg`, `--target` and `--secret` flags, as kiln and buildah spell
    /// them (`--secret` is BuildKit's and buildah's spelling, which kiln takes too).
    pub fn flags(&self) -> Vec<String> {
        let mut f = Vec::new();
        for a in &self.build_args {
            f.extend(["--build-arg".to_string(), a.clone()]);
        }
        if let Some(t) = &self.target {
            f.extend(["--target".to_string(), t.clone()]);
        }
        for s in &self.secrets {
            f.extend(["--secret".to_string(), s.clone()]);
        }
        f
    }

    /// `kiln build` of the case on the base image `base`: its context, Dockerfile and flags;
    /// the caller says where the image goes.
    pub fn kiln_build(&self, base: &str) -> Command {
        let mut c = Command::new(crate::bins::kiln_bin());
        c.arg("build")
            .arg("--context")
            .arg(&self.dir)
            .arg("--dockerfile")
            .arg(&self.dockerfile)
            .arg("--build-arg")
            .arg(format!("BASE={base}"))
            .args(self.flags());
        c
    }
}

fn lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(str::to_string)
        .collect()
}

/// The `KILN_CORPUS_CASES` filter (empty: every case).
pub fn case_filter() -> Vec<String> {
    std::env::var("KILN_CORPUS_CASES")
        .unwrap_or_default()
        .split(',')
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
}

/// The `20.10: TEXT` / `current: TEXT` line pairs of a case's `buildkit-history` file.
fn rewrites(case: &str, lines: &[String]) -> Vec<(String, String)> {
    let bad = || panic!("{case}/buildkit-history: want `20.10: TEXT` then `current: TEXT` lines");
    if !lines.len().is_multiple_of(2) {
        bad();
    }
    lines
        .chunks(2)
        .map(|pair| {
            match (
                pair[0].strip_prefix("20.10: "),
                pair[1].strip_prefix("current: "),
            ) {
                (Some(old), Some(new)) => (old.to_string(), new.to_string()),
                _ => bad(),
            }
        })
        .collect()
}

/// The cases of the corpus whose name contains one of `filter` (all when it is empty), sorted
/// by name.
pub fn load_cases(filter: &[String]) -> Vec<Case> {
    load_cases_in(&corpus_dir(), filter)
}

/// The cases (directories with a `Dockerfile`) of `root` whose name contains one of `filter`.
pub fn load_cases_in(root: &Path, filter: &[String]) -> Vec<Case> {
    let mut cases = Vec::new();
    for e in std::fs::read_dir(root).unwrap() {
        let dir = e.unwrap().path();
        let name = dir.file_name().unwrap().to_string_lossy().into_owned();
        if !dir.join("Dockerfile").is_file() {
            continue;
        }
        if !filter.is_empty() && !filter.iter().any(|f| name.contains(f.as_str())) {
            continue;
        }
        let peer = dir.join("Dockerfile.peer");
        let secrets = lines(&dir.join("secrets"))
            .into_iter()
            .map(|l| {
                let (id, src) = l
                    .split_once(",src=")
                    .unwrap_or_else(|| panic!("{name}/secrets: want id=ID,src=FILE, got {l}"));
                format!("{id},src={}", dir.join(src).display())
            })
            .collect();
        let buildkit_history = rewrites(&name, &lines(&dir.join("buildkit-history")));
        let peers = lines(&dir.join("peers"));
        for p in &peers {
            assert!(
                p == "buildah" || p == "buildkit",
                "{name}/peers: {p} is neither buildah nor buildkit"
            );
        }
        let has = |p: &str| peers.is_empty() || peers.iter().any(|l| l == p);
        cases.push(Case {
            dockerfile: dir.join("Dockerfile"),
            buildah: has("buildah"),
            buildkit: has("buildkit"),
            peer_dockerfile: if peer.is_file() {
                peer
            } else {
                dir.join("Dockerfile")
            },
            build_args: lines(&dir.join("build-args")),
            target: lines(&dir.join("target")).into_iter().next(),
            secrets,
            expect: std::fs::read_to_string(dir.join("expect")).ok(),
            buildkit_history,
            name,
            dir,
        });
    }
    cases.sort_by(|a, b| a.name.cmp(&b.name));
    cases
}

/// Reads and normalises an image, and leaves its listing in `DIR.txt` for whoever keeps the
/// work directory (`KILN_CORPUS_KEEP=1`).
pub fn read_normalised(dir: &Path) -> Result<ImageTree, String> {
    let mut t =
        image_tree::read_image(dir).map_err(|e| format!("reading {}: {e}", dir.display()))?;
    image_tree::normalise(&mut t);
    let _ = std::fs::write(dir.with_extension("txt"), image_tree::listing(&t));
    Ok(t)
}

/// `Ok` when the two images hold the same files and config, else the differences.
pub fn compare(a: &ImageTree, b: &ImageTree, an: &str, bn: &str) -> Result<(), String> {
    let d = image_tree::diff(a, b, an, bn);
    if d.is_empty() {
        Ok(())
    } else {
        Err(format!("{} differences:\n{}", d.len(), d.join("\n")))
    }
}
