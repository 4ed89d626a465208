//! Test support: a `dockerd` of its own (data root, exec root, pidfile and socket in a temp dir,
//! vfs storage, no bridge or iptables), optionally also on TCP with `--tlsverify`; stopped with
//! SIGTERM by its pid so it takes its containerd down and unmounts its root.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const DOCKERD_BIN: &str = "/usr/sbin/dockerd";

/// Whether a daemon can run here (the binary and root). When `KILN_REQUIRE_DOCKERD` is set (CI),
/// a missing daemon fails the test instead.
pub fn available() -> bool {
    let root = Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout == b"0\n");
    if Path::new(DOCKERD_BIN).exists() && root {
        return true;
    }
    assert!(
        std::env::var_os("KILN_REQUIRE_DOCKERD").is_none(),
        "KILN_REQUIRE_DOCKERD is set but dockerd cannot run here (needs {DOCKERD_BIN} and root)"
    );
    eprintln!("dockerd needs {DOCKERD_BIN} and root; not checked");
    false
}

/// TCP listeners with TLS: the daemon's `server/{ca,cert,key}.pem` directory and the addresses.
pub struct TlsListen {
    /// Directory holding `ca.pem`, `cert.pem`, `key.pem` (the `server/` of the dind layout).
    pub server_dir: PathBuf,
    /// `127.0.0.1:PORT` and the like.
    pub addrs: Vec<String>,
}

/// How to start the daemon.
#[derive(Default)]
pub struct DockerdOptions {
    pub tls: Option<TlsListen>,
    /// `--insecure-registry` values (plain-HTTP test registries).
    pub insecure_registries: Vec<String>,
}

pub struct Dockerd {
    child: Child,
    pub dir: tempfile::TempDir,
}

impl Dockerd {
    /// A daemon on a unix socket only.
    pub fn start() -> Dockerd {
        Dockerd::start_with(DockerdOptions::default())
    }

    pub fn start_with(opts: DockerdOptions) -> Dockerd {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let mut cmd = Command::new(DOCKERD_BIN);
        cmd.arg("--data-root")
            .arg(d.join("root"))
            .arg("--exec-root")
            .arg(d.join("exec"))
            .arg("--pidfile")
            .arg(d.join("pid"))
            .arg("-H")
            .arg(format!("unix://{}", d.join("sock").display()))
            .args([
                "--bridge=none",
                "--iptables=false",
                "--ip6tables=false",
                "--storage-driver=vfs",
            ]);
        if let Some(tls) = &opts.tls {
            let s = &tls.server_dir;
            cmd.arg("--tlsverify")
                .arg("--tlscacert")
                .arg(s.join("ca.pem"))
                .arg("--tlscert")
                .arg(s.join("cert.pem"))
                .arg("--tlskey")
                .arg(s.join("key.pem"));
            for a in &tls.addrs {
                cmd.arg("-H").arg(format!("tcp://{a}"));
            }
        }
        for r in &opts.insecure_registries {
            cmd.arg("--insecure-registry").arg(r);
        }
        let child = cmd
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(d.join("log")).unwrap())
            .spawn()
            .unwrap();
        let mut dockerd = Dockerd { child, dir };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(Some(status)) = dockerd.child.try_wait() {
                panic!("dockerd exited: {status}\n{}", dockerd.log());
            }
            if dockerd
                .docker()
                .arg("version")
                .output()
                .is_ok_and(|o| o.status.success())
            {
                return dockerd;
            }
            assert!(Instant::now() < deadline, "dockerd did not start");
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// The unix socket's path.
    pub fn socket(&self) -> PathBuf {
        self.dir.path().join("sock")
    }

    /// The unix socket address (`unix:///...`).
    pub fn unix_host(&self) -> String {
        format!("unix://{}", self.socket().display())
    }

    /// The daemon's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("log")).unwrap_or_default()
    }

    /// The docker CLI on the unix socket, with a config directory of its own.
    pub fn docker(&self) -> Command {
        let mut c = Command::new("docker");
        c.env("DOCKER_HOST", self.unix_host())
            .env("DOCKER_CONFIG", self.dir.path().join("client"))
            .env_remove("DOCKER_TLS_VERIFY")
            .env_remove("DOCKER_CERT_PATH");
        c
    }
}

impl Dockerd {
    /// Lazily unmounts whatever the daemon left mounted under its directory (a daemon killed
    /// before it finished stopping leaves `exec/netns/default` and container mounts), deepest
    /// first, so the directory can be removed.
    fn unmount_leftovers(&self) {
        let Ok(dir) = self.dir.path().canonicalize() else {
            return;
        };
        let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        let mut points: Vec<PathBuf> = mountinfo
            .lines()
            .filter_map(|l| l.split(' ').nth(4))
            .map(PathBuf::from)
            .filter(|p| p.starts_with(&dir))
            .collect();
        points.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
        for p in points {
            let _ = Command::new("umount").arg("-l").arg(&p).status();
        }
    }
}

impl Drop for Dockerd {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                self.unmount_leftovers();
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.unmount_leftovers();
    }
}
