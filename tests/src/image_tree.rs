//! An image as the equivalence tests compare it: the flattened filesystem (every layer applied in
//! order, OCI whiteouts and opaque directories honoured) and the runtime config fields.
//!
//! This reader is deliberately independent of `kiln::layer` and `kiln::image`: it judges kiln's
//! output, so it must not share kiln's mistakes. It reads an OCI image layout (`index.json`) or
//! a `containers/image` `dir:` directory (`manifest.json`), or an unpacked `docker save` tarball
//! (`manifest.json` holding a list), whichever the directory holds.

use serde_json::Value;
use sha2::{Digest as _, Sha256};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::io::{BufReader, Read};
use std::path::{Path, PathBuf};

/// Why an image directory could not be read.
#[derive(Debug, thiserror::Error)]
pub enum TreeError {
    /// A file of the image could not be read.
    #[error("reading {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The manifest, index or config is not what an image holds.
    #[error("{0}")]
    Format(String),
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> TreeError + '_ {
    move |source| TreeError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn bad(msg: impl Into<String>) -> TreeError {
    TreeError::Format(msg.into())
}

/// What kind of filesystem object an entry is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Kind {
    /// A directory.
    Dir,
    /// A regular file (hard links are regular files sharing a [`Entry::links`] group).
    File,
    /// A symbolic link.
    Symlink,
    /// A character device.
    Char,
    /// A block device.
    Block,
    /// A named pipe.
    Fifo,
}

/// One path of the flattened filesystem, with the attributes the comparison looks at.
#[derive(Debug, Clone)]
pub struct Entry {
    /// Type.
    pub kind: Kind,
    /// Permission bits including setuid, setgid and sticky (`mode & 0o7777`).
    pub mode: u32,
    /// Owner.
    pub uid: u64,
    /// Group.
    pub gid: u64,
    /// Content size (regular files only, 0 otherwise).
    pub size: u64,
    /// SHA-256 of the content (regular files only).
    pub sha256: Option<String>,
    /// Symlink target, or `major:minor` of a device.
    pub target: Option<String>,
    /// The other paths that are hard links to the same file, sorted (empty when none).
    pub links: Vec<String>,
    /// Which file this is, for hard-link groups; not compared itself.
    inode: u64,
}

/// Equal when every compared attribute is: the inode only groups hard links while reading.
impl PartialEq for Entry {
    fn eq(&self, o: &Entry) -> bool {
        (
            self.kind,
            self.mode,
            self.uid,
            self.gid,
            self.size,
            &self.sha256,
            &self.target,
            &self.links,
        ) == (
            o.kind, o.mode, o.uid, o.gid, o.size, &o.sha256, &o.target, &o.links,
        )
    }
}

impl Eq for Entry {}

impl fmt::Display for Entry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:?} {:04o} {}:{} size={}",
            self.kind, self.mode, self.uid, self.gid, self.size
        )?;
        if let Some(h) = &self.sha256 {
            write!(f, " sha256={}", &h[..16])?;
        }
        if let Some(t) = &self.target {
            write!(f, " -> {t}")?;
        }
        if !self.links.is_empty() {
            write!(f, " links={:?}", self.links)?;
        }
        Ok(())
    }
}

/// A flattened image: files by path (no leading `/`, `""` is never present) and its config.
#[derive(Debug, Clone)]
pub struct ImageTree {
    /// Every path of the final filesystem.
    pub files: BTreeMap<String, Entry>,
    /// The compared config fields (see [`CONFIG_FIELDS`]), as the image's JSON has them.
    pub config: BTreeMap<String, Value>,
    /// The config's `history`, in order.
    pub history: Vec<HistoryEntry>,
}

/// One entry of an image config's `history`; absent fields read as empty.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistoryEntry {
    /// `created` (RFC 3339): compared only for entries a build keeps from its base image.
    pub created: String,
    /// The step's text.
    pub created_by: String,
    /// Who wrote the entry (`buildkit.dockerfile.v0` for BuildKit's Dockerfile frontend).
    pub comment: String,
    /// True when the step made no layer.
    pub empty_layer: bool,
}

impl HistoryEntry {
    /// What the equivalence test compares of an entry a build added: everything but the time.
    pub fn step(&self) -> (&str, &str, bool) {
        (&self.created_by, &self.comment, self.empty_layer)
    }
}

impl fmt::Display for HistoryEntry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?} comment={:?}", self.created_by, self.comment)?;
        if self.empty_layer {
            f.write_str(" empty_layer")?;
        }
        Ok(())
    }
}

/// The entries of `config_doc`'s `history`.
fn read_history(config_doc: &Value) -> Vec<HistoryEntry> {
    let text = |h: &Value, k: &str| h.get(k).and_then(Value::as_str).unwrap_or("").to_string();
    config_doc
        .get("history")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(|h| HistoryEntry {
            created: text(h, "created"),
            created_by: text(h, "created_by"),
            comment: text(h, "comment"),
            empty_layer: h
                .get("empty_layer")
                .and_then(Value::as_bool)
                .unwrap_or(false),
        })
        .collect()
}

/// Lines describing how the history `kiln` holds differs from `reference`'s: `base` (the base
/// image's entries) must begin both or neither, kept whole (times included); after it, each
/// entry's text, comment and `empty_layer` must be the reference's, in order. `rewrites`
/// turns the reference's texts into the ones expected of kiln first (`(reference's, kiln's)`
/// pairs in the order of the entries, each used on the first entry with its text after the
/// previous pair's); one that finds no such entry is reported too, so a stale rewrite is seen.
pub fn history_diff(
    reference: &[HistoryEntry],
    kiln: &[HistoryEntry],
    base: &[HistoryEntry],
    rewrites: &[(String, String)],
    ref_name: &str,
) -> Vec<String> {
    let mut out = Vec::new();
    let n = if !base.is_empty() && reference.starts_with(base) {
        if !kiln.starts_with(base) {
            out.push(format!(
                "~ history: {ref_name} keeps the base image's {} entries first, kiln does not",
                base.len()
            ));
            return out;
        }
        base.len()
    } else {
        0
    };
    let mut want: Vec<HistoryEntry> = reference[n..].to_vec();
    let mut next = 0;
    for (from, to) in rewrites {
        match (next..want.len()).find(|&i| want[i].created_by == *from) {
            Some(i) => {
                next = i + 1;
                want[i].created_by = to.clone();
            }
            None => out.push(format!(
                "~ history: the rewrite of {from:?} finds no such entry in {ref_name}'s history"
            )),
        }
    }
    let got = kiln.get(n..).unwrap_or_default();
    for i in 0..want.len().max(got.len()) {
        match (want.get(i), got.get(i)) {
            (Some(w), Some(g)) if w.step() == g.step() => {}
            (w, g) => {
                let show = |e: Option<&HistoryEntry>| e.map_or("(none)".into(), |e| e.to_string());
                out.push(format!(
                    "~ history entry {}:\n    {ref_name}: {}\n    kiln: {}",
                    n + i,
                    show(w),
                    show(g)
                ));
            }
        }
    }
    out
}

/// The config fields compared, named as in the image config's `config` object.
pub const CONFIG_FIELDS: &[&str] = &[
    "Env",
    "Cmd",
    "Entrypoint",
    "WorkingDir",
    "User",
    "ExposedPorts",
    "Volumes",
    "Labels",
    "StopSignal",
    "Healthcheck",
    "Shell",
    "OnBuild",
];

fn read_json(path: &Path) -> Result<Value, TreeError> {
    let bytes = std::fs::read(path).map_err(io(path))?;
    serde_json::from_slice(&bytes).map_err(|e| bad(format!("{}: {e}", path.display())))
}

/// Where the blobs of an image directory live.
struct Blobs {
    dir: PathBuf,
    /// OCI layouts keep `blobs/sha256/HEX`; `dir:` keeps `HEX`.
    oci: bool,
}

impl Blobs {
    fn path(&self, digest: &str) -> Result<PathBuf, TreeError> {
        let hex = digest
            .strip_prefix("sha256:")
            .ok_or_else(|| bad(format!("unsupported digest {digest}")))?;
        if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(bad(format!("malformed digest {digest}")));
        }
        Ok(if self.oci {
            self.dir.join("blobs/sha256").join(hex)
        } else {
            self.dir.join(hex)
        })
    }

    fn json(&self, digest: &str) -> Result<Value, TreeError> {
        read_json(&self.path(digest)?)
    }
}

/// Reads the image in `dir` (OCI layout or `dir:`) and flattens it.
pub fn read_image(dir: &Path) -> Result<ImageTree, TreeError> {
    let (blobs, manifest) = if dir.join("index.json").exists() {
        let blobs = Blobs {
            dir: dir.to_path_buf(),
            oci: true,
        };
        let mut doc = read_json(&dir.join("index.json"))?;
        // An index (the layout's own, or an image index inside it) leads to one manifest; a
        // build for one platform has exactly one.
        while doc.get("manifests").is_some() {
            let list = doc["manifests"].as_array().cloned().unwrap_or_default();
            if list.len() != 1 {
                return Err(bad(format!(
                    "{}: expected one manifest in the index, found {}",
                    dir.display(),
                    list.len()
                )));
            }
            let d = list[0]["digest"].as_str().unwrap_or_default().to_string();
            doc = blobs.json(&d)?;
        }
        (blobs, doc)
    } else if dir.join("manifest.json").exists() {
        let m = read_json(&dir.join("manifest.json"))?;
        if let Some(list) = m.as_array() {
            return read_docker_archive(dir, list);
        }
        (
            Blobs {
                dir: dir.to_path_buf(),
                oci: false,
            },
            m,
        )
    } else {
        return Err(bad(format!(
            "{}: neither an OCI layout (index.json) nor a dir: image (manifest.json)",
            dir.display()
        )));
    };
    let config_digest = manifest["config"]["digest"]
        .as_str()
        .ok_or_else(|| bad("manifest without config digest"))?;
    let config_doc = blobs.json(config_digest)?;
    let mut layers = Vec::new();
    for layer in manifest["layers"].as_array().into_iter().flatten() {
        let d = layer["digest"]
            .as_str()
            .ok_or_else(|| bad("layer without digest"))?;
        layers.push(blobs.path(d)?);
    }
    flatten(&config_doc, &layers)
}

/// Reads the unpacked `docker save` tarball in `dir` whose `manifest.json` is `list`: one entry
/// naming the config file and the layer tarballs by their paths in the archive.
fn read_docker_archive(dir: &Path, list: &[Value]) -> Result<ImageTree, TreeError> {
    let [entry] = list else {
        return Err(bad(format!(
            "{}: expected one image in the docker archive, found {}",
            dir.display(),
            list.len()
        )));
    };
    let config = entry["Config"]
        .as_str()
        .ok_or_else(|| bad("docker archive manifest without Config"))?;
    let layers = entry["Layers"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|l| {
            l.as_str()
                .map(|l| dir.join(l))
                .ok_or_else(|| bad("docker archive layer is not a path"))
        })
        .collect::<Result<Vec<_>, _>>()?;
    flatten(&read_json(&dir.join(config))?, &layers)
}

/// The tree of an image whose config document is `config_doc` and whose layer blobs are
/// `layers`, lowest first.
fn flatten(config_doc: &Value, layers: &[PathBuf]) -> Result<ImageTree, TreeError> {
    let mut config = BTreeMap::new();
    if let Some(obj) = config_doc.get("config").and_then(Value::as_object) {
        for f in CONFIG_FIELDS {
            if let Some(v) = obj.get(*f) {
                config.insert((*f).to_string(), v.clone());
            }
        }
    }
    let mut fs = Flattener::default();
    for path in layers {
        fs.apply_layer(path)?;
    }
    Ok(ImageTree {
        files: fs.finish(),
        config,
        history: read_history(config_doc),
    })
}

/// Opens a layer blob, undoing gzip or zstd by its magic bytes (the media type is not needed).
fn open_layer(path: &Path) -> Result<Box<dyn Read>, TreeError> {
    let mut f = std::fs::File::open(path).map_err(io(path))?;
    let mut magic = [0u8; 4];
    let n = f.read(&mut magic).map_err(io(path))?;
    let head = std::io::Cursor::new(magic[..n].to_vec());
    let r = BufReader::new(head.chain(f));
    Ok(if n >= 2 && magic[..2] == [0x1f, 0x8b] {
        Box::new(flate2::read::MultiGzDecoder::new(r))
    } else if n == 4 && magic == [0x28, 0xb5, 0x2f, 0xfd] {
        Box::new(zstd::stream::read::Decoder::with_buffer(r).map_err(io(path))?)
    } else {
        Box::new(r)
    })
}

/// Turns `./a/b/`, `/a/b` and `a//b` into `a/b`.
fn clean(p: &str) -> String {
    p.split('/')
        .filter(|c| !c.is_empty() && *c != ".")
        .collect::<Vec<_>>()
        .join("/")
}

fn is_under(path: &str, dir: &str) -> bool {
    dir.is_empty()
        || (path.len() > dir.len() && path.starts_with(dir) && path.as_bytes()[dir.len()] == b'/')
}

enum Pending {
    Whiteout(String),
    Opaque(String),
    Put(String, Entry),
    HardLink(String, String),
}

#[derive(Default)]
struct Flattener {
    files: BTreeMap<String, Entry>,
    next_inode: u64,
}

impl Flattener {
    fn apply_layer(&mut self, path: &Path) -> Result<(), TreeError> {
        let mut ar = tar::Archive::new(open_layer(path)?);
        let mut pending = Vec::new();
        let entries = ar.entries().map_err(io(path))?;
        for e in entries {
            let mut e = e.map_err(io(path))?;
            let raw = e.path().map_err(io(path))?.to_string_lossy().into_owned();
            let name = clean(&raw);
            if name.is_empty() {
                continue;
            }
            let (dir, base) = match name.rsplit_once('/') {
                Some((d, b)) => (d.to_string(), b.to_string()),
                None => (String::new(), name.clone()),
            };
            if base == ".wh..wh..opq" {
                pending.push(Pending::Opaque(dir));
                continue;
            }
            if let Some(hidden) = base.strip_prefix(".wh.") {
                let full = if dir.is_empty() {
                    hidden.to_string()
                } else {
                    format!("{dir}/{hidden}")
                };
                pending.push(Pending::Whiteout(full));
                continue;
            }
            let h = e.header();
            let mode = h.mode().map_err(io(path))? & 0o7777;
            let uid = h.uid().map_err(io(path))?;
            let gid = h.gid().map_err(io(path))?;
            let et = h.entry_type();
            let link = || -> Result<String, TreeError> {
                Ok(e.link_name()
                    .map_err(io(path))?
                    .map(|l| l.to_string_lossy().into_owned())
                    .unwrap_or_default())
            };
            let mut entry = Entry {
                kind: Kind::File,
                mode,
                uid,
                gid,
                size: 0,
                sha256: None,
                target: None,
                links: Vec::new(),
                inode: 0,
            };
            match et {
                tar::EntryType::Directory => entry.kind = Kind::Dir,
                tar::EntryType::Symlink => {
                    entry.kind = Kind::Symlink;
                    entry.target = Some(link()?);
                }
                tar::EntryType::Link => {
                    pending.push(Pending::HardLink(name, clean(&link()?)));
                    continue;
                }
                tar::EntryType::Char | tar::EntryType::Block => {
                    entry.kind = if et == tar::EntryType::Char {
                        Kind::Char
                    } else {
                        Kind::Block
                    };
                    let major = h.device_major().map_err(io(path))?.unwrap_or(0);
                    let minor = h.device_minor().map_err(io(path))?.unwrap_or(0);
                    entry.target = Some(format!("{major}:{minor}"));
                }
                tar::EntryType::Fifo => entry.kind = Kind::Fifo,
                tar::EntryType::Regular | tar::EntryType::Continuous => {
                    let mut hasher = Sha256::new();
                    let size = std::io::copy(&mut e, &mut hasher).map_err(io(path))?;
                    entry.size = size;
                    entry.sha256 = Some(format!("{:x}", hasher.finalize()));
                }
                other => return Err(bad(format!("{name}: unsupported tar entry {other:?}"))),
            }
            pending.push(Pending::Put(name, entry));
        }
        // Whiteouts hide what the layers below hold, wherever they sit in this layer's tar.
        for p in &pending {
            match p {
                Pending::Whiteout(full) => self.remove_tree(full, true),
                Pending::Opaque(dir) => self.remove_tree(dir, false),
                _ => {}
            }
        }
        for p in pending {
            match p {
                Pending::Put(name, mut entry) => {
                    let keep_children = entry.kind == Kind::Dir
                        && self.files.get(&name).is_some_and(|o| o.kind == Kind::Dir);
                    if !keep_children {
                        self.remove_tree(&name, true);
                    }
                    self.next_inode += 1;
                    entry.inode = self.next_inode;
                    self.files.insert(name, entry);
                }
                Pending::HardLink(name, target) => {
                    let Some(t) = self.files.get(&target).cloned() else {
                        return Err(bad(format!(
                            "{name}: hard link to {target}, which no layer so far holds"
                        )));
                    };
                    if t.kind == Kind::Dir {
                        return Err(bad(format!("{name}: hard link to directory {target}")));
                    }
                    self.remove_tree(&name, true);
                    self.files.insert(name, t);
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// Removes everything under `dir`, and `dir` itself when `itself`.
    fn remove_tree(&mut self, dir: &str, itself: bool) {
        if itself {
            self.files.remove(dir);
        }
        let prefix = if dir.is_empty() {
            String::new()
        } else {
            format!("{dir}/")
        };
        let doomed: Vec<String> = self
            .files
            .range(prefix.clone()..)
            .take_while(|(k, _)| k.starts_with(&prefix))
            .map(|(k, _)| k.clone())
            .collect();
        for k in doomed {
            self.files.remove(&k);
        }
    }

    fn finish(mut self) -> BTreeMap<String, Entry> {
        let mut groups: HashMap<u64, BTreeSet<String>> = HashMap::new();
        for (p, e) in &self.files {
            if e.kind != Kind::Dir {
                groups.entry(e.inode).or_default().insert(p.clone());
            }
        }
        for (p, e) in self.files.iter_mut() {
            if let Some(g) = groups.get(&e.inode).filter(|g| g.len() > 1) {
                e.links = g.iter().filter(|o| *o != p).cloned().collect();
            }
        }
        self.files
    }
}

/// Paths a RUN sandbox leaves behind that no Dockerfile asked for. Each is dropped from both
/// images before comparing, and only in the form named here.
pub fn normalise(tree: &mut ImageTree) {
    // buildah (like podman) writes /run/.containerenv into every RUN container to tell programs
    // they run in a container; it lands in the layer when /run exists. Not the Dockerfile's.
    tree.files.remove("run/.containerenv");
    // buildah mounts its subscription secrets on /run/secrets for every RUN and leaves the empty
    // mount point directory behind; an empty /run/secrets (as a RUN --mount=type=secret target
    // default) is likewise only a mount point. A non-empty one is compared.
    let empty = !tree.files.keys().any(|k| is_under(k, "run/secrets"));
    if empty
        && tree
            .files
            .get("run/secrets")
            .is_some_and(|e| e.kind == Kind::Dir)
    {
        tree.files.remove("run/secrets");
    }
    for (k, v) in std::mem::take(&mut tree.config) {
        if let Some(v) = normalise_config_field(&k, v) {
            tree.config.insert(k, v);
        }
    }
}

/// Returns the field as compared, or `None` when it says nothing.
fn normalise_config_field(name: &str, mut v: Value) -> Option<Value> {
    if name == "Labels" {
        if let Some(m) = v.as_object_mut() {
            // buildah stamps its own version on every image it builds; no Dockerfile says it.
            m.remove("io.buildah.version");
        }
    }
    if name == "Healthcheck" {
        if let Some(m) = v.as_object_mut() {
            // A zero interval/timeout/start period/retries means "the default" in Docker's
            // schema: writers differ in whether they spell zeros out.
            m.retain(|_, x| !(x.as_u64() == Some(0) || x.as_i64() == Some(0)));
        }
    }
    // Docker-format configs spell an unset list, map or string as `[]`, `{}` or `""`; OCI
    // writers leave the field out. Both mean "not set" to a runtime.
    let empty = match &v {
        Value::Null => true,
        Value::Array(a) => a.is_empty(),
        Value::Object(o) => o.is_empty(),
        Value::String(s) => s.is_empty(),
        _ => false,
    };
    (!empty).then_some(v)
}

/// Lines describing how `b` differs from `a` (`-` only in a, `+` only in b, `~` changed);
/// empty when they are equal.
pub fn diff(a: &ImageTree, b: &ImageTree, a_name: &str, b_name: &str) -> Vec<String> {
    let mut out = Vec::new();
    let keys: BTreeSet<&String> = a.files.keys().chain(b.files.keys()).collect();
    for k in keys {
        match (a.files.get(k), b.files.get(k)) {
            (Some(x), None) => out.push(format!("- /{k}: {x} (only in {a_name})")),
            (None, Some(y)) => out.push(format!("+ /{k}: {y} (only in {b_name})")),
            (Some(x), Some(y)) if x != y => {
                out.push(format!("~ /{k}:\n    {a_name}: {x}\n    {b_name}: {y}"))
            }
            _ => {}
        }
    }
    for f in CONFIG_FIELDS {
        let (x, y) = (a.config.get(*f), b.config.get(*f));
        if x != y {
            let show = |v: Option<&Value>| v.map_or("(unset)".to_string(), |v| v.to_string());
            out.push(format!(
                "~ config {f}:\n    {a_name}: {}\n    {b_name}: {}",
                show(x),
                show(y)
            ));
        }
    }
    out
}

/// The tree as sorted lines `path type mode uid:gid size sha256 -> target`, for reports.
pub fn listing(tree: &ImageTree) -> String {
    let mut s = String::new();
    for (k, e) in &tree.files {
        s.push_str(&format!("/{k} {e}\n"));
    }
    for (k, v) in &tree.config {
        s.push_str(&format!("config {k} = {v}\n"));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clean_paths() {
        assert_eq!(clean("./a/b/"), "a/b");
        assert_eq!(clean("/a//b"), "a/b");
        assert_eq!(clean("./"), "");
        assert!(is_under("a/b", "a") && !is_under("ab", "a") && !is_under("a", "a"));
    }

    fn entry(created_by: &str, comment: &str, empty_layer: bool) -> HistoryEntry {
        HistoryEntry {
            created: "2024-01-01T00:00:00Z".into(),
            created_by: created_by.into(),
            comment: comment.into(),
            empty_layer,
        }
    }

    #[test]
    fn history_is_compared_after_the_base_entries() {
        let base = vec![entry("COPY dir:x in /", "", false)];
        let bk = |s: &str, e| entry(s, "buildkit.dockerfile.v0", e);
        let reference = [
            base.clone(),
            vec![bk("ENV A=1", true), bk("COPY a /a # buildkit", false)],
        ]
        .concat();
        let mut kiln = reference.clone();
        kiln[1].created = "2030-01-01T00:00:00Z".into();
        assert!(history_diff(&reference, &kiln, &base, &[], "BuildKit").is_empty());

        let mut lost_base = kiln.clone();
        lost_base[0].created = "1999-01-01T00:00:00Z".into();
        let d = history_diff(&reference, &lost_base, &base, &[], "BuildKit");
        assert!(d[0].contains("base image's 1 entries"), "{d:?}");

        let mut flag = kiln.clone();
        flag[2].empty_layer = true;
        let mut text = kiln.clone();
        text[1].created_by = "ENV A=2".into();
        let mut comment = kiln.clone();
        comment[1].comment = String::new();
        for wrong in [flag, text, comment, kiln[..2].to_vec()] {
            let d = history_diff(&reference, &wrong, &base, &[], "BuildKit");
            assert_eq!(d.len(), 1, "{d:?}");
        }

        let rewrite = [("ENV A=1".to_string(), "ENV A=one".to_string())];
        let mut renamed = kiln.clone();
        renamed[1].created_by = "ENV A=one".into();
        assert!(history_diff(&reference, &renamed, &base, &rewrite, "BuildKit").is_empty());
        let d = history_diff(&reference, &kiln, &base, &rewrite, "BuildKit");
        assert_eq!(d.len(), 1, "the rewrite is what kiln must write: {d:?}");
        // Pairs apply in order: one text written twice is rewritten where the pair says.
        let twice = [bk("ENV A=1", true), bk("ENV A=1", true)];
        let second = [("ENV A=1".to_string(), "ENV A=2".to_string())];
        let skip_first = [
            ("ENV A=1".to_string(), "ENV A=1".to_string()),
            ("ENV A=1".to_string(), "ENV A=2".to_string()),
        ];
        let mut got = twice.to_vec();
        got[1].created_by = "ENV A=2".into();
        assert_eq!(
            history_diff(&twice, &got, &base, &second, "BuildKit").len(),
            2
        );
        assert!(history_diff(&twice, &got, &base, &skip_first, "BuildKit").is_empty());
        let stale = [("ENV B=1".to_string(), "ENV B=2".to_string())];
        let d = history_diff(&reference, &kiln, &base, &stale, "BuildKit");
        assert!(d[0].contains("finds no such entry"), "{d:?}");

        // A stage FROM scratch: no base entries in either.
        let scratch = vec![bk("COPY a /a # buildkit", false)];
        assert!(history_diff(&scratch, &scratch, &base, &[], "BuildKit").is_empty());
    }

    #[test]
    fn empty_config_values_say_nothing() {
        assert_eq!(
            normalise_config_field("Volumes", serde_json::json!({})),
            None
        );
        assert_eq!(
            normalise_config_field("Entrypoint", serde_json::json!([])),
            None
        );
        assert_eq!(
            normalise_config_field("Labels", serde_json::json!({"io.buildah.version": "1"})),
            None
        );
        assert_eq!(
            normalise_config_field(
                "Healthcheck",
                serde_json::json!({"Test": ["NONE"], "Retries": 0})
            ),
            Some(serde_json::json!({"Test": ["NONE"]}))
        );
    }
}
