//! The Dockerfile front end and the build plan: parser, word expansion, instructions, plan.
//! One binary per room: each test binary links the whole library, which costs seconds per
//! binary on two cores.

mod expand_buildkit_peer;
mod frontend_props;
mod parser_buildkit_peer;
mod parser_props;
mod plan;
