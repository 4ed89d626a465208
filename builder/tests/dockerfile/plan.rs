//! The build plan from Dockerfile text: ARG/ENV scope, the stage graph, `--target`, ONBUILD and
//! the errors a user sees.

use kiln::dockerfile::{self, instructions::Instruction};
use kiln::plan::{
    self, Base, BaseConfig, BaseImages, NoBaseImages, Options, Plan, PlanError, Platform,
};
use std::collections::BTreeMap;
use std::path::Path;

fn opts(args: &[(&str, &str)], target: Option<&str>) -> Options {
    Options {
        build_args: args
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        target: target.map(str::to_string),
        target_platform: Platform::parse("linux/arm64/v8").unwrap(),
        build_platform: Platform::parse("linux/amd64").unwrap(),
    }
}

fn plan_with(text: &str, o: &Options, bases: &dyn BaseImages) -> Result<Plan, String> {
    let file = Path::new("Dockerfile");
    let df = dockerfile::parse(text, file).map_err(|e| e.to_string())?;
    plan::plan(&df, file, o, bases).map_err(|e| e.to_string())
}

fn plan_ok(text: &str, o: &Options) -> Plan {
    plan_with(text, o, &NoBaseImages).unwrap_or_else(|e| panic!("plan failed: {e}\n{text}"))
}

fn plan_err(text: &str, o: &Options) -> String {
    match plan_with(text, o, &NoBaseImages) {
        Ok(p) => panic!("expected an error, got a plan of {} stages", p.stages.len()),
        Err(e) => e,
    }
}

/// Every step of a stage rendered as Dockerfile text.
fn steps(p: &Plan, stage: usize) -> Vec<String> {
    p.stages[stage]
        .steps
        .iter()
        .map(|s| s.instruction.to_string())
        .collect()
}

#[test]
fn global_args_reach_from_and_build_args_override_defaults() {
    let text = "ARG BASE=alpine\nARG TAG=3.19\nFROM ${BASE}:${TAG}\nRUN true\n";
    let p = plan_ok(text, &opts(&[], None));
    assert_eq!(p.stages[0].base, Base::Image("alpine:3.19".into()));
    let p = plan_ok(text, &opts(&[("TAG", "edge")], None));
    assert_eq!(p.stages[0].base, Base::Image("alpine:edge".into()));
}

#[test]
fn stage_args_take_build_arg_then_default_then_global() {
    let text = "\
ARG V=global
FROM scratch
ARG V
ARG W=stage-${V}
WORKDIR /${V}/${W}
";
    let p = plan_ok(text, &opts(&[], None));
    assert_eq!(steps(&p, 0)[2], "WORKDIR /global/stage-global");
    let p = plan_ok(text, &opts(&[("V", "cli")], None));
    assert_eq!(steps(&p, 0)[2], "WORKDIR /cli/stage-cli");
    let p = plan_ok(text, &opts(&[("W", "w")], None));
    assert_eq!(steps(&p, 0)[2], "WORKDIR /global/w");
}

#[test]
fn env_overrides_arg_and_env_values_see_the_env_before_the_instruction() {
    let text = "\
FROM scratch
ARG A=from-arg
ENV A=from-env
WORKDIR /$A
ENV X=1
ENV X=2 Y=$X
LABEL y=$Y
";
    let p = plan_ok(text, &opts(&[("A", "cli")], None));
    let s = steps(&p, 0);
    assert_eq!(s[2], "WORKDIR /from-env");
    assert_eq!(
        s[5], "LABEL y=1",
        "Y must see X's value from before the ENV line"
    );
    let env: BTreeMap<_, _> = p.stages[0].env.iter().cloned().collect();
    assert_eq!(env["X"], "2");
    assert_eq!(env["Y"], "1");
    assert!(!env.contains_key("ARG"), "ARGs never become ENV");
}

#[test]
fn predefined_platform_args() {
    let text = "\
FROM --platform=$BUILDPLATFORM scratch AS build
ARG TARGETARCH
ARG TARGETVARIANT
WORKDIR /out/$TARGETARCH/$TARGETVARIANT
FROM scratch
WORKDIR /x$TARGETARCH
";
    let p = plan_ok(text, &opts(&[], None));
    assert_eq!(
        p.stages[0].platform,
        Some(Platform::parse("linux/amd64").unwrap())
    );
    assert_eq!(steps(&p, 0)[2], "WORKDIR /out/arm64/v8");
    // Without `ARG TARGETARCH` in the stage, the predefined value is not in scope.
    assert_eq!(steps(&p, 1)[0], "WORKDIR /x");
}

#[test]
fn which_instructions_expand() {
    let text = "\
FROM scratch
ARG P=8080 U=app D=/data S=TERM
RUN echo $P
CMD echo $P
EXPOSE $P/tcp
USER $U
VOLUME $D
COPY --chown=$U:$U a-$P /dst-$P/
STOPSIGNAL SIG$S
";
    let p = plan_ok(text, &opts(&[], None));
    let s = steps(&p, 0);
    assert_eq!(s[1], "RUN echo $P", "RUN is left to the shell");
    assert_eq!(s[2], "CMD echo $P", "CMD is left to the shell");
    assert_eq!(s[3], "EXPOSE 8080/tcp");
    assert_eq!(s[4], "USER app");
    assert_eq!(s[5], "VOLUME /data");
    assert_eq!(s[6], "COPY --chown=app:app a-8080 /dst-8080/");
    assert_eq!(s[7], "STOPSIGNAL SIGTERM");
    assert_eq!(
        p.stages[0].steps[1].args,
        [
            ("D".into(), "/data".into()),
            ("P".into(), "8080".into()),
            ("S".into(), "TERM".into()),
            ("U".into(), "app".into())
        ]
    );
}

#[test]
fn stage_graph_target_and_waves() {
    let text = "\
FROM scratch AS deps
RUN true
FROM scratch AS build
COPY --from=deps /a /a
FROM scratch AS lint
RUN --mount=type=bind,from=deps,target=/d true
FROM build AS test
RUN true
FROM scratch
COPY --from=1 /out /out
";
    let p = plan_ok(text, &opts(&[], None));
    assert_eq!(p.target, 4);
    assert_eq!(p.order, [0, 1, 4], "lint and test are not needed");
    assert_eq!(p.waves[&0], 0);
    assert_eq!(p.waves[&1], 1);
    assert_eq!(p.waves[&4], 2);
    assert_eq!(p.stages[3].base, Base::Stage(1));
    assert_eq!(p.stages[2].needs, [0]);

    let p = plan_ok(text, &opts(&[], Some("TEST")));
    assert_eq!(p.target, 3);
    assert_eq!(p.order, [0, 1, 3]);

    let p = plan_ok(text, &opts(&[], Some("lint")));
    assert_eq!(p.order, [0, 2]);
}

#[test]
fn independent_stages_share_a_wave() {
    let text = "\
FROM scratch AS a
FROM scratch AS b
FROM scratch
COPY --from=a /x /x
COPY --from=b /y /y
COPY --from=busybox:1.36 /bin/busybox /bin/
";
    let p = plan_ok(text, &opts(&[], None));
    assert_eq!(p.waves[&0], p.waves[&1]);
    assert_eq!(p.order, [0, 1, 2]);
    assert_eq!(p.stages[2].images, ["busybox:1.36"]);
}

#[test]
fn onbuild_triggers_of_a_base_stage_and_a_base_image_run_after_from() {
    let text = "\
FROM scratch AS base
ONBUILD ENV FROM_TRIGGER=yes
ONBUILD WORKDIR /app
FROM base
RUN true
";
    let p = plan_ok(text, &opts(&[], None));
    let s = &p.stages[1].steps;
    assert_eq!(s.len(), 3);
    assert!(s[0].trigger && s[1].trigger && !s[2].trigger);
    assert_eq!(s[0].instruction.to_string(), "ENV FROM_TRIGGER=yes");
    assert_eq!(s[0].start_line, 4, "triggers are reported at the FROM line");

    struct Node;
    impl BaseImages for Node {
        fn config(&self, reference: &str, platform: &Platform) -> Option<BaseConfig> {
            assert_eq!(platform.to_string(), "linux/arm64/v8");
            (reference == "node:onbuild").then(|| BaseConfig {
                env: vec![("NODE_VERSION".into(), "20".into())],
                onbuild: vec!["COPY package.json /app/".into(), "RUN npm install".into()],
            })
        }
    }
    let p = plan_with(
        "FROM node:onbuild\nLABEL v=$NODE_VERSION\n",
        &opts(&[], None),
        &Node,
    )
    .unwrap();
    let s = steps(&p, 0);
    assert_eq!(
        s,
        ["COPY package.json /app/", "RUN npm install", "LABEL v=20"]
    );
}

#[test]
fn unconsumed_build_args_and_undefined_variables_warn() {
    let p = plan_ok(
        "FROM scratch\nARG USED\nWORKDIR /$NOPE\n",
        &opts(&[("USED", "1"), ("EXTRA", "2"), ("HTTP_PROXY", "p")], None),
    );
    let w: Vec<&str> = p.warnings.iter().map(|w| w.message.as_str()).collect();
    assert!(w.iter().any(|m| m.contains("\"EXTRA\"")), "{w:?}");
    assert!(
        !w.iter()
            .any(|m| m.contains("USED") || m.contains("HTTP_PROXY")),
        "{w:?}"
    );
    assert!(w.iter().any(|m| m.contains("$NOPE")), "{w:?}");
    assert_eq!(p.proxies, [("HTTP_PROXY".to_string(), "p".to_string())]);
}

#[test]
fn errors_name_file_line_and_cause() {
    let o = opts(&[], None);
    assert_eq!(
        plan_err("FROM scratch\nRUN true\n\nRUNN make\n", &o),
        "Dockerfile:4: unknown instruction \"RUNN\" (did you mean \"RUN\"?)"
    );
    assert_eq!(
        plan_err("# nothing but\nRUN true\n", &o),
        "Dockerfile:2: no FROM instruction: a Dockerfile needs at least one stage"
    );
    assert_eq!(
        plan_err("ARG A\nENV B=1\nFROM scratch\n", &o),
        "Dockerfile:2: ENV before the first FROM: only ARG may come before FROM"
    );
    assert_eq!(
        plan_err("FROM scratch\nWORKDIR /$V\nARG V=1\n", &o),
        "Dockerfile:2: $V is used before `ARG V` declares it in this stage"
    );
    assert!(plan_err("ARG V=1\nFROM scratch\nWORKDIR /$V\n", &o)
        .starts_with("Dockerfile:3: $V is declared by an ARG before the first FROM"));
    assert!(plan_err("FROM $IMG\nARG IMG=x\n", &o).starts_with("Dockerfile:1: FROM uses $IMG"));
    assert_eq!(
        plan_err(
            "FROM scratch AS a\nFROM scratch AS b\n",
            &opts(&[], Some("c"))
        ),
        "target stage \"c\" could not be found in Dockerfile (stages: a, b)"
    );
    assert_eq!(
        plan_err(
            "FROM scratch AS a\nCOPY --from=b / /\nFROM scratch AS b\nCOPY --from=a / /\n",
            &o
        ),
        "Dockerfile:2: circular dependency between stages: \"b\" → \"a\" → \"b\""
    );
    assert_eq!(
        plan_err("FROM scratch\nCOPY --from=0 / /\n", &o),
        "Dockerfile:2: circular dependency between stages: #0 → #0"
    );
    assert!(plan_err("FROM scratch\nCOPY --from=7 / /\n", &o)
        .starts_with("Dockerfile:2: --from=7 names no stage"));
    assert!(plan_err("FROM scratch\nCOPY --chmown=1 a b\n", &o)
        .starts_with("Dockerfile:2: unknown flag --chmown for COPY"));
    assert!(plan_err("FROM scratch AS 1st\n", &o)
        .starts_with("Dockerfile:1: invalid name for build stage \"1st\""));
    assert_eq!(
        plan_err("FROM scratch\nWORKDIR ${X:?must be set}\n", &o),
        "Dockerfile:2: WORKDIR: failed to process \"${X:?must be set}\": X: must be set"
    );
}

#[test]
fn expanded_values_are_checked() {
    let o = opts(&[("P", "http")], None);
    assert_eq!(
        plan_err("FROM scratch\nARG P\nEXPOSE $P\n", &o),
        "Dockerfile:3: EXPOSE: invalid port \"http\": expected a number from 0 to 65535, or a range"
    );
    assert_eq!(
        plan_err("FROM scratch\nSTOPSIGNAL SIGNOPE\n", &o),
        "Dockerfile:2: STOPSIGNAL: unknown signal \"SIGNOPE\""
    );
    assert!(plan_err("FROM scratch\nCOPY --chmod=999 a b\n", &o)
        .starts_with("Dockerfile:2: COPY: --chmod=999: "));
    assert!(plan_with(
        "FROM scratch\nARG P=8080\nEXPOSE $P/udp\nSTOPSIGNAL 15\n",
        &opts(&[], None),
        &NoBaseImages
    )
    .is_ok());
}

#[test]
fn an_error_in_a_stage_the_target_does_not_need_does_not_stop_the_build() {
    let text = "FROM scratch AS broken\nWORKDIR ${X:?must be set}\nFROM scratch AS ok\nRUN true\n";
    let p = plan_ok(text, &opts(&[], Some("ok")));
    assert_eq!(p.order, [1]);
    assert!(plan_with(text, &opts(&[], Some("broken")), &NoBaseImages).is_err());
}

#[test]
fn run_keeps_heredocs_and_copy_expands_heredoc_bodies_unless_quoted() {
    let text = "\
FROM scratch
ARG NAME=kiln
COPY <<EOF <<'RAW' /etc/
hello $NAME
EOF
keep $NAME
RAW
RUN <<EOF
echo $NAME
EOF
";
    let p = plan_ok(text, &opts(&[], None));
    let Instruction::Copy(c) = &p.stages[0].steps[1].instruction else {
        panic!("not a COPY")
    };
    let bodies: Vec<String> = c
        .sources
        .iter()
        .map(|s| match s {
            dockerfile::instructions::Source::Heredoc(h) => h.content.clone(),
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(bodies, ["hello kiln\n", "keep $NAME\n"]);
    let Instruction::Run(r) = &p.stages[0].steps[2].instruction else {
        panic!("not a RUN")
    };
    assert_eq!(
        r.command.heredocs[0].content, "echo $NAME\n",
        "the shell expands RUN heredocs"
    );
    assert_eq!(p.stages[0].steps[2].start_line, 8);
    assert_eq!(p.stages[0].steps[2].end_line, 10);
}

#[test]
fn plan_errors_are_typed() {
    let df = dockerfile::parse("FROM scratch\n", Path::new("Dockerfile")).unwrap();
    let e = plan::plan(
        &df,
        Path::new("Dockerfile"),
        &opts(&[], Some("x")),
        &NoBaseImages,
    )
    .unwrap_err();
    assert!(matches!(e, PlanError::UnknownTarget { .. }));
}

/// BuildKit: a stage built FROM another starts with that stage's ARGs in scope (its dispatch
/// state appends the base's build args), so `ARG NAME="$NAME-dev"` extends the parent's value.
#[test]
fn a_stage_built_on_another_inherits_its_args() {
    let text = "\
FROM scratch AS base
ARG NAME=\"base\"
ARG BARE
FROM base AS dev
ARG NAME=\"$NAME-dev\"
WORKDIR /$NAME/$BARE
FROM scratch AS other
ARG NAME=\"$NAME-other\"
";
    let p = plan_ok(text, &opts(&[], None));
    assert_eq!(steps(&p, 1)[0], "ARG NAME=base-dev");
    assert_eq!(steps(&p, 1)[1], "WORKDIR /base-dev/");
    assert_eq!(p.stages[1].args["NAME"], "base-dev");
    assert!(p.stages[1].declared_args.iter().any(|a| a == "BARE"));
    // RUN steps of the child see the inherited value too.
    assert!(p.stages[1].steps[1]
        .args
        .contains(&("NAME".to_string(), "base-dev".to_string())));
    // A stage on scratch starts with none.
    assert_eq!(steps(&p, 2)[0], "ARG NAME=-other");
}

/// BuildKit expands an ARG's name as well as its value: `ARG ${src}=...` declares the name the
/// variable holds.
#[test]
fn an_arg_name_written_with_a_variable_is_expanded() {
    let text = "\
FROM scratch
ENV src=file3
ARG ${src}=context/bar/baz
COPY $file3 /baz
";
    let p = plan_ok(text, &opts(&[], None));
    assert_eq!(steps(&p, 0)[1], "ARG file3=context/bar/baz");
    assert_eq!(steps(&p, 0)[2], "COPY context/bar/baz /baz");
    // A build argument for the expanded name overrides the default.
    let p = plan_ok(text, &opts(&[("file3", "cli")], None));
    assert_eq!(steps(&p, 0)[2], "COPY cli /baz");
    let e = plan_err("FROM scratch\nARG ${nothing}=x\n", &opts(&[], None));
    assert!(
        e.contains("Dockerfile:2") && e.contains("expands to an empty string"),
        "{e}"
    );
}

/// `FROM scratch` has BuildKit's default PATH in scope for expansion.
#[test]
fn scratch_starts_with_the_default_path() {
    let p = plan_ok("FROM scratch\nENV P=$PATH\n", &opts(&[], None));
    assert_eq!(
        steps(&p, 0)[0],
        "ENV P=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
    );
}

/// BuildKit keeps one environment for a stage's steps, which both ENV and an ARG with a value
/// write: an ARG declared after an ENV of its name wins for the steps after it (the image's Env
/// keeps the ENV), an ENV after an ARG wins over it. Checked against docker's BuildKit by the
/// corpus case 58-arg-env-precedence.
#[test]
fn an_arg_after_an_env_of_its_name_wins_for_later_steps() {
    let text = "\
FROM scratch
ARG X=arg
ENV X=env
ARG X=again
ARG Y=arg-y
ENV Y=env-y Z=$X
WORKDIR /$X/$Y/$Z
";
    let p = plan_ok(text, &opts(&[("X", "cli")], None));
    let s = steps(&p, 0);
    assert_eq!(s[4], "ENV Y=env-y Z=cli", "{s:?}");
    assert_eq!(s[5], "WORKDIR /cli/env-y/cli", "{s:?}");
    let last = &p.stages[0].steps[5];
    assert_eq!(last.args_over_env, vec!["X".to_string()]);
    // Between the ENV and the second ARG X, the ENV wins.
    assert!(p.stages[0].steps[1].args_over_env.is_empty());
}
