//! The resources the fake serves and how each is named on the wire.

/// A served resource type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) enum Resource {
    Pods,
    Secrets,
    Events,
}

impl Resource {
    /// Every served type.
    pub const ALL: [Self; 3] = [Self::Pods, Self::Secrets, Self::Events];

    pub fn from_plural(s: &str) -> Option<Self> {
        match s {
            "pods" => Some(Self::Pods),
            "secrets" => Some(Self::Secrets),
            "events" => Some(Self::Events),
            _ => None,
        }
    }

    pub fn plural(self) -> &'static str {
        match self {
            Self::Pods => "pods",
            Self::Secrets => "secrets",
            Self::Events => "events",
        }
    }

    pub fn kind(self) -> &'static str {
        match self {
            Self::Pods => "Pod",
            Self::Secrets => "Secret",
            Self::Events => "Event",
        }
    }

    pub fn list_kind(self) -> String {
        format!("{}List", self.kind())
    }
}
