//! Property tests: the parser never panics, and line numbers of what it accepts are sane.

use kiln::dockerfile::parser::{dump, dump_all, parse, Parsed};
use proptest::prelude::*;

/// Pieces that steer random input into the parser's corners.
const FRAGMENTS: &[&str] = &[
    "RUN ",
    "FROM ",
    "COPY ",
    "ADD ",
    "ENV ",
    "LABEL ",
    "ARG ",
    "CMD ",
    "ONBUILD ",
    "HEALTHCHECK ",
    "VOLUME ",
    "run ",
    "\\\n",
    "`\n",
    "\\",
    "\n",
    "\r\n",
    "\n\n",
    " ",
    "\t",
    "<<EOF\n",
    "<<-EOF\n",
    "<<'EOF'\n",
    "<<\"EOF\" ",
    "EOF\n",
    "\tEOF\n",
    "3<<X ",
    "X\n",
    "[\"",
    "\"]",
    "[",
    "]",
    "\", \"",
    "{",
    "1e999",
    "# escape=`\n",
    "# escape=\\\n",
    "# syntax=x\n",
    "# check=skip=all\n",
    "# comment\n",
    "#",
    "--from=",
    "--mount=type=cache ",
    "-- ",
    "--",
    "=",
    "a=b ",
    "'",
    "\"",
    "\u{feff}",
    "한국어",
    "☃",
    "\u{0}",
    "\u{a0}",
    "\u{85}",
    "\u{130}",
    "NONE",
    "CMD",
    "x",
];

fn check_lines(parsed: &Parsed) -> Result<(), TestCaseError> {
    let mut prev_end = 0;
    for node in &parsed.nodes {
        prop_assert!(node.start_line >= 1);
        prop_assert!(node.start_line <= node.end_line, "{node:?}");
        prop_assert!(node.start_line > prev_end, "overlapping nodes: {node:?}");
        prev_end = node.end_line;
        // Dumping must not panic either.
        let _ = dump(node);
    }
    prop_assert!(!parsed.nodes.is_empty());
    let _ = dump_all(&parsed.nodes);
    Ok(())
}

fn check(text: &str) -> Result<(), TestCaseError> {
    match parse(text) {
        Ok(parsed) => check_lines(&parsed),
        Err(e) => {
            prop_assert!(e.line >= 1);
            prop_assert!(!e.message.is_empty());
            Ok(())
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn arbitrary_strings_never_panic(text in any::<String>()) {
        check(&text)?;
    }

    #[test]
    fn dockerfile_fragments_never_panic(
        parts in proptest::collection::vec(proptest::sample::select(FRAGMENTS), 0..40)
    ) {
        check(&parts.concat())?;
    }

    #[test]
    fn fragments_mixed_with_noise_never_panic(
        parts in proptest::collection::vec(
            prop_oneof![
                3 => proptest::sample::select(FRAGMENTS).prop_map(str::to_string),
                1 => "\\PC{0,6}",
            ],
            0..30,
        )
    ) {
        check(&parts.concat())?;
    }
}

#[test]
fn deep_json_nesting_does_not_overflow() {
    let text = format!("CMD {}\n", "[".repeat(30_000));
    let parsed = parse(&text).expect("falls back to shell form");
    assert!(!parsed.nodes[0].json);
}

#[test]
fn deep_variable_nesting_does_not_overflow() {
    for text in [
        format!("FROM a\nRUN <<EOF {}\nEOF\n", "${a:-".repeat(12_000)),
        format!("FROM a\nRUN <<{}\nEOF\n", "${a:-\"".repeat(10_000)),
        format!("FROM a\nCOPY {}<<EOF /x\nEOF\n", "\"${a/".repeat(10_000)),
    ] {
        let _ = parse(&text);
    }
}
