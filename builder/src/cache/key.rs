//! Cache keys: a step's key is a hash over everything that decides what the step produces, chained
//! from its parent's key, so a key names the whole history of the filesystem it makes.
//!
//! Each part goes into the hash as `name`, length and bytes, so no two different inputs can run
//! together into the same byte string. Modification times are never an input: a checkout at another
//! time or on another machine gives the same keys.

use crate::blob::{Digest, DigestWriter};
use crate::dockerfile::instructions::{Instruction, Source};
use crate::dockerfile::parser::Heredoc;
use crate::image::platform_select::normalize;
use crate::plan::{Platform, Step};
use std::fmt;
use std::io::{self, Write};

/// Bumped whenever what a key covers or how a cached step is recorded changes: old entries then
/// simply miss.
pub const FORMAT_VERSION: &str = "kiln-cache-v2";

/// A step's cache key: sha256 over the parent key, the instruction rendered with its words
/// expanded (heredoc bodies included), for RUN the environment and build arguments the step
/// sees, for COPY/ADD the digest of its inputs, the platform, and [`FORMAT_VERSION`].
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CacheKey(pub Digest);

impl CacheKey {
    /// The 64 hex characters: the tag in a cache repository, the file name in a local cache.
    pub fn hex(&self) -> &str {
        self.0.hex()
    }
}

impl fmt::Display for CacheKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

struct KeyHasher(DigestWriter<io::Sink>);

impl KeyHasher {
    fn new(kind: &str) -> Self {
        let mut h = KeyHasher(DigestWriter::new(io::sink()));
        h.part("format", FORMAT_VERSION.as_bytes());
        h.part("kind", kind.as_bytes());
        h
    }

    fn part(&mut self, name: &str, bytes: &[u8]) {
        // Writing to a sink cannot fail.
        let _ = self.0.write_all(name.as_bytes());
        let _ = self.0.write_all(&[0]);
        let _ = self.0.write_all(&(bytes.len() as u64).to_be_bytes());
        let _ = self.0.write_all(bytes);
    }

    fn platform(&mut self, p: &Platform) {
        // `linux/arm64/v8` and `linux/arm64` are one platform and must share keys.
        self.part("platform", normalize(p).to_string().as_bytes());
    }

    fn pairs(&mut self, name: &str, pairs: &[(String, String)]) {
        self.part(name, &(pairs.len() as u64).to_be_bytes());
        for (k, v) in pairs {
            self.part("k", k.as_bytes());
            self.part("v", v.as_bytes());
        }
    }

    fn heredoc(&mut self, h: &Heredoc) {
        self.part("heredoc", h.name.as_bytes());
        self.part("content", h.content.as_bytes());
        self.part("expand", &[u8::from(h.expand)]);
        self.part("chomp", &[u8::from(h.chomp)]);
    }

    fn finish(self) -> CacheKey {
        CacheKey(self.0.finish().0)
    }
}

/// The key a stage's first step chains from: the base image's manifest digest (the manifest of
/// the chosen platform), or `None` for `FROM scratch`.
pub fn base_key(base_manifest_digest: Option<&Digest>, platform: &Platform) -> CacheKey {
    let mut h = KeyHasher::new("base");
    match base_manifest_digest {
        Some(d) => h.part("image", d.to_string().as_bytes()),
        None => h.part("scratch", b""),
    }
    h.platform(platform);
    h.finish()
}

/// The key of `step` after `parent`. `env` is the environment the step runs with (the stage's ENV
/// at that point); it and the step's build arguments count for RUN only, as other steps do not
/// run anything. `inputs` is the digest of what a COPY/ADD copies (computed by the caller from
/// the context, a stage or an image), without modification times.
pub fn step_key(
    parent: &CacheKey,
    step: &Step,
    env: &[(String, String)],
    inputs: Option<&Digest>,
    platform: &Platform,
) -> CacheKey {
    let mut h = KeyHasher::new("step");
    h.part("parent", parent.hex().as_bytes());
    h.part("instruction", step.instruction.to_string().as_bytes());
    // The rendering shows heredocs by name only: their bodies are what they do.
    match &step.instruction {
        Instruction::Run(r) => {
            for hd in &r.command.heredocs {
                h.heredoc(hd);
            }
            h.pairs("env", env);
            h.pairs("args", &step.args);
        }
        Instruction::Copy(c) => {
            for s in &c.sources {
                if let Source::Heredoc(hd) = s {
                    h.heredoc(hd);
                }
            }
        }
        _ => {}
    }
    match inputs {
        Some(d) => h.part("inputs", d.to_string().as_bytes()),
        None => h.part("no-inputs", b""),
    }
    h.platform(platform);
    h.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn steps(text: &str, args: &[(&str, &str)]) -> Vec<Step> {
        crate::plan::test_steps(text, args)
    }

    fn amd64() -> Platform {
        Platform::parse("linux/amd64").unwrap()
    }

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn key(parent: &CacheKey, s: &Step, e: &[(String, String)], i: Option<&Digest>) -> CacheKey {
        step_key(parent, s, e, i, &amd64())
    }

    #[test]
    fn keys_are_pinned_across_machines_and_runs() {
        // Checked against an independent sha256 of the documented encoding. If this changes, old
        // caches silently miss: bump FORMAT_VERSION with it.
        assert_eq!(
            base_key(None, &amd64()).to_string(),
            "sha256:016611ff0cd57e9745fca8656d4e5788c7e9be023f06a433911ffd4e36b2b06e"
        );
    }

    #[test]
    fn the_same_inputs_give_the_same_key() {
        let a = steps("FROM scratch\nARG V=1\nRUN echo $V\n", &[]);
        let b = steps("FROM scratch\nARG V=1\nRUN echo $V\n", &[]);
        let p = base_key(None, &amd64());
        let e = env(&[("PATH", "/bin")]);
        assert_eq!(key(&p, &a[1], &e, None), key(&p, &b[1], &e, None));
    }

    #[test]
    fn every_input_changes_the_key() {
        let p = base_key(None, &amd64());
        let run = &steps("FROM scratch\nARG V=1\nRUN echo $V\n", &[])[1];
        let e = env(&[("PATH", "/bin")]);
        let k = key(&p, run, &e, None);

        // Parent, base image, platform.
        let img = Digest::of(b"base manifest");
        assert_ne!(base_key(Some(&img), &amd64()), p);
        assert_ne!(
            base_key(Some(&img), &amd64()),
            base_key(Some(&Digest::of(b"other")), &amd64())
        );
        let arm = Platform::parse("linux/arm64").unwrap();
        assert_ne!(base_key(None, &arm), p);
        assert_ne!(step_key(&p, run, &e, None, &arm), k);
        assert_ne!(key(&base_key(Some(&img), &amd64()), run, &e, None), k);
        // Equivalent platform spellings share keys.
        let arm_v8 = Platform::parse("linux/arm64/v8").unwrap();
        assert_eq!(base_key(None, &arm_v8), base_key(None, &arm));

        // The instruction text.
        let other = &steps("FROM scratch\nARG V=1\nRUN echo  $V\n", &[])[1];
        assert_ne!(key(&p, other, &e, None), k);
        // Build arguments the RUN sees, and its environment.
        let arg2 = &steps("FROM scratch\nARG V=1\nRUN echo $V\n", &[("V", "2")])[1];
        assert_eq!(arg2.instruction, run.instruction);
        assert_ne!(key(&p, arg2, &e, None), k);
        assert_ne!(key(&p, run, &env(&[("PATH", "/usr/bin")]), None), k);
        assert_ne!(key(&p, run, &env(&[]), None), k);
        // Inputs.
        assert_ne!(key(&p, run, &e, Some(&Digest::of(b"x"))), k);

        // Heredoc bodies, which the rendering leaves out.
        let h1 = &steps("FROM scratch\nRUN <<EOF\necho one\nEOF\n", &[])[0];
        let h2 = &steps("FROM scratch\nRUN <<EOF\necho two\nEOF\n", &[])[0];
        assert_eq!(h1.instruction.to_string(), h2.instruction.to_string());
        assert_ne!(key(&p, h1, &e, None), key(&p, h2, &e, None));
        let c1 = &steps("FROM scratch\nCOPY <<EOF /a\none\nEOF\n", &[])[0];
        let c2 = &steps("FROM scratch\nCOPY <<EOF /a\ntwo\nEOF\n", &[])[0];
        assert_ne!(key(&p, c1, &e, None), key(&p, c2, &e, None));

        // COPY: the inputs digest decides; the environment does not (nothing runs).
        let copy = &steps("FROM scratch\nCOPY a /a\n", &[])[0];
        let d1 = Digest::of(b"content 1");
        let d2 = Digest::of(b"content 2");
        assert_ne!(key(&p, copy, &e, Some(&d1)), key(&p, copy, &e, Some(&d2)));
        assert_ne!(key(&p, copy, &e, Some(&d1)), key(&p, copy, &e, None));
        assert_eq!(
            key(&p, copy, &e, Some(&d1)),
            key(&p, copy, &env(&[("X", "y")]), Some(&d1))
        );
    }

    #[test]
    fn chains_differ_by_order() {
        let s = steps("FROM scratch\nENV A=1\nENV B=2\n", &[]);
        let p = base_key(None, &amd64());
        let ab = key(&key(&p, &s[0], &[], None), &s[1], &[], None);
        let ba = key(&key(&p, &s[1], &[], None), &s[0], &[], None);
        assert_ne!(ab, ba);
    }
}
