//! Behaviour tests of the whole parser, many ported from BuildKit's parser tests.

use super::*;

fn ok(text: &str) -> Parsed {
    parse(text).unwrap_or_else(|e| panic!("parse failed: {e}\n{text}"))
}

fn dumps(text: &str) -> Vec<String> {
    ok(text).nodes.iter().map(dump).collect()
}

fn lines(p: &Parsed) -> Vec<(usize, usize)> {
    p.nodes.iter().map(|n| (n.start_line, n.end_line)).collect()
}

fn doc(name: &str, content: &str, expand: bool, chomp: bool) -> Heredoc {
    Heredoc {
        name: name.into(),
        content: content.into(),
        expand,
        chomp,
    }
}

#[test]
fn backtick_escape_directive() {
    let p = ok("# escape=`\nFROM image\nRUN dir c:\\ `\n  && echo hi\nCOPY a\\b c\n");
    assert_eq!(p.escape, '`');
    assert_eq!(p.directives.escape, Some('`'));
    assert_eq!(dump(&p.nodes[1]), r#"run "dir c:\\   && echo hi""#);
    assert_eq!(dump(&p.nodes[2]), r#"copy "a\\b" "c""#);
    assert_eq!(lines(&p), vec![(2, 2), (3, 4), (5, 5)]);
}

#[test]
fn directives_are_case_insensitive_and_recorded() {
    let p = ok("# SYNTAX = docker/dockerfile:1.7\n#Check=skip=all\n# Escape=\\\nFROM a\n");
    assert_eq!(
        p.directives.syntax.as_deref(),
        Some("docker/dockerfile:1.7")
    );
    assert_eq!(p.directives.check.as_deref(), Some("skip=all"));
    assert_eq!(p.directives.escape, Some('\\'));
}

#[test]
fn directives_after_an_instruction_or_comment_are_comments() {
    let p = ok("FROM a\n# escape=`\nRUN a \\\n b\n");
    assert_eq!(p.escape, '\\');
    assert_eq!(p.directives, Directives::default());
    assert_eq!(dump(&p.nodes[1]), r#"run "a  b""#);
    let p = ok("# a comment\n# escape=`\nFROM a\n");
    assert_eq!(p.escape, '\\');
    let p = ok("\n# escape=`\nFROM a\n");
    assert_eq!(p.escape, '\\', "a blank line ends the directives");
    let p = ok("# unknown=1\n# escape=`\nFROM a\n");
    assert_eq!(p.escape, '\\', "an unknown directive ends the directives");
}

#[test]
fn bad_directives_are_errors() {
    let e = parse("# escape=`\n# escape=\\\nFROM a\n").unwrap_err();
    assert_eq!(e.line, 2);
    assert_eq!(e.message, "only one escape parser directive can be used");
    let e = parse("# syntax=a\n# SYNTAX=b\nFROM a\n").unwrap_err();
    assert!(e.message.contains("only one syntax"), "{e}");
    let e = parse("# escape=x\nFROM a\n").unwrap_err();
    assert_eq!(e.line, 1);
    assert_eq!(e.message, "invalid escape token 'x' does not match ` or \\");
}

#[test]
fn bom_and_crlf() {
    let p = ok("\u{feff}# escape=`\r\nFROM a\r\nRUN x `\r\n y\r\n");
    assert_eq!(p.escape, '`');
    assert_eq!(
        dumps("\u{feff}FROM a\r\nRUN x \\\r\n y\r\n"),
        vec![r#"from "a""#, r#"run "x  y""#]
    );
}

#[test]
fn heredocs_like_buildkit() {
    // BuildKit's TestParseExtractsHeredoc.
    let text = "\nFROM alpine:3.6\n\nENV NAME=me\n\nRUN ls\n\nUSER <<INVALID\nINVALID\n\n\
RUN <<EMPTY\nEMPTY\n\nRUN 3<<EMPTY2\nEMPTY2\n\nRUN \"<<NOHEREDOC\"\n\n\
RUN <<INDENT\n\tfoo\n\tbar\nINDENT\n\nRUN <<-UNINDENT\n\tbaz\n\tquux\nUNINDENT\n\n\
RUN <<-UNINDENT2\n\tbaz\n\tquux\n\tUNINDENT2\n\nRUN <<-EXPAND\n\texpand $NAME\nEXPAND\n\n\
RUN <<-'NOEXPAND'\n\tdon't expand $NAME\nNOEXPAND\n\nRUN <<COPY\necho hello world\necho foo bar\nCOPY\n\n\
RUN <<COMMENT\n# internal comment\necho hello world\necho foo bar # trailing comment\nCOMMENT\n\n\
RUN --mount=type=cache,target=/foo <<MOUNT\necho hello\nMOUNT\n\n\
COPY <<FILE1 <<FILE2 /dest\ncontent 1\nFILE1\ncontent 2\nFILE2\n\n\
COPY <<X <<Y /dest\nY\nX\nX\nY\n\t";
    let p = ok(text);
    let want: Vec<Vec<Heredoc>> = vec![
        vec![],
        vec![],
        vec![],
        vec![],
        vec![doc("EMPTY", "", true, false)],
        vec![doc("EMPTY2", "", true, false)],
        vec![],
        vec![doc("INDENT", "\tfoo\n\tbar\n", true, false)],
        // kiln strips the tabs of `<<-` bodies in the parser (BuildKit does it later).
        vec![doc("UNINDENT", "baz\nquux\n", true, true)],
        vec![doc("UNINDENT2", "baz\nquux\n", true, true)],
        vec![doc("EXPAND", "expand $NAME\n", true, true)],
        vec![doc("NOEXPAND", "don't expand $NAME\n", false, true)],
        vec![doc("COPY", "echo hello world\necho foo bar\n", true, false)],
        vec![doc(
            "COMMENT",
            "# internal comment\necho hello world\necho foo bar # trailing comment\n",
            true,
            false,
        )],
        vec![doc("MOUNT", "echo hello\n", true, false)],
        vec![
            doc("FILE1", "content 1\n", true, false),
            doc("FILE2", "content 2\n", true, false),
        ],
        vec![doc("X", "Y\n", true, false), doc("Y", "X\n", true, false)],
    ];
    let got: Vec<Vec<Heredoc>> = p.nodes[1..].iter().map(|n| n.heredocs.clone()).collect();
    assert_eq!(got, want);
    // USER <<INVALID is not a heredoc instruction, so its "body" is an instruction.
    assert_eq!(p.nodes[4].keyword, "invalid");
    let copy = &p.nodes[16];
    assert_eq!(dump(copy), r#"copy "<<FILE1" "<<FILE2" "/dest""#);
    assert_eq!((copy.start_line, copy.end_line), (57, 61));
}

#[test]
fn heredoc_quoting_and_double_quotes() {
    let p = ok("FROM a\nRUN <<\"EOF\" cat\n$HOME\nEOF\nRUN <<E\"O\"F\nx\nEOF\n");
    assert_eq!(
        p.nodes[1].heredocs,
        vec![doc("EOF", "$HOME\n", false, false)]
    );
    assert_eq!(p.nodes[2].heredocs, vec![doc("EOF", "x\n", false, false)]);
}

#[test]
fn json_form_has_no_heredocs() {
    let p = ok("FROM alpine:3.6\nRUN [\"whoami\"]\nRUN [\"<<EOF\"]\nRUN [\"<<'EOF'\"]\n");
    assert!(p.nodes.iter().all(|n| n.heredocs.is_empty()));
    assert_eq!(lines(&p), vec![(1, 1), (2, 2), (3, 3), (4, 4)]);
}

#[test]
fn several_heredocs_in_one_run_and_line_numbers() {
    let p = ok("FROM a\nRUN <<A cat - && bash <<-B\nhello\nA\n\techo hi\n\tB\nRUN x\n");
    assert_eq!(
        p.nodes[1].heredocs,
        vec![
            doc("A", "hello\n", true, false),
            doc("B", "echo hi\n", true, true)
        ]
    );
    assert_eq!(lines(&p), vec![(1, 1), (2, 6), (7, 7)]);
    assert_eq!(dump(&p.nodes[1]), r#"run "<<A cat - && bash <<-B""#);
}

#[test]
fn heredoc_after_continuation_and_in_onbuild() {
    let p = ok("FROM a\nRUN \\\n  cat <<EOF\nbody\nEOF\nONBUILD RUN <<X\nhi\nX\n");
    assert_eq!(lines(&p), vec![(1, 1), (2, 5), (6, 8)]);
    assert_eq!(p.nodes[1].heredocs, vec![doc("EOF", "body\n", true, false)]);
    let onbuild = &p.nodes[2];
    assert_eq!(onbuild.heredocs, vec![doc("X", "hi\n", true, false)]);
    let sub = onbuild.sub.as_deref().expect("trigger");
    assert_eq!(sub.heredocs, onbuild.heredocs);
    assert_eq!(dump(onbuild), r#"onbuild (run "<<X")"#);
}

#[test]
fn unterminated_heredoc_names_its_line() {
    let e = parse("FROM a\n\nRUN <<EOF\necho hi\nEOF2\n").unwrap_err();
    assert_eq!(e.line, 3);
    assert!(e.message.contains("unterminated heredoc"), "{e}");
    let e = parse("FROM a\nCOPY <<A <<B /x\na\nA\nb\n").unwrap_err();
    assert_eq!(e.line, 2);
    assert!(e.message.contains("<<B"), "{e}");
    // The terminator must be the whole line; `<<-` only forgives leading tabs.
    assert!(parse("FROM a\nRUN <<EOF\n EOF\n").is_err());
    assert!(parse("FROM a\nRUN <<EOF\n\tEOF\n").is_err());
    assert!(parse("FROM a\nRUN <<-EOF\n\tEOF\n").is_ok());
}

#[test]
fn json_and_invalid_json() {
    let d = dumps(concat!(
        "CMD [\"a\", \"b\"]\n",
        "CMD ['a']\n",
        "CMD [\"a\",]\n",
        "CMD [\"a\"] trailing\n",
        "ENTRYPOINT [ ]\n",
        "SHELL [\"/bin/sh\", \"-c\"]\n",
        "RUN [\"a\" \"b\"]\n",
        "VOLUME [\"/a\", \"/b\"]\n",
        "VOLUME [/a /b\n",
        "COPY [\"a b\", \"c\"]\n",
        "CMD [1e999]\n",
    ));
    assert_eq!(
        d,
        vec![
            r#"cmd "a" "b""#,
            r#"cmd "['a']""#,
            r#"cmd "[\"a\",]""#,
            r#"cmd "[\"a\"] trailing""#,
            "entrypoint",
            r#"shell "/bin/sh" "-c""#,
            r#"run "[\"a\" \"b\"]""#,
            r#"volume "/a" "/b""#,
            r#"volume "[/a" "/b""#,
            r#"copy "a b" "c""#,
            r#"cmd "[1e999]""#,
        ]
    );
    let p = ok("CMD [\"a\"]\nCMD a\n");
    assert!(p.nodes[0].json);
    assert!(!p.nodes[1].json);
    for bad in [
        "CMD [\"a\", 1]",
        "RUN [null]",
        "COPY [\"a\", [\"b\"]]",
        "VOLUME [{}]",
    ] {
        let e = parse(bad).unwrap_err();
        assert!(e.message.contains("strings only"), "{bad}: {e}");
    }
}

#[test]
fn env_label_arg_forms() {
    let d = dumps(concat!(
        "ENV a b c\n",
        "ENV a=b c=\"d e\"\n",
        "ENV a=\n",
        "LABEL \"x y\"=z\n",
        "ARG a b=c\n",
        "ENV\n",
        "ARG\n",
    ));
    assert_eq!(
        d,
        vec![
            r#"env "a" "b c" """#,
            r#"env "a" "b" "=" "c" "\"d e\"" "=""#,
            r#"env "a" "" "=""#,
            r#"label "\"x y\"" "z" "=""#,
            r#"arg "a" "b=c""#,
            "env",
            "arg",
        ]
    );
    let e = parse("FROM a\nENV PATH\n").unwrap_err();
    assert_eq!(
        (e.line, e.message.as_str()),
        (2, "ENV must have two arguments")
    );
    let e = parse("FROM a\nLABEL x\n").unwrap_err();
    assert_eq!(e.message, "LABEL must have two arguments");
    let e = parse("FROM a\nENV a=b c\n").unwrap_err();
    assert_eq!(
        e.message,
        "Syntax error - can't find = in \"c\". Must be of the form: name=value"
    );
}

#[test]
fn flags_and_other_forms() {
    let d = dumps(concat!(
        "FROM --platform=$BUILDPLATFORM golang:1 AS build\n",
        "COPY --from=build --chown=1:1 --link /a /b\n",
        "ADD --checksum=sha256:abc --keep-git-dir=true https://x /y\n",
        "RUN --mount=type=secret,id=a --network=none --security=insecure make\n",
        "COPY --parents --exclude=\"*.md\" a b\n",
        "HEALTHCHECK NONE\n",
        "HEALTHCHECK --interval=5s CMD [\"curl\", \"x\"]\n",
        "STOPSIGNAL SIGKILL\n",
        "WORKDIR /a b\n",
        "EXPOSE 80/tcp  443\n",
        "MAINTAINER me <me@x>\n",
        "ONBUILD\n",
        "ONBUILD ONBUILD RUN x\n",
    ));
    assert_eq!(
        d,
        vec![
            r#"from ["--platform=$BUILDPLATFORM"] "golang:1" "AS" "build""#,
            r#"copy ["--from=build" "--chown=1:1" "--link"] "/a" "/b""#,
            r#"add ["--checksum=sha256:abc" "--keep-git-dir=true"] "https://x" "/y""#,
            r#"run ["--mount=type=secret,id=a" "--network=none" "--security=insecure"] "make""#,
            r#"copy ["--parents" "--exclude=*.md"] "a" "b""#,
            r#"healthcheck "NONE""#,
            r#"healthcheck ["--interval=5s"] "CMD" "curl" "x""#,
            r#"stopsignal "SIGKILL""#,
            r#"workdir "/a b""#,
            r#"expose "80/tcp" "443""#,
            r#"maintainer "me <me@x>""#,
            "onbuild",
            r#"onbuild (onbuild (run "x"))"#,
        ]
    );
    let p = ok("HEALTHCHECK --timeout=1s CMD [\"a\"]\n");
    assert!(p.nodes[0].json);
    assert_eq!(p.nodes[0].args, vec!["CMD", "a"]);
}

#[test]
fn unknown_instructions_are_kept() {
    let p = ok("FROM a\nRUNN echo  hi\n");
    let n = &p.nodes[1];
    assert_eq!(n.keyword, "runn");
    assert_eq!(n.args, vec!["echo", "hi"]);
    assert_eq!(
        dump(n),
        r#"runn """#,
        "BuildKit drops unknown arguments in dumps"
    );
    assert_eq!(suggest(&n.keyword), Some("run"));
    assert!(KNOWN_INSTRUCTIONS.contains(&"healthcheck"));
}

#[test]
fn line_numbers_across_continuations_blank_lines_and_comments() {
    let text =
        "# c1\n\nFROM a\n\n# about run\nRUN a \\\n\n  # inside\n  b \\\n\n  c\n# tail\nCMD x \\";
    let p = ok(text);
    assert_eq!(lines(&p), vec![(3, 3), (6, 11), (13, 13)]);
    assert_eq!(dump(&p.nodes[1]), r#"run "a   b   c""#);
    assert_eq!(dump(&p.nodes[2]), r#"cmd "x""#, "trailing escape at EOF");
    assert_eq!(p.nodes[1].prev_comment, vec!["about run"]);
    assert_eq!(p.nodes[1].original, "RUN a   b   c");
    assert_eq!(p.warnings.len(), 1);
    assert_eq!(p.warnings[0].line, 6);
}

#[test]
fn empty_continuation_warnings_like_buildkit() {
    let text = "\nFROM alpine:3.6\n\nRUN something \\\n\n    following \\\n\n    more\n\n\
RUN another \\\n\n    thing\nRUN non-indented \\\n# this is a comment\n   after-comment\n\n\
RUN indented \\\n    # this is an indented comment\n    comment\n\t";
    let p = ok(text);
    assert_eq!(p.warnings.len(), 2);
    assert!(p.warnings[0]
        .message
        .contains("Empty continuation line found in"));
    assert!(p.warnings[0]
        .message
        .contains("RUN something     following     more"));
    assert!(p.warnings[1].message.contains("RUN another     thing"));
    assert_eq!(dump(&p.nodes[4]), r#"run "indented     comment""#);
}

#[test]
fn empty_files_and_long_lines() {
    assert_eq!(parse("").unwrap_err().message, "file with no instructions");
    let e = parse("# only\n\n   \n").unwrap_err();
    assert_eq!(
        (e.line, e.message.as_str()),
        (3, "file with no instructions")
    );
    let long = format!("FROM a\nLABEL a={}\n", "x".repeat(70_000));
    let e = parse(&long).unwrap_err();
    assert_eq!(e.line, 2);
    assert!(e.message.contains("65535"), "{e}");
}

#[test]
fn dump_all_matches_root_dump() {
    let p = ok("FROM a\nONBUILD RUN [\"x\"]\n");
    assert_eq!(dump_all(&p.nodes), "(from \"a\")\n(onbuild (run \"x\"))\n");
}
