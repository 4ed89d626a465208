//! Running a planned stage: metadata steps change the image config, COPY/ADD and RUN make layers.

pub mod history;
pub mod metadata;
