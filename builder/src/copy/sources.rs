//! What the sources of a COPY/ADD name: paths (globs expanded, symlinks at the match
//! followed inside the source tree), URLs, heredocs. Shared by the copy and the digest so both
//! read exactly the same things.

use super::glob::{self, split_wildcards};
use super::{CopyError, CopyRequest};
use crate::context::dockerignore::DockerIgnore;
use crate::fsview::{resolve, Entry, FsView, Kind};
use crate::path_io::IoAt;
use std::path::{Path, PathBuf};

/// One thing to copy.
pub(crate) enum Item {
    /// A file, directory, link or node of the source tree.
    Path {
        /// The source word as written.
        arg: String,
        /// The match's path in the source view, not followed (its name is the copy's name).
        path: PathBuf,
        /// The path with symlinks followed, what is read.
        followed: PathBuf,
        /// The followed entry.
        entry: Entry,
        /// Its name when it lands in a directory.
        name: String,
        /// With `--parents`: the components kept below the destination, and how many leading
        /// components of `path` were the pivot (dropped).
        parents: Option<(Vec<String>, usize)>,
    },
    /// An ADD URL.
    Url {
        /// The URL.
        url: String,
    },
    /// A heredoc's content as a file.
    Heredoc {
        /// File name.
        name: String,
        /// Content.
        content: String,
    },
}

/// Whether `s` is an http(s) URL, which ADD fetches.
pub(crate) fn is_url(s: &str) -> bool {
    let l = s.to_ascii_lowercase();
    l.starts_with("http://") || l.starts_with("https://")
}

fn is_git(s: &str) -> bool {
    s.starts_with("git@") || s.starts_with("git://") || (is_url(s) && s.ends_with(".git"))
}

/// Cleaned components of a source word; `None` when it climbs above its root.
fn components(s: &str) -> Option<Vec<String>> {
    let mut out: Vec<String> = Vec::new();
    for c in s.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                out.pop()?;
            }
            c => out.push(c.to_owned()),
        }
    }
    Some(out)
}

/// `--exclude` patterns as a matcher (`.dockerignore` semantics, parents included).
pub(crate) fn excludes(req: &CopyRequest) -> Result<Option<DockerIgnore>, CopyError> {
    if req.excludes.is_empty() {
        return Ok(None);
    }
    let text = req.excludes.join("\n");
    DockerIgnore::parse(&text, "--exclude")
        .map(Some)
        .map_err(|e| CopyError::BadPattern {
            keyword: req.keyword(),
            pattern: req.excludes.join(" "),
            reason: e.to_string(),
        })
}

fn abs(comps: &[String]) -> PathBuf {
    let mut p = PathBuf::from("/");
    p.extend(comps);
    p
}

/// Expands every source of `req` against `view`.
///
/// # Errors
/// A missing plain path, a context path leaving the context, an invalid glob, URLs where
/// they are not allowed.
pub(crate) fn resolve_all(req: &CopyRequest, view: &dyn FsView) -> Result<Vec<Item>, CopyError> {
    let kw = req.keyword();
    let excl = excludes(req)?;
    let mut items = Vec::new();
    for arg in &req.sources {
        let invalid = |reason: &str| CopyError::Invalid {
            keyword: kw,
            source_arg: arg.clone(),
            reason: reason.to_owned(),
        };
        if is_git(arg) {
            return Err(invalid("git sources are not supported"));
        }
        if is_url(arg) {
            if !req.add {
                return Err(invalid("source can't be a URL for COPY"));
            }
            items.push(Item::Url { url: arg.clone() });
            continue;
        }
        if req.checksum.is_some() {
            return Err(invalid(
                "checksum can't be specified for non-HTTP(S) sources",
            ));
        }
        // `--parents` keeps the path below a `/./` pivot, or below the root.
        let (pivot_word, rest_word) = match arg.find("/./") {
            Some(i) if req.parents => (&arg[..i], &arg[i + 3..]),
            _ => ("", arg.as_str()),
        };
        let full_word = if pivot_word.is_empty() {
            rest_word.to_owned()
        } else {
            format!("{pivot_word}/{rest_word}")
        };
        let outside = || CopyError::OutsideContext {
            keyword: kw,
            source_arg: arg.clone(),
        };
        // A context path is relative to the context root and may not leave it; a stage's or
        // image's path climbs no higher than its root, like any absolute path.
        let clean_word = |w: &str| {
            if req.is_context {
                components(w.trim_start_matches('/')).ok_or_else(outside)
            } else {
                Ok(components(&format!("/{w}")).unwrap_or_default())
            }
        };
        let comps = clean_word(&full_word)?;
        let pivot_len = clean_word(pivot_word)?.len();
        let (lit, pat) = split_wildcards(&comps);
        let not_found = |p: &Path| CopyError::NotFound {
            keyword: kw,
            source_arg: arg.clone(),
            path: p.display().to_string(),
        };
        let mut matches: Vec<Vec<String>> = Vec::new();
        if pat.is_empty() {
            matches.push(lit.clone());
        } else {
            let base = resolve(view, &abs(&lit), true).at(abs(&lit))?;
            match view.lstat(&base).at(&base)? {
                None => return Err(not_found(&abs(&lit))),
                Some(e) if e.kind == Kind::Dir => {
                    let pattern = pat.join("/");
                    glob::matches(&pattern, "").map_err(|_| CopyError::BadPattern {
                        keyword: kw,
                        pattern: arg.clone(),
                        reason: "syntax error in pattern".into(),
                    })?;
                    let mut found = Vec::new();
                    walk_glob(
                        view,
                        &base,
                        &mut Vec::new(),
                        &pattern,
                        pat.len(),
                        &mut found,
                    )?;
                    for rel in found {
                        // A wildcard match is checked against --exclude like any entry below it.
                        if excl.as_ref().is_some_and(|x| x.is_excluded(&rel.join("/"))) {
                            continue;
                        }
                        let mut m = lit.clone();
                        m.extend(rel);
                        matches.push(m);
                    }
                }
                Some(_) => {}
            }
        }
        for m in matches {
            let path = abs(&m);
            let followed = resolve(view, &path, true).at(&path)?;
            let entry = view
                .lstat(&followed)
                .at(&followed)?
                .ok_or_else(|| not_found(&path))?;
            let name = m.last().cloned().unwrap_or_else(|| "/".to_owned());
            let parents = req.parents.then(|| {
                let keep = pivot_len.min(m.len());
                (m[keep..].to_vec(), keep)
            });
            items.push(Item::Path {
                arg: arg.clone(),
                path,
                followed,
                entry,
                name,
                parents,
            });
        }
    }
    for (name, content) in &req.heredocs {
        items.push(Item::Heredoc {
            name: name.clone(),
            content: content.clone(),
        });
    }
    Ok(items)
}

/// `filepath.Walk` below `base` in name order, stopping at depth `depth` (a `*` never
/// crosses `/`, so deeper paths cannot match); a matching directory is not entered.
fn walk_glob(
    view: &dyn FsView,
    dir: &Path,
    rel: &mut Vec<String>,
    pattern: &str,
    depth: usize,
    out: &mut Vec<Vec<String>>,
) -> Result<(), CopyError> {
    for name in view.read_dir(dir).at(dir)? {
        let name = name.to_string_lossy().into_owned();
        rel.push(name.clone());
        let p = dir.join(&name);
        let joined = rel.join("/");
        if glob::matches(pattern, &joined).unwrap_or(false) {
            out.push(rel.clone());
        } else if rel.len() < depth {
            if let Some(e) = view.lstat(&p).at(&p)? {
                if e.kind == Kind::Dir {
                    walk_glob(view, &p, rel, pattern, depth, out)?;
                }
            }
        }
        rel.pop();
    }
    Ok(())
}
