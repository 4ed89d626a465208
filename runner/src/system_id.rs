//! The runner's system id, generated once and kept beside the config file as
//! gitlab-runner keeps `.runner_system_id`, so GitLab sees one machine across restarts.

use std::path::{Path, PathBuf};

/// Errors reading or writing the system id file.
#[derive(Debug, thiserror::Error)]
pub enum SystemIdError {
    /// The file could not be read or written.
    #[error("cannot access system id file {path}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

/// The file holding the id for the config at `config_path`.
pub fn path_for(config_path: &Path) -> PathBuf {
    config_path
        .parent()
        .unwrap_or_else(|| Path::new("."))
        .join(".runner_system_id")
}

/// `r_` and 12 random lowercase letters and digits, as gitlab-runner's random ids.
pub fn generate() -> Result<String, std::io::Error> {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    let mut raw = [0u8; 12];
    use std::io::Read;
    std::fs::File::open("/dev/urandom")?.read_exact(&mut raw)?;
    let tail: String = raw
        .iter()
        .map(|b| ALPHABET[*b as usize % ALPHABET.len()] as char)
        .collect();
    Ok(format!("r_{tail}"))
}

fn valid(id: &str) -> bool {
    id.len() == 14
        && (id.starts_with("r_") || id.starts_with("s_"))
        && id[2..].bytes().all(|b| b.is_ascii_alphanumeric())
}

/// Reads the id beside `config_path`, creating it on first use.
pub fn load_or_create(config_path: &Path) -> Result<String, SystemIdError> {
    let path = path_for(config_path);
    let io = |source| SystemIdError::Io {
        path: path.clone(),
        source,
    };
    match std::fs::read_to_string(&path) {
        Ok(s) if valid(s.trim()) => return Ok(s.trim().to_owned()),
        Ok(_) => tracing::warn!(file = %path.display(), "invalid system id replaced"),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(io(e)),
    }
    let id = generate().map_err(io)?;
    std::fs::write(&path, format!("{id}\n")).map_err(io)?;
    Ok(id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_once_and_kept() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = dir.path().join("config.toml");
        let a = load_or_create(&cfg).unwrap();
        assert!(valid(&a), "{a}");
        assert_eq!(load_or_create(&cfg).unwrap(), a);
        assert!(dir.path().join(".runner_system_id").exists());
        std::fs::write(path_for(&cfg), "garbage").unwrap();
        let b = load_or_create(&cfg).unwrap();
        assert!(valid(&b));
    }
}
