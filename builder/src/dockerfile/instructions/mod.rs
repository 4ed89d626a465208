//! Syntax tree → typed instructions with their flags, checked as BuildKit checks them.
//!
//! Words stay unexpanded here: which variables are in scope is only known while planning the
//! stages (see [`crate::plan`]), so expansion happens there.

mod convert;
mod display;
pub mod duration;
pub mod flags;
pub mod mount;

pub use display::json_quote;

pub use convert::from_node;
pub use mount::{Mount, MountType, Sharing};

use crate::dockerfile::parser::Heredoc;
use std::time::Duration;

/// One instruction with where it stands in the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Located {
    /// The typed instruction.
    pub instruction: Instruction,
    /// First line (1-based).
    pub start_line: usize,
    /// Last line (1-based).
    pub end_line: usize,
    /// The instruction as written (continuations joined).
    pub original: String,
}

/// A Dockerfile instruction with its arguments and flags, words not yet expanded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Instruction {
    /// `FROM [--platform=p] image [AS name]`.
    From(From),
    /// `RUN [--mount ...] [--network ...] [--security ...] command`.
    Run(Run),
    /// `CMD command`.
    Cmd(Command),
    /// `ENTRYPOINT command`.
    Entrypoint(Command),
    /// `SHELL ["exe", "arg"]`.
    Shell(Vec<String>),
    /// `ENV k=v ...`; pairs in order, values unexpanded (quotes still in).
    Env(Vec<(String, String)>),
    /// `LABEL k=v ...`; pairs in order, unexpanded.
    Label(Vec<(String, String)>),
    /// `ARG name[=default] ...`.
    Arg(Vec<ArgDecl>),
    /// `COPY` (also `ADD`, with `add` set).
    Copy(Copy),
    /// `MAINTAINER name`.
    Maintainer(String),
    /// `EXPOSE port[/proto] ...`, unexpanded.
    Expose(Vec<String>),
    /// `VOLUME path ...`, unexpanded.
    Volume(Vec<String>),
    /// `USER user[:group]`, unexpanded.
    User(String),
    /// `WORKDIR path`, unexpanded.
    Workdir(String),
    /// `STOPSIGNAL signal`, unexpanded.
    Stopsignal(String),
    /// `HEALTHCHECK ...`.
    Healthcheck(Healthcheck),
    /// `ONBUILD trigger`: the trigger's text, checked to be a valid instruction.
    Onbuild(String),
}

impl Instruction {
    /// The instruction's keyword in upper case, as users write it.
    pub fn keyword(&self) -> &'static str {
        match self {
            Instruction::From(_) => "FROM",
            Instruction::Run(_) => "RUN",
            Instruction::Cmd(_) => "CMD",
            Instruction::Entrypoint(_) => "ENTRYPOINT",
            Instruction::Shell(_) => "SHELL",
            Instruction::Env(_) => "ENV",
            Instruction::Label(_) => "LABEL",
            Instruction::Arg(_) => "ARG",
            Instruction::Copy(c) if c.add => "ADD",
            Instruction::Copy(_) => "COPY",
            Instruction::Maintainer(_) => "MAINTAINER",
            Instruction::Expose(_) => "EXPOSE",
            Instruction::Volume(_) => "VOLUME",
            Instruction::User(_) => "USER",
            Instruction::Workdir(_) => "WORKDIR",
            Instruction::Stopsignal(_) => "STOPSIGNAL",
            Instruction::Healthcheck(_) => "HEALTHCHECK",
            Instruction::Onbuild(_) => "ONBUILD",
        }
    }
}

/// `FROM`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct From {
    /// The base: an image reference, a stage name, or `scratch` (unexpanded).
    pub image: String,
    /// The stage's name from `AS name`, lower-cased.
    pub name: Option<String>,
    /// `--platform` (unexpanded).
    pub platform: Option<String>,
}

/// A command in exec or shell form.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Command {
    /// Exec form: the argv. Shell form: one element, the command line.
    pub args: Vec<String>,
    /// True for the shell form: the stage's SHELL runs `args[0]`.
    pub shell_form: bool,
    /// Heredocs attached to the command (RUN only).
    pub heredocs: Vec<Heredoc>,
}

/// Network mode of a RUN step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Network {
    /// The builder's default (the host's network for kiln).
    Default,
    /// No network at all.
    None,
    /// The host's network.
    Host,
}

/// `RUN`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Run {
    /// What to run.
    pub command: Command,
    /// `--mount` values, in order.
    pub mounts: Vec<Mount>,
    /// `--network`.
    pub network: Network,
    /// `--security=insecure` asks for a privileged step.
    pub insecure: bool,
}

/// One `ARG` declaration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArgDecl {
    /// The variable's name.
    pub name: String,
    /// Its default (unexpanded), when given.
    pub default: Option<String>,
}

/// A source of `COPY`/`ADD`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// A path or glob (in the context or `--from` stage/image), or a URL for ADD; unexpanded.
    Path(String),
    /// A heredoc's content, becoming a file named after the heredoc.
    Heredoc(Heredoc),
}

/// `COPY` and `ADD`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Copy {
    /// True for ADD (archives unpacked, URLs fetched).
    pub add: bool,
    /// What to copy, in order.
    pub sources: Vec<Source>,
    /// Where to (unexpanded).
    pub dest: String,
    /// `--from`: stage name, index, or image (unexpanded).
    pub from: Option<String>,
    /// `--chown` (unexpanded).
    pub chown: Option<String>,
    /// `--chmod` (unexpanded).
    pub chmod: Option<String>,
    /// `--link`.
    pub link: bool,
    /// `--parents` (COPY only).
    pub parents: bool,
    /// `--exclude` patterns.
    pub exclude: Vec<String>,
    /// `--checksum` (ADD only).
    pub checksum: Option<String>,
    /// `--keep-git-dir` (ADD only).
    pub keep_git_dir: bool,
}

/// `HEALTHCHECK`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Healthcheck {
    /// `HEALTHCHECK NONE`: turn off the base image's check.
    None,
    /// `HEALTHCHECK [options] CMD command`.
    Check {
        /// The test command.
        command: Command,
        /// `--interval`.
        interval: Option<Duration>,
        /// `--timeout`.
        timeout: Option<Duration>,
        /// `--start-period`.
        start_period: Option<Duration>,
        /// `--start-interval`.
        start_interval: Option<Duration>,
        /// `--retries`.
        retries: Option<u32>,
    },
}
