//! The crate's rooms (its top-level modules) import one another without a cycle: a reader
//! can learn them bottom-up, and a change low down cannot depend on what sits above it.
//! `error` gathers every room's error and so sits on top; what every room needs from the
//! error side (a file's I/O error, the cause chain, the Dockerfile's error) lives in leaves.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Rooms that only wire the others together: the CLI and the crate root.
const ENTRY_POINTS: &[&str] = &["cli", "lib", "main"];

/// `room -> rooms it names as crate::<room>`, from the sources under `src`, tests left out.
fn imports(src: &Path) -> BTreeMap<String, BTreeMap<String, String>> {
    let mut g: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    let mut stack = vec![src.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).unwrap() {
            let path = e.unwrap().path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            if path.extension().is_none_or(|x| x != "rs") {
                continue;
            }
            let rel = path.strip_prefix(src).unwrap();
            let first = rel.components().next().unwrap().as_os_str();
            let room = first.to_str().unwrap().trim_end_matches(".rs").to_string();
            if ENTRY_POINTS.contains(&room.as_str()) {
                continue;
            }
            let text = std::fs::read_to_string(&path).unwrap();
            // A file's unit tests may reach anywhere.
            let text = text.split("#[cfg(test)]").next().unwrap();
            for (n, line) in text.lines().enumerate() {
                if line.trim_start().starts_with("//") {
                    continue;
                }
                for (i, _) in line.match_indices("crate::") {
                    let rest = &line[i + "crate::".len()..];
                    let name: String = rest
                        .chars()
                        .take_while(|c| c.is_ascii_lowercase() || *c == '_')
                        .collect();
                    // `crate::Error`/`crate::Result` (upper case) are the re-exported top.
                    if name.is_empty() || name == room {
                        continue;
                    }
                    g.entry(room.clone())
                        .or_default()
                        .entry(name)
                        .or_insert_with(|| format!("{}:{}", rel.display(), n + 1));
                }
            }
        }
    }
    g
}

/// A cycle through `from`, as `a -> b (where) -> ... -> a`, if there is one.
fn cycle(g: &BTreeMap<String, BTreeMap<String, String>>) -> Option<String> {
    fn visit(
        g: &BTreeMap<String, BTreeMap<String, String>>,
        v: &str,
        path: &mut Vec<(String, String)>,
        done: &mut BTreeSet<String>,
    ) -> Option<String> {
        if let Some(i) = path.iter().position(|(r, _)| r == v) {
            let mut s: Vec<String> = path[i..]
                .iter()
                .map(|(r, at)| format!("{r} ({at})"))
                .collect();
            s.push(v.to_string());
            return Some(s.join(" -> "));
        }
        if !done.insert(v.to_string()) {
            return None;
        }
        for (w, at) in g.get(v).into_iter().flatten() {
            path.push((v.to_string(), at.clone()));
            if let Some(c) = visit(g, w, path, done) {
                return Some(c);
            }
            path.pop();
        }
        None
    }
    let mut done = BTreeSet::new();
    g.keys()
        .find_map(|v| visit(g, v, &mut Vec::new(), &mut done))
}

#[test]
fn no_room_imports_itself_through_another() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let g = imports(&src);
    assert!(
        g.contains_key("executor") && g["executor"].contains_key("image"),
        "{g:?}"
    );
    if let Some(c) = cycle(&g) {
        panic!("the crate's rooms import one another in a cycle: {c}");
    }
}

#[test]
fn a_cycle_is_found_and_named() {
    let mut g: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    let edge = |g: &mut BTreeMap<String, BTreeMap<String, String>>, a: &str, b: &str| {
        g.entry(a.into())
            .or_default()
            .insert(b.into(), format!("{a}.rs:1"));
    };
    edge(&mut g, "image", "layer");
    edge(&mut g, "layer", "blob");
    assert_eq!(cycle(&g), None);
    edge(&mut g, "blob", "image");
    let c = cycle(&g).unwrap();
    assert!(c.contains("blob (blob.rs:1) -> image"), "{c}");
}
