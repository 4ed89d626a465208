//! Listing the files of a build context that COPY and ADD may read.
//!
//! Docker treats the Dockerfile and `.dockerignore` specially: the frontend always reads them,
//! even when `.dockerignore` excludes them, but an excluded one is invisible to COPY and ADD.
//! [`BuildContext::entries`] and [`BuildContext::is_visible`] give the COPY/ADD view;
//! [`BuildContext::frontend_path`] gives the frontend's, which ignores `.dockerignore`.

use std::cmp::Ordering;
use std::collections::HashSet;
use std::path::{Path, PathBuf};

use super::dockerignore::{clean, DockerIgnore};
use super::ContextError;
use crate::path_io::IoAt;

/// What a context entry is; symlinks are reported as such, never followed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EntryKind {
    /// A directory.
    Dir,
    /// A regular file.
    File,
    /// A symbolic link (its target may be anywhere, or nowhere).
    Symlink,
    /// A socket, FIFO or device node.
    Other,
}

/// One path of the build context visible to COPY and ADD.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ContextEntry {
    /// Slash-separated path relative to the context root, without `./`.
    pub path: String,
    /// What the path is.
    pub kind: EntryKind,
}

/// Orders relative paths component by component, so that a directory comes right before its
/// contents (`a`, `a/b`, `a.txt`): the order of Go's `filepath.Walk`, which Docker sends in.
pub fn compare_paths(a: &str, b: &str) -> Ordering {
    a.split('/').cmp(b.split('/'))
}

/// Lists every path under `root` that `ignore` leaves in the context, sorted by
/// [`compare_paths`].
///
/// Directories are listed, symlinks are listed but not followed, and an excluded directory is
/// only read when an exception might re-include something inside it. A directory that is
/// excluded but holds a re-included path is listed anyway, since the path cannot exist without
/// it.
///
/// # Errors
/// [`ContextError::Io`] when a directory that has to be read cannot be, and
/// [`ContextError::NonUtf8Path`] for a name that is not UTF-8.
pub fn walk(root: &Path, ignore: &DockerIgnore) -> Result<Vec<ContextEntry>, ContextError> {
    let mut entries = Vec::new();
    // An explicit stack rather than recursion, so a very deep tree cannot overflow the stack.
    let mut pending = vec![(root.to_path_buf(), String::new())];
    while let Some((dir, dir_rel)) = pending.pop() {
        for entry in std::fs::read_dir(&dir).at(&dir)? {
            let entry = entry.at(&dir)?;
            let abs = entry.path();
            let name = entry.file_name();
            let Some(name) = name.to_str() else {
                return Err(ContextError::NonUtf8Path { path: abs });
            };
            let rel = if dir_rel.is_empty() {
                name.to_owned()
            } else {
                format!("{dir_rel}/{name}")
            };
            let file_type = entry.file_type().at(&abs)?;
            let kind = if file_type.is_symlink() {
                EntryKind::Symlink
            } else if file_type.is_dir() {
                EntryKind::Dir
            } else if file_type.is_file() {
                EntryKind::File
            } else {
                EntryKind::Other
            };
            let excluded = ignore.is_excluded(&rel);
            if kind == EntryKind::Dir && !(excluded && ignore.can_skip_dir(&rel)) {
                pending.push((abs, rel.clone()));
            }
            if !excluded {
                entries.push(ContextEntry { path: rel, kind });
            }
        }
    }
    add_missing_parents(&mut entries);
    entries.sort_by(|a, b| compare_paths(&a.path, &b.path));
    Ok(entries)
}

fn add_missing_parents(entries: &mut Vec<ContextEntry>) {
    let mut present: HashSet<String> = entries.iter().map(|e| e.path.clone()).collect();
    let mut parents = Vec::new();
    for entry in entries.iter() {
        for (slash, _) in entry.path.match_indices('/') {
            let parent = &entry.path[..slash];
            if present.insert(parent.to_owned()) {
                parents.push(ContextEntry {
                    path: parent.to_owned(),
                    kind: EntryKind::Dir,
                });
            }
        }
    }
    entries.extend(parents);
}

/// A build context directory with its `.dockerignore` applied.
#[derive(Debug, Clone)]
pub struct BuildContext {
    root: PathBuf,
    ignore: DockerIgnore,
    entries: Vec<ContextEntry>,
}

impl BuildContext {
    /// Loads `root/.dockerignore` (if any) and lists the context.
    ///
    /// # Errors
    /// Those of [`DockerIgnore::load`] and [`walk`].
    pub fn open(root: &Path) -> Result<Self, ContextError> {
        let ignore = DockerIgnore::load(root)?;
        Self::with_ignore(root, ignore)
    }

    /// Lists the context with already parsed ignore rules (for example from
    /// `<Dockerfile>.dockerignore`).
    ///
    /// # Errors
    /// Those of [`walk`].
    pub fn with_ignore(root: &Path, ignore: DockerIgnore) -> Result<Self, ContextError> {
        let entries = walk(root, &ignore)?;
        Ok(Self {
            root: root.to_path_buf(),
            ignore,
            entries,
        })
    }

    /// The context directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The ignore rules in force.
    pub fn ignore(&self) -> &DockerIgnore {
        &self.ignore
    }

    /// Every path COPY and ADD may read, sorted by [`compare_paths`]; an ignored Dockerfile or
    /// `.dockerignore` is not among them.
    pub fn entries(&self) -> &[ContextEntry] {
        &self.entries
    }

    /// The paths of [`BuildContext::entries`].
    pub fn paths(&self) -> impl Iterator<Item = &str> {
        self.entries.iter().map(|e| e.path.as_str())
    }

    /// The entry for `rel_path` if COPY and ADD may read it; the path is cleaned first.
    pub fn get(&self, rel_path: &str) -> Option<&ContextEntry> {
        let wanted = clean(rel_path);
        let wanted = wanted.strip_prefix('/').unwrap_or(&wanted);
        self.entries
            .binary_search_by(|e| compare_paths(&e.path, wanted))
            .ok()
            .and_then(|i| self.entries.get(i))
    }

    /// Whether COPY and ADD may read `rel_path`.
    pub fn is_visible(&self, rel_path: &str) -> bool {
        self.get(rel_path).is_some()
    }

    /// Where the frontend reads a build-control file such as the Dockerfile or `.dockerignore`.
    ///
    /// Unlike [`BuildContext::is_visible`] this ignores `.dockerignore` on purpose: Docker
    /// always lets the frontend read the Dockerfile, even one the ignore file excludes, and only
    /// hides it from COPY and ADD.
    pub fn frontend_path(&self, rel_path: &str) -> PathBuf {
        let cleaned = clean(rel_path);
        self.root.join(cleaned.trim_start_matches('/'))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn component_order_puts_directories_before_siblings_with_longer_names() {
        let mut paths = vec!["a.txt", "a/b", "a", "b", "a/b/c", "a-b"];
        paths.sort_by(|a, b| compare_paths(a, b));
        assert_eq!(paths, ["a", "a/b", "a/b/c", "a-b", "a.txt", "b"]);
    }

    #[test]
    fn missing_parents_are_added_once() {
        let mut entries = vec![
            ContextEntry {
                path: "x/y/z".into(),
                kind: EntryKind::File,
            },
            ContextEntry {
                path: "x/y/w".into(),
                kind: EntryKind::File,
            },
        ];
        add_missing_parents(&mut entries);
        let mut paths: Vec<&str> = entries.iter().map(|e| e.path.as_str()).collect();
        paths.sort_by(|a, b| compare_paths(a, b));
        assert_eq!(paths, ["x", "x/y", "x/y/w", "x/y/z"]);
    }
}
