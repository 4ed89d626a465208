//! Instructions → the build plan: stages, their steps with words expanded, build arguments in
//! scope, and the graph of stages the target needs.

pub mod args;
pub mod display;
pub mod expand_step;
mod graph;
mod validate;
mod walk;

/// Platforms are the image's notion; the planner picks one per stage.
pub use crate::image::Platform;
pub use walk::plan;

use crate::dockerfile::instructions::Instruction;
use crate::dockerfile::DockerfileError;
use std::collections::BTreeMap;

/// What the plan needs to know besides the Dockerfile.
#[derive(Debug, Clone)]
pub struct Options {
    /// `--build-arg NAME=value` pairs.
    pub build_args: BTreeMap<String, String>,
    /// `--target`: the stage to build (the last one when absent).
    pub target: Option<String>,
    /// The platform built for (TARGETPLATFORM).
    pub target_platform: Platform,
    /// The platform building (BUILDPLATFORM).
    pub build_platform: Platform,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            build_args: BTreeMap::new(),
            target: None,
            target_platform: Platform::host(),
            build_platform: Platform::host(),
        }
    }
}

/// What a base image's configuration tells the plan.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BaseConfig {
    /// The image's ENV, in order.
    pub env: Vec<(String, String)>,
    /// The image's ONBUILD triggers, run right after FROM.
    pub onbuild: Vec<String>,
}

impl BaseConfig {
    /// What `FROM scratch` starts with: BuildKit's default PATH, no triggers.
    pub fn scratch() -> Self {
        BaseConfig {
            env: vec![("PATH".into(), crate::image::config::DEFAULT_PATH.into())],
            onbuild: Vec::new(),
        }
    }
}

/// Looks up base images' configurations (from a registry, a cache, or nowhere for a dry run).
pub trait BaseImages {
    /// The configuration of `reference` for `platform`, `None` when it is not known.
    fn config(&self, reference: &str, platform: &Platform) -> Option<BaseConfig>;
}

/// Knows no base image: plans without their ENV and ONBUILD triggers.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoBaseImages;

impl BaseImages for NoBaseImages {
    fn config(&self, _: &str, _: &Platform) -> Option<BaseConfig> {
        None
    }
}

/// What a stage starts from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Base {
    /// `FROM scratch`: an empty filesystem.
    Scratch,
    /// An image from a registry (reference expanded).
    Image(String),
    /// An earlier stage, by index.
    Stage(usize),
}

/// One step of a stage: an instruction with its words expanded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    /// The instruction, words expanded.
    pub instruction: Instruction,
    /// First line in the Dockerfile (the FROM line for ONBUILD triggers).
    pub start_line: usize,
    /// Last line.
    pub end_line: usize,
    /// True when the step is an ONBUILD trigger of the base.
    pub trigger: bool,
    /// Build arguments in scope (they reach RUN steps' environment, not the image).
    pub args: Vec<(String, String)>,
    /// Names of [`Step::args`] whose ARG came after the last ENV of that name (or the base's
    /// Env): BuildKit keeps one environment for the steps, where an ARG with a value overwrites
    /// what an earlier ENV set, so these win over the image's ENV in a RUN's environment (the
    /// image config keeps the ENV).
    pub args_over_env: Vec<String>,
    /// Names of the ARGs in scope, with or without a value, in the order they were first
    /// declared (a base stage's first): the order BuildKit lists them in a RUN's history.
    pub declared_args: Vec<String>,
}

/// A stage of a multi-stage build.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stage {
    /// Position in the Dockerfile (0-based), as `COPY --from=N` counts.
    pub index: usize,
    /// `AS name`, lower-cased.
    pub name: Option<String>,
    /// What it starts from.
    pub base: Base,
    /// `FROM --platform`, expanded.
    pub platform: Option<Platform>,
    /// Line of its FROM.
    pub line: usize,
    /// Its steps in order.
    pub steps: Vec<Step>,
    /// Stages it needs (base, `COPY --from`, `RUN --mount from=`), by index.
    pub needs: Vec<usize>,
    /// Images it copies or mounts from (`COPY --from=image`).
    pub images: Vec<String>,
    /// The ENV at the end of the stage (what is known of it).
    pub env: Vec<(String, String)>,
    /// ONBUILD triggers the stage declares (passed to stages built on it).
    pub onbuild: Vec<String>,
    /// The ARG values in scope at the end of the stage (stages built on it start with them).
    pub args: BTreeMap<String, String>,
    /// The ARG names declared by the end of the stage, with or without a value, in the order
    /// of their first declaration.
    pub declared_args: Vec<String>,
}

impl Stage {
    /// How users refer to the stage: its name, or its index.
    pub fn label(&self) -> String {
        match &self.name {
            Some(n) => format!("{n:?}"),
            None => format!("#{}", self.index),
        }
    }
}

/// A non-fatal finding while planning.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Warning {
    /// Line it is about, when it is about one.
    pub line: Option<usize>,
    /// What to look at.
    pub message: String,
}

/// The whole build as data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// Every stage of the Dockerfile, in file order.
    pub stages: Vec<Stage>,
    /// The stages the target needs, dependencies first (the target last).
    pub order: Vec<usize>,
    /// For each stage in `order`, its wave: stages of one wave do not depend on each other and
    /// can run at the same time.
    pub waves: BTreeMap<usize, usize>,
    /// The target stage's index.
    pub target: usize,
    /// Proxy build arguments, given to every RUN step.
    pub proxies: Vec<(String, String)>,
    /// Warnings to print.
    pub warnings: Vec<Warning>,
}

/// The build plan cannot be made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    /// A problem at a line of the Dockerfile.
    #[error(transparent)]
    At(#[from] DockerfileError),
    /// `--target` names no stage.
    #[error("target stage {target:?} could not be found in {file} (stages: {stages})")]
    UnknownTarget {
        /// The name given.
        target: String,
        /// The Dockerfile.
        file: String,
        /// The names there are.
        stages: String,
    },
    /// A build argument given on the command line is malformed.
    #[error("invalid build argument {0:?}: expected NAME=value")]
    BadBuildArg(String),
}

/// The steps of `text`'s target stage planned for linux/amd64 with the build arguments `args`
/// and no base image known, for the unit tests that need planned steps.
#[cfg(test)]
pub(crate) fn test_steps(text: &str, args: &[(&str, &str)]) -> Vec<Step> {
    let df = crate::dockerfile::parse(text, std::path::Path::new("Dockerfile")).unwrap();
    let amd64 = Platform::parse("linux/amd64").unwrap();
    let opts = Options {
        build_args: args
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        target_platform: amd64.clone(),
        build_platform: amd64,
        ..Options::default()
    };
    let p = plan(
        &df,
        std::path::Path::new("Dockerfile"),
        &opts,
        &NoBaseImages,
    )
    .unwrap();
    p.stages[p.target].steps.clone()
}
