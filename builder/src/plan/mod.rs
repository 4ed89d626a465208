//! Instructions → the build plan: stages, their steps, build arguments and the stage graph.

/// The build plan cannot be made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {}
