//! `gitlab_runner_errors_total{level}`: warnings and errors logged, counted by a
//! `tracing` layer as gitlab-runner counts them with a logrus hook.

use super::Metrics;
use std::sync::Arc;
use tracing_subscriber::layer::Context;

/// A `tracing` layer feeding [`Metrics`] the warnings and errors logged.
#[derive(Debug, Clone)]
pub struct ErrorCounter(pub Arc<Metrics>);

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for ErrorCounter {
    fn on_event(&self, event: &tracing::Event<'_>, _: Context<'_, S>) {
        self.0.logged(*event.metadata().level());
    }
}
