//! Steps that change only the image config (ENV, LABEL, CMD, ENTRYPOINT, USER, WORKDIR, EXPOSE,
//! VOLUME, STOPSIGNAL, HEALTHCHECK, SHELL, ONBUILD, MAINTAINER), applied as BuildKit applies them.

use super::history;
use crate::dockerfile::instructions::{Command, Healthcheck as HealthStep, Instruction};
use crate::image::{ContainerConfig, Healthcheck, History};

/// The shell a stage uses for shell-form commands until `SHELL` changes it.
pub const DEFAULT_SHELL: &[&str] = &["/bin/sh", "-c"];

/// A stage's image config while its steps are applied.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StageConfig {
    /// The container config being built.
    pub config: ContainerConfig,
    /// `MAINTAINER`.
    pub author: Option<String>,
    /// Whether this stage set CMD: ENTRYPOINT then keeps it (it drops an inherited one).
    cmd_set: bool,
}

impl StageConfig {
    /// Starts from a base image's config (or the default for scratch).
    pub fn from_base(config: ContainerConfig) -> Self {
        StageConfig {
            config,
            author: None,
            cmd_set: false,
        }
    }

    /// The shell for shell-form commands.
    pub fn shell(&self) -> Vec<String> {
        if self.config.shell.is_empty() {
            DEFAULT_SHELL.iter().map(|s| s.to_string()).collect()
        } else {
            self.config.shell.clone()
        }
    }

    /// The argv a command runs as: exec form as is, shell form through the stage's shell.
    pub fn argv(&self, c: &Command) -> Vec<String> {
        if c.shell_form {
            let mut v = self.shell();
            v.push(c.args.join(" "));
            v
        } else {
            c.args.clone()
        }
    }

    /// The value of an ENV variable in the config.
    pub fn env(&self, name: &str) -> Option<&str> {
        self.config
            .env
            .iter()
            .rev()
            .find_map(|kv| kv.strip_prefix(name)?.strip_prefix('='))
    }

    /// Applies a metadata step (words already expanded) and returns its history entry as
    /// BuildKit writes it; `None` for steps that are not metadata-only (FROM, RUN, COPY, ADD,
    /// ARG) and for ONBUILD, which BuildKit records in the config only.
    pub fn apply(&mut self, ins: &Instruction) -> Option<History> {
        let c = &mut self.config;
        let created_by = match ins {
            Instruction::Env(pairs) => {
                for (k, v) in pairs {
                    let prefix = format!("{k}=");
                    match c.env.iter_mut().find(|kv| kv.starts_with(&prefix)) {
                        Some(slot) => *slot = format!("{k}={v}"),
                        None => c.env.push(format!("{k}={v}")),
                    }
                }
                history::pairs("ENV", pairs)
            }
            Instruction::Label(pairs) => {
                for (k, v) in pairs {
                    c.labels.insert(k.clone(), v.clone());
                }
                history::pairs("LABEL", pairs)
            }
            Instruction::Cmd(cmd) => {
                let argv = self.argv(cmd);
                let text = format!("CMD {}", history::quoted_list(&argv));
                self.config.cmd = Some(argv);
                self.cmd_set = true;
                text
            }
            Instruction::Entrypoint(ep) => {
                let argv = self.argv(ep);
                let text = format!("ENTRYPOINT {}", history::quoted_list(&argv));
                self.config.entrypoint = Some(argv);
                if !self.cmd_set {
                    self.config.cmd = None;
                }
                text
            }
            Instruction::User(u) => {
                c.user = u.clone();
                format!("USER {u}")
            }
            Instruction::Workdir(w) => {
                c.working_dir = join_workdir(&c.working_dir, w);
                format!("WORKDIR {}", c.working_dir)
            }
            Instruction::Expose(ports) => {
                let ports: Vec<String> = ports
                    .iter()
                    .map(|p| {
                        if p.contains('/') {
                            p.to_ascii_lowercase()
                        } else {
                            format!("{p}/tcp")
                        }
                    })
                    .collect();
                for p in &ports {
                    c.exposed_ports.insert(p.clone(), Default::default());
                }
                history::expose(&ports)
            }
            Instruction::Volume(paths) => {
                for p in paths {
                    c.volumes.insert(p.clone(), Default::default());
                }
                format!("VOLUME {}", history::plain_list(paths))
            }
            Instruction::Stopsignal(s) => {
                c.stop_signal = s.clone();
                format!("STOPSIGNAL {s}")
            }
            Instruction::Healthcheck(h) => {
                let check = healthcheck(h);
                let text = history::healthcheck(&check);
                c.healthcheck = Some(check);
                text
            }
            Instruction::Shell(s) => {
                c.shell = s.clone();
                format!("SHELL {}", history::plain_list(s))
            }
            Instruction::Onbuild(t) => {
                c.on_build.push(t.clone());
                return None;
            }
            Instruction::Maintainer(m) => {
                self.author = Some(m.clone());
                format!("MAINTAINER {m}")
            }
            Instruction::From(_)
            | Instruction::Run(_)
            | Instruction::Copy(_)
            | Instruction::Arg(_) => return None,
        };
        Some(history::entry(created_by, true))
    }
}

/// WORKDIR relative to the current one, cleaned like Go's `path.Join`.
pub fn join_workdir(current: &str, next: &str) -> String {
    let joined = if next.starts_with('/') {
        next.to_string()
    } else {
        format!("{}/{next}", if current.is_empty() { "/" } else { current })
    };
    let mut parts: Vec<&str> = Vec::new();
    for part in joined.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            p => parts.push(p),
        }
    }
    format!("/{}", parts.join("/"))
}

fn healthcheck(h: &HealthStep) -> Healthcheck {
    let ns = |d: &Option<std::time::Duration>| {
        d.map_or(0, |d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
    };
    match h {
        HealthStep::None => Healthcheck {
            test: vec!["NONE".into()],
            ..Default::default()
        },
        HealthStep::Check {
            command,
            interval,
            timeout,
            start_period,
            start_interval,
            retries,
        } => {
            let test = if command.shell_form {
                vec!["CMD-SHELL".to_string(), command.args.join(" ")]
            } else {
                std::iter::once("CMD".to_string())
                    .chain(command.args.iter().cloned())
                    .collect()
            };
            Healthcheck {
                test,
                interval: ns(interval),
                timeout: ns(timeout),
                start_period: ns(start_period),
                start_interval: ns(start_interval),
                retries: retries.map_or(0, i64::from),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dockerfile;
    use crate::plan::{self, NoBaseImages, Options};
    use std::path::Path;

    /// Applies every step of the last stage of `text` to a scratch config.
    fn config_of(text: &str) -> StageConfig {
        let mut s = StageConfig::default();
        for step in plan::test_steps(text, &[]) {
            s.apply(&step.instruction);
        }
        s
    }

    #[test]
    fn env_labels_ports_volumes() {
        let s = config_of(
            "FROM scratch\nENV A=1 B=\"two words\"\nENV A=3\nLABEL x=y \"a b\"=c\nEXPOSE 80 53/UDP 8000-8001\nVOLUME [\"/data\", \"/logs\"]\n",
        );
        assert_eq!(s.config.env, ["A=3", "B=two words"]);
        assert_eq!(s.env("B"), Some("two words"));
        assert_eq!(s.config.labels.get("a b").map(String::as_str), Some("c"));
        let ports: Vec<&str> = s.config.exposed_ports.keys().map(String::as_str).collect();
        assert_eq!(ports, ["53/udp", "80/tcp", "8000-8001/tcp"]);
        let vols: Vec<&str> = s.config.volumes.keys().map(String::as_str).collect();
        assert_eq!(vols, ["/data", "/logs"]);
    }

    #[test]
    fn cmd_entrypoint_and_shell() {
        let s = config_of("FROM scratch\nSHELL [\"/bin/bash\", \"-ec\"]\nCMD echo $HOME\nENTRYPOINT [\"/init\"]\n");
        assert_eq!(
            s.config.cmd,
            Some(vec!["/bin/bash".into(), "-ec".into(), "echo $HOME".into()])
        );
        assert_eq!(s.config.entrypoint, Some(vec!["/init".into()]));
        assert_eq!(s.config.shell, ["/bin/bash", "-ec"]);

        // An ENTRYPOINT drops a CMD inherited from the base, but not one set in the stage.
        let mut inherited = StageConfig::from_base(ContainerConfig {
            cmd: Some(vec!["sh".into()]),
            ..Default::default()
        });
        let df = dockerfile::parse("FROM scratch\nENTRYPOINT top -b\n", Path::new("D")).unwrap();
        let p = plan::plan(&df, Path::new("D"), &Options::default(), &NoBaseImages).unwrap();
        inherited.apply(&p.stages[0].steps[0].instruction);
        assert_eq!(inherited.config.cmd, None);
        assert_eq!(
            inherited.config.entrypoint,
            Some(vec!["/bin/sh".into(), "-c".into(), "top -b".into()])
        );
    }

    #[test]
    fn workdir_user_signal_healthcheck_onbuild() {
        let s = config_of(
            "FROM scratch\nWORKDIR /app\nWORKDIR src/../lib\nUSER 1000:1000\nSTOPSIGNAL SIGINT\nHEALTHCHECK --interval=5s --retries=3 CMD curl -f localhost\nONBUILD RUN make\nMAINTAINER kiln\n",
        );
        assert_eq!(s.config.working_dir, "/app/lib");
        assert_eq!(s.config.user, "1000:1000");
        assert_eq!(s.config.stop_signal, "SIGINT");
        let h = s.config.healthcheck.clone().unwrap();
        assert_eq!(h.test, ["CMD-SHELL", "curl -f localhost"]);
        assert_eq!((h.interval, h.retries, h.timeout), (5_000_000_000, 3, 0));
        assert_eq!(s.config.on_build, ["RUN make"]);
        assert_eq!(s.author.as_deref(), Some("kiln"));
        let none = config_of("FROM scratch\nHEALTHCHECK NONE\n");
        assert_eq!(none.config.healthcheck.unwrap().test, ["NONE"]);
    }

    #[test]
    fn workdir_joins_like_go() {
        assert_eq!(join_workdir("", "app"), "/app");
        assert_eq!(join_workdir("/a/b", "../c/./d/"), "/a/c/d");
        assert_eq!(join_workdir("/a", "/x/.."), "/");
    }

    #[test]
    fn history_marks_metadata_steps_empty() {
        let mut s = StageConfig::default();
        let h = s.apply(&Instruction::User("app".into())).unwrap();
        assert!(h.empty_layer);
        assert_eq!(h.created_by.as_deref(), Some("USER app"));
        assert_eq!(h.comment.as_deref(), Some("buildkit.dockerfile.v0"));
        assert!(s.apply(&Instruction::Arg(vec![])).is_none());
        assert!(s.apply(&Instruction::Onbuild("RUN make".into())).is_none());
        assert_eq!(
            s.config.on_build,
            ["RUN make"],
            "ONBUILD is applied all the same"
        );
    }

    /// Every metadata step's `created_by` as docker's BuildKit wrote it for the same lines.
    #[test]
    fn history_texts_are_buildkits() {
        let text = "FROM scratch\nENV E1=e1 E2=\"with space\"\nLABEL l1=v1 \"l 2\"=\"v 2\"\n\
                    WORKDIR /work/dir\nWORKDIR sub\nUSER nobody:65534\n\
                    EXPOSE 80 443/udp 8080/TCP\nVOLUME /data /v2\nVOLUME [\"/v3\"]\n\
                    STOPSIGNAL SIGTERM\nSHELL [\"/bin/sh\", \"-ec\"]\nCMD echo \"q\" tab\tend\n\
                    ENTRYPOINT [\"/bin/sh\", \"-c\", \"x\"]\n\
                    HEALTHCHECK --interval=30s --timeout=1m30s --retries=3 CMD curl -f http://x/ || exit 1\n\
                    HEALTHCHECK NONE\nMAINTAINER someone <a@b>\nONBUILD RUN echo onbuild\n";
        let mut s = StageConfig::default();
        let got: Vec<String> = plan::test_steps(text, &[])
            .iter()
            .filter_map(|step| s.apply(&step.instruction))
            .map(|h| h.created_by.unwrap())
            .collect();
        let want = [
            "ENV E1=e1 E2=with space",
            "LABEL l1=v1 l 2=v 2",
            "WORKDIR /work/dir",
            "WORKDIR /work/dir/sub",
            "USER nobody:65534",
            "EXPOSE map[443/udp:{} 80/tcp:{} 8080/tcp:{}]",
            "VOLUME [/data /v2]",
            "VOLUME [/v3]",
            "STOPSIGNAL SIGTERM",
            "SHELL [/bin/sh -ec]",
            r#"CMD ["/bin/sh" "-ec" "echo \"q\" tab\tend"]"#,
            r#"ENTRYPOINT ["/bin/sh" "-c" "x"]"#,
            r#"HEALTHCHECK &{["CMD-SHELL" "curl -f http://x/ || exit 1"] "30s" "1m30s" "0s" "0s" '\x03'}"#,
            r#"HEALTHCHECK &{["NONE"] "0s" "0s" "0s" "0s" '\x00'}"#,
            "MAINTAINER someone <a@b>",
        ];
        assert_eq!(got, want);
    }
}
