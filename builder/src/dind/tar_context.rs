//! The build context as the tar the daemon's `POST /build` reads: the files `.dockerignore`
//! leaves in (walked by [`crate::context::walk`]), plus the Dockerfile and `.dockerignore`
//! themselves when the ignore rules hide them, listed in the sent `.dockerignore` so the daemon
//! reads them and then drops them, as the docker CLI arranges it.

use super::DindError;
use crate::context::dockerignore::DockerIgnore;
use crate::context::walk::{BuildContext, EntryKind};
use crate::path_io::IoAt;
use bytes::Bytes;
use std::io::Write;
use std::path::{Path, PathBuf};

/// Where the Dockerfile comes from.
#[derive(Debug, Clone)]
pub enum DockerfileSource {
    /// A file, inside the context directory or not.
    Path(PathBuf),
    /// Text read elsewhere (stdin); `name` is shown in messages.
    Text {
        /// The name to show.
        name: PathBuf,
        /// The Dockerfile.
        text: String,
    },
}

/// The context to send: the walked entries and the files kiln adds or replaces.
pub(crate) struct ContextTar {
    ctx: BuildContext,
    /// `(name in the tar, contents)` replacing or adding files.
    extra: Vec<(String, Vec<u8>)>,
    /// The `dockerfile` parameter of `POST /build`.
    pub dockerfile_name: String,
    /// The Dockerfile's text and the name to show.
    pub dockerfile_text: String,
    /// The Dockerfile as the user named it.
    pub dockerfile_display: PathBuf,
}

impl ContextTar {
    /// Walks `context` with the ignore rules for the Dockerfile and decides what to add.
    pub(crate) fn prepare(
        context: &Path,
        dockerfile: &DockerfileSource,
    ) -> Result<Self, DindError> {
        let (text, display, inside) = match dockerfile {
            DockerfileSource::Path(p) => {
                let bytes = std::fs::read(p).at(p)?;
                let text = String::from_utf8_lossy(&bytes).into_owned();
                (text, p.clone(), relative_inside(context, p))
            }
            DockerfileSource::Text { name, text } => (text.clone(), name.clone(), None),
        };
        let ignore = match dockerfile {
            DockerfileSource::Path(p) => DockerIgnore::load_for_dockerfile(context, p)?,
            DockerfileSource::Text { .. } => DockerIgnore::load(context)?,
        };
        let ctx = BuildContext::with_ignore(context, ignore)?;
        let generated = format!(
            ".dockerfile.{}",
            &crate::blob::Digest::of(text.as_bytes()).hex()[..20]
        );
        let dockerfile_name = inside.clone().unwrap_or(generated);
        let df_visible = inside.as_deref().is_some_and(|rel| ctx.is_visible(rel));
        let mut extra = Vec::new();
        let mut hide = Vec::new();
        if !df_visible {
            extra.push((dockerfile_name.clone(), text.as_bytes().to_vec()));
            hide.push(dockerfile_name.clone());
        }
        if ctx.is_visible(".dockerignore") {
            if inside.is_none() {
                let path = context.join(".dockerignore");
                let mut content = std::fs::read(&path).at(&path)?;
                content.extend_from_slice(format!("\n{dockerfile_name}\n").as_bytes());
                extra.push((".dockerignore".to_string(), content));
            }
        } else {
            hide.push(".dockerignore".to_string());
            let mut content = hide.join("\n");
            content.push('\n');
            extra.push((".dockerignore".to_string(), content.into_bytes()));
        }
        Ok(ContextTar {
            ctx,
            extra,
            dockerfile_name,
            dockerfile_text: text,
            dockerfile_display: display,
        })
    }

    /// Number of paths sent (for the log).
    pub(crate) fn len(&self) -> usize {
        self.ctx.entries().len()
            + self
                .extra
                .iter()
                .filter(|(n, _)| !self.ctx.is_visible(n))
                .count()
    }

    /// Writes the tar to `w`.
    pub(crate) fn write<W: Write>(&self, w: W) -> Result<(), DindError> {
        let root = self.ctx.root();
        let mut tar = tar::Builder::new(w);
        tar.follow_symlinks(false);
        let replaced = |name: &str| self.extra.iter().any(|(n, _)| n == name);
        for e in self.ctx.entries() {
            let abs = root.join(&e.path);
            match e.kind {
                // Sockets and FIFOs cannot be copied into an image; the docker CLI skips them too.
                EntryKind::Other => continue,
                EntryKind::File if replaced(&e.path) => continue,
                _ => tar.append_path_with_name(&abs, &e.path).at(&abs)?,
            }
        }
        for (name, content) in &self.extra {
            let mut h = tar::Header::new_gnu();
            h.set_entry_type(tar::EntryType::Regular);
            h.set_size(content.len() as u64);
            h.set_mode(0o644);
            h.set_mtime(0);
            let path = root.join(name);
            tar.append_data(&mut h, name, content.as_slice())
                .at(&path)?;
        }
        tar.into_inner()
            .and_then(|mut w| w.flush())
            .at(root)
            .map_err(Into::into)
    }
}

/// The Dockerfile's path relative to the context, when it lies inside it.
fn relative_inside(context: &Path, dockerfile: &Path) -> Option<String> {
    let ctx = std::fs::canonicalize(context).ok()?;
    let df = std::fs::canonicalize(dockerfile).ok()?;
    let rel = df.strip_prefix(&ctx).ok()?;
    rel.to_str().map(str::to_string)
}

/// A `Write` that hands 64 KiB chunks to an async request body.
pub(crate) struct ChannelWriter {
    buf: Vec<u8>,
    tx: tokio::sync::mpsc::Sender<Result<Bytes, std::io::Error>>,
}

const CHUNK: usize = 64 * 1024;

impl ChannelWriter {
    pub(crate) fn new(tx: tokio::sync::mpsc::Sender<Result<Bytes, std::io::Error>>) -> Self {
        ChannelWriter {
            buf: Vec::with_capacity(CHUNK),
            tx,
        }
    }

    fn send(&mut self) -> std::io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let chunk = Bytes::from(std::mem::replace(&mut self.buf, Vec::with_capacity(CHUNK)));
        self.tx.blocking_send(Ok(chunk)).map_err(|_| {
            std::io::Error::new(std::io::ErrorKind::BrokenPipe, "daemon stopped reading")
        })
    }
}

impl Write for ChannelWriter {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(data);
        if self.buf.len() >= CHUNK {
            self.send()?;
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.send()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(t: &ContextTar) -> Vec<(String, Vec<u8>)> {
        let mut out = Vec::new();
        t.write(&mut out).unwrap();
        let mut a = tar::Archive::new(out.as_slice());
        a.entries()
            .unwrap()
            .map(|e| {
                let mut e = e.unwrap();
                let name = e.path().unwrap().to_string_lossy().into_owned();
                let mut data = Vec::new();
                std::io::Read::read_to_end(&mut e, &mut data).unwrap();
                (name, data)
            })
            .collect()
    }

    #[test]
    fn ignored_files_stay_home_and_the_dockerfile_is_sent_hidden() {
        let dir = tempfile::tempdir().unwrap();
        let c = dir.path();
        std::fs::write(c.join("Dockerfile"), "FROM scratch\n").unwrap();
        std::fs::write(
            c.join(".dockerignore"),
            "secret*\nDockerfile\n.dockerignore\n",
        )
        .unwrap();
        std::fs::write(c.join("secret.txt"), "no").unwrap();
        std::fs::create_dir(c.join("src")).unwrap();
        std::fs::write(c.join("src/a"), "yes").unwrap();
        std::os::unix::fs::symlink("/etc/passwd", c.join("link")).unwrap();
        let t = ContextTar::prepare(c, &DockerfileSource::Path(c.join("Dockerfile"))).unwrap();
        assert_eq!(t.dockerfile_name, "Dockerfile");
        let got = names(&t);
        let paths: Vec<&str> = got.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            paths,
            ["link", "src", "src/a", "Dockerfile", ".dockerignore"]
        );
        assert_eq!(got[4].1, b"Dockerfile\n.dockerignore\n");
        assert_eq!(got[3].1, b"FROM scratch\n");
    }

    #[test]
    fn a_dockerfile_from_elsewhere_gets_a_hidden_name() {
        let dir = tempfile::tempdir().unwrap();
        let c = dir.path();
        std::fs::write(c.join(".dockerignore"), "*.log").unwrap();
        std::fs::write(c.join("x.log"), "").unwrap();
        std::fs::write(c.join("keep"), "").unwrap();
        let t = ContextTar::prepare(
            c,
            &DockerfileSource::Text {
                name: "<stdin>".into(),
                text: "FROM scratch\n".into(),
            },
        )
        .unwrap();
        assert!(t.dockerfile_name.starts_with(".dockerfile."));
        let got = names(&t);
        let paths: Vec<&str> = got.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(paths, ["keep", t.dockerfile_name.as_str(), ".dockerignore"]);
        assert_eq!(
            String::from_utf8_lossy(&got[2].1),
            format!("*.log\n{}\n", t.dockerfile_name)
        );
        assert_eq!(t.len(), 3);
    }
}
