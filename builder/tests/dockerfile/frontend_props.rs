//! Property tests over the whole front end: whatever the text, parsing, typing and planning
//! return a value or an error naming a line inside the file, and never panic.

use kiln::dockerfile;
use kiln::plan::{self, NoBaseImages, Options};
use proptest::prelude::*;
use std::path::Path;

/// Lines that reach the planner's corners: stages, ARG scope, `--from`, ONBUILD, expansion.
const LINES: &[&str] = &[
    "FROM scratch",
    "FROM scratch AS a",
    "FROM a AS b",
    "FROM $BASE",
    "FROM ${BASE:-scratch} AS c",
    "FROM --platform=$BUILDPLATFORM scratch AS d",
    "FROM --platform=bad//x scratch",
    "ARG BASE=scratch",
    "ARG V",
    "ARG V=${V:-x}",
    "ARG TARGETARCH",
    "ENV A=$V B=${A:?unset}",
    "ENV X ${V}y",
    "LABEL k=\"${A#*}\"",
    "WORKDIR /$V/${TARGETARCH}",
    "WORKDIR \"unterminated",
    "COPY --from=a / /",
    "COPY --from=b /x /y",
    "COPY --from=0 / /",
    "COPY --from=9 / /",
    "COPY --from=$V / /",
    "COPY --chown=$V:$V <<EOF /f\nhello $V\nEOF",
    "RUN --mount=type=cache,target=/c,from=a true",
    "RUN --mount=type=bogus true",
    "RUN <<EOF\necho\nEOF",
    "ONBUILD RUN true",
    "ONBUILD ONBUILD RUN x",
    "ONBUILD ENV Q=$V",
    "HEALTHCHECK --interval=5x CMD true",
    "HEALTHCHECK NONE",
    "EXPOSE $V 80/tcp",
    "USER ${V}",
    "SHELL [\"/bin/sh\", \"-c\"]",
    "SHELL /bin/sh",
    "STOPSIGNAL",
    "RUNN x",
    "# comment",
    "",
    "\\",
];

fn check(text: &str, args: &[(String, String)], target: Option<String>) {
    let file = Path::new("Dockerfile");
    let lines = text.lines().count().max(1);
    let df = match dockerfile::parse(text, file) {
        Ok(df) => df,
        Err(e) => {
            assert!(
                e.line >= 1 && e.line <= lines + 1,
                "line {} outside 1..={lines}: {e}",
                e.line
            );
            return;
        }
    };
    let opts = Options {
        build_args: args.iter().cloned().collect(),
        target,
        ..Options::default()
    };
    match plan::plan(&df, file, &opts, &NoBaseImages) {
        Ok(p) => {
            assert_eq!(p.order.last(), Some(&p.target), "the target is built last");
            for (k, &s) in p.order.iter().enumerate() {
                for n in &p.stages[s].needs {
                    assert!(
                        p.order[..k].contains(n),
                        "stage {s} needs {n}, which is not built before it"
                    );
                    assert!(p.waves[n] < p.waves[&s]);
                }
            }
        }
        Err(plan::PlanError::At(e)) => {
            assert!(
                e.line >= 1 && e.line <= lines + 1,
                "line {} outside 1..={lines}: {e}",
                e.line
            )
        }
        Err(_) => {}
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn random_dockerfiles_never_panic(
        picks in prop::collection::vec(0..LINES.len(), 0..14),
        args in prop::collection::vec(("[A-Z]{1,2}", "[a-z$]{0,3}"), 0..3),
        target in prop::option::of(prop::sample::select(vec!["a", "b", "c", "d", "zz"])),
    ) {
        let text: String = picks.iter().map(|&i| format!("{}\n", LINES[i])).collect();
        check(&text, &args, target.map(str::to_string));
    }

    #[test]
    fn arbitrary_text_never_panics(text in any::<String>()) {
        check(&text, &[], None);
    }
}
