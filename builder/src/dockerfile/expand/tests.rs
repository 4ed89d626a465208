use std::collections::BTreeMap;

use super::*;

fn env(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn set(names: &[&str]) -> BTreeSet<String> {
    names.iter().map(|n| n.to_string()).collect()
}

fn word(input: &str, e: &BTreeMap<String, String>) -> String {
    Lexer::new('\\')
        .process_word(input, e)
        .unwrap_or_else(|err| panic!("{input:?}: {err}"))
}

fn error(input: &str, e: &BTreeMap<String, String>) -> String {
    match Lexer::new('\\').process_word(input, e) {
        Ok(w) => panic!("{input:?} should fail, gave {w:?}"),
        Err(err) => err.message,
    }
}

#[test]
fn backtick_escape() {
    let e = env(&[("PWD", "/home")]);
    let lexer = Lexer::new('`');
    let w = |s: &str| lexer.process_word(s, &e).unwrap();
    assert_eq!(w("he`$PWD"), "he$PWD");
    assert_eq!(w("C:\\dir\\$PWD"), "C:\\dir\\/home");
    assert_eq!(w("\"a`\"b\""), "a\"b");
    assert_eq!(w("\"a``b\""), "a`b");
    assert_eq!(w("\"a`xb\""), "a`xb");
    assert_eq!(w("a` b"), "a b");
    assert_eq!(lexer.process_words("a` b c", &e).unwrap(), ["a b", "c"]);
    assert_eq!(w("end`"), "end");
}

#[test]
fn matches_record_reads() {
    let e = env(&[("FOO", "xxx"), ("BAR", "")]);
    let lexer = Lexer::new('\\');
    let cases: &[(&str, &str, &[&str], &[&str])] = &[
        ("x", "x", &[], &[]),
        ("x ${UNUSED}", "x ", &[], &["UNUSED"]),
        (
            "${FOO-aaa} ${BAR-bbb} ${BAZ-ccc}",
            "xxx  ccc",
            &["FOO", "BAR"],
            &["BAZ"],
        ),
        (
            "${FOO:-aaa} ${BAR:-bbb} ${BAZ:-ccc}",
            "xxx bbb ccc",
            &["FOO", "BAR"],
            &["BAZ"],
        ),
        (
            "${FOO+aaa} ${BAR+bbb} ${BAZ+ccc}",
            "aaa bbb ",
            &["FOO", "BAR"],
            &["BAZ"],
        ),
        (
            "${FOO:+aaa} ${BAR:+bbb} ${BAZ:+ccc}",
            "aaa  ",
            &["FOO", "BAR"],
            &["BAZ"],
        ),
        ("${BAR?bbb}", "", &["BAR"], &[]),
        ("${NO:-$FOO}", "xxx", &["FOO"], &["NO"]),
        ("$FOO$FOO $1", "xxxxxx ", &["FOO"], &["1"]),
        ("'$FOO' \\$BAR", "$FOO $BAR", &[], &[]),
    ];
    for (input, expected, matched, unmatched) in cases {
        let (w, m) = lexer.process_word_with_matches(input, &e).unwrap();
        assert_eq!(&w, expected, "{input:?}");
        assert_eq!(m.matched, set(matched), "matched of {input:?}");
        assert_eq!(m.unmatched, set(unmatched), "unmatched of {input:?}");
    }
}

#[test]
fn raw_quotes_and_escapes() {
    let e = env(&[("A", "x y")]);
    let quotes = Lexer {
        raw_quotes: true,
        ..Lexer::new('\\')
    };
    assert_eq!(
        quotes.process_word("'a b' \"c $A\"", &e).unwrap(),
        "'a b' \"c x y\""
    );
    assert_eq!(quotes.process_word("\\$A", &e).unwrap(), "$A");

    let escapes = Lexer {
        raw_escapes: true,
        ..Lexer::new('\\')
    };
    assert_eq!(escapes.process_word("a\\$A \\n", &e).unwrap(), "a\\$A \\n");
    assert_eq!(escapes.process_word("\"a\\$A\"", &e).unwrap(), "a\\$A");
    // BuildKit writes an escape before an ordinary character twice inside double quotes.
    assert_eq!(escapes.process_word("\"a\\tb\"", &e).unwrap(), "a\\\\tb");
    // Default words still drop their escapes.
    assert_eq!(escapes.process_word("${N:-\\$A}", &e).unwrap(), "$A");

    let both = Lexer {
        raw_quotes: true,
        raw_escapes: true,
        ..Lexer::new('\\')
    };
    assert_eq!(
        both.process_word("echo \"$A\" '$A' \\$A", &e).unwrap(),
        "echo \"x y\" '$A' \\$A"
    );
}

#[test]
fn skip_unset_env_keeps_unset_variables_as_written() {
    let e = env(&[("A", "x"), ("EMPTY", "")]);
    let lexer = Lexer {
        skip_unset_env: true,
        ..Lexer::new('\\')
    };
    let w = |s: &str| lexer.process_word(s, &e).unwrap();
    // Set variables expand as ever, even inside a kept form.
    assert_eq!(w("$A ${A} ${A:-d} ${EMPTY:-d} ${A/x/y}"), "x x x d y");
    assert_eq!(
        w("$U ${U} ${U:-$A} ${U?} ${U#p} ${U//p/r}"),
        "$U ${U} ${U:-x} ${U?} ${U#p} ${U/p/r}"
    );
    let (_, matches) = lexer.process_word_with_matches("$U $A", &e).unwrap();
    assert_eq!(matches.matched, set(&["A"]));
    assert_eq!(matches.unmatched, set(&["U"]));
    // Syntax errors stay errors: the form is checked before the variable is looked up.
    for bad in ["${U:#p}", "${U!}", "${U:-x", "${}"] {
        assert!(lexer.process_word(bad, &e).is_err(), "{bad}");
    }
}

#[test]
fn nested_defaults() {
    let e = env(&[("b", "B"), ("EMPTY", "")]);
    assert_eq!(word("${a:-${b:-c}}", &e), "B");
    assert_eq!(word("${a:-${z:-c}}", &e), "c");
    assert_eq!(word("${a:-${z:-${EMPTY:-deep}}}!", &e), "deep!");
    assert_eq!(word("${b:+[${b}]}", &e), "[B]");
    assert_eq!(word("${a-\"q }\"}", &e), "q }");
}

#[test]
fn replacement_through_variables() {
    let e = env(&[
        ("FOO", "/a/foo/b/c.txt"),
        ("NEEDLE", "/?/"),
        ("REPLACEMENT", "/"),
    ]);
    assert_eq!(
        word(
            "${FOO/$NEEDLE/$REPLACEMENT} - ${FOO//$NEEDLE/$REPLACEMENT}",
            &e
        ),
        "/foo/b/c.txt - /foo/c.txt"
    );
    let (_, m) = Lexer::new('\\')
        .process_word_with_matches("${FOO//$NEEDLE/$REPLACEMENT}", &e)
        .unwrap();
    assert_eq!(m.matched, set(&["FOO", "NEEDLE", "REPLACEMENT"]));
    assert!(m.unmatched.is_empty());
}

#[test]
fn release_file_name() {
    let word_for = |variant: Option<&str>| {
        let mut e = env(&[
            ("VERSION", "v1.2.3"),
            ("TARGETOS", "linux"),
            ("TARGETARCH", "arm"),
        ]);
        if let Some(v) = variant {
            e.insert("TARGETVARIANT".into(), v.into());
        }
        word(
            "something-${VERSION}.${TARGETOS}-${TARGETARCH}${TARGETVARIANT:+-${TARGETVARIANT}}.tar.gz",
            &e,
        )
    };
    assert_eq!(word_for(Some("v7")), "something-v1.2.3.linux-arm-v7.tar.gz");
    assert_eq!(word_for(Some("")), "something-v1.2.3.linux-arm.tar.gz");
    assert_eq!(word_for(None), "something-v1.2.3.linux-arm.tar.gz");
}

#[test]
fn pattern_removal() {
    let e = env(&[
        ("FOO", "xxyy"),
        ("PATH_", "/usr/local/bin/tool.tar.gz"),
        ("SPECIAL", "()[]{}^$.*?|\\x"),
        ("STARS", "a***yy*"),
        ("Q", "???y"),
        ("X", "x"),
        ("EMPTY", ""),
        ("KO", "한국어.txt"),
    ]);
    assert_eq!(word("${FOO#*x*y}", &e), "y");
    assert_eq!(word("${FOO#*}", &e), "xxyy");
    assert_eq!(word("${FOO##*x}", &e), "yy");
    assert_eq!(word("${FOO#$X}", &e), "xyy");
    assert_eq!(word("${FOO#$EMPTY}", &e), "xxyy");
    assert_eq!(word("${FOO#}${FOO##}${FOO%}", &e), "xxyyxxyyxxyy");
    assert_eq!(word("${FOO%y*}", &e), "xxy");
    assert_eq!(word("${FOO%%y*}", &e), "xx");
    assert_eq!(word("${PATH_##*/}", &e), "tool.tar.gz");
    assert_eq!(word("${PATH_#*/}", &e), "usr/local/bin/tool.tar.gz");
    assert_eq!(word("${PATH_%.*}", &e), "/usr/local/bin/tool.tar");
    assert_eq!(word("${PATH_%%.*}", &e), "/usr/local/bin/tool");
    assert_eq!(word("${PATH_%/*}", &e), "/usr/local/bin");
    assert_eq!(word("${PATH_#/usr/?ocal}", &e), "/bin/tool.tar.gz");
    assert_eq!(word("${SPECIAL#()[]{\\}^$.\\*\\?|\\\\}", &e), "x");
    assert_eq!(word("${STARS%%\\**\\*}", &e), "a");
    assert_eq!(word("${Q#?\\?}", &e), "?y");
    assert_eq!(word("${KO%.*}", &e), "한국어");
    assert_eq!(word("${KO#?}", &e), "국어.txt");
    // Brackets are literal: BuildKit's pattern has no bracket expressions.
    assert_eq!(word("${FOO#[x]}", &e), "xxyy");
    assert_eq!(word("${UNSET#x}", &e), "");
    for bad in [
        "${FOO:#x}",
        "${FOO:##}",
        "${FOO:%x}",
        "${FOO:%%}",
        "${FOO:#",
    ] {
        assert!(
            error(bad, &e).contains("unsupported modifier (:"),
            "{bad:?}"
        );
    }
    assert!(error("${FOO#\\x}", &e).contains("invalid pattern"));
}

#[test]
fn replacement() {
    let e = env(&[
        ("FOO", "/foo*/*/*.txt"),
        ("NEEDLE", "\\*/"),
        ("TMP", "/tmp/tmp/bar.txt"),
        ("SLASHTMP", "/tmp"),
        ("URL", "http://google.de"),
        ("ABC", "a/foo/b/c.txt"),
        ("XY", "xxyy"),
        ("EMPTY", ""),
    ]);
    assert_eq!(
        word("${FOO/$NEEDLE/.} - ${FOO//$NEEDLE/.}", &e),
        "/foo.*/*.txt - /foo..*.txt"
    );
    assert_eq!(
        word("${TMP/$SLASHTMP/} - ${TMP//$SLASHTMP/}", &e),
        "/tmp/bar.txt - /bar.txt"
    );
    assert_eq!(word("${URL/http:\\/\\//https://}", &e), "https://google.de");
    assert_eq!(word("${ABC//\\/?\\//\\/}", &e), "a/foo\\/c.txt");
    assert_eq!(word("${TMP//\\//\\/}", &e), "\\/tmp\\/tmp\\/bar.txt");
    assert_eq!(word("${XY/$EMPTY/ww}", &e), "wwxxyy");
    assert_eq!(word("${XY///}", &e), "xxyy");
    assert_eq!(word("${UNSET///}", &e), "");
    assert_eq!(word("${XY//x/-}", &e), "--yy");
    assert_eq!(word("${XY/x*/-}", &e), "-");
    assert!(error("${XY//ww}", &e).contains("missing '/'"));
    assert!(error("${XY//}", &e).contains("missing '/'"));
    assert!(error("${XY/a/b", &e).contains("missing '}'"));
}

#[test]
fn error_messages() {
    let e = env(&[("VAR", ""), ("ARG", "x")]);
    assert_eq!(
        error("he${XXX:?}", &e),
        "failed to process \"he${XXX:?}\": XXX: is not allowed to be unset"
    );
    assert!(error("${VAR:?}", &e).ends_with("VAR: is not allowed to be empty"));
    assert!(error("${VAR:?message here$ARG}", &e).ends_with("VAR: message herex"));
    assert!(error("${NOPE?message here$ARG}", &e).ends_with("NOPE: message herex"));
    assert_eq!(word("${VAR?message}", &e), "");
    assert!(error("\"abc", &e)
        .ends_with("unexpected end of statement while looking for matching double-quote"));
    assert!(error("'abc", &e)
        .ends_with("unexpected end of statement while looking for matching single-quote"));
    assert!(error("${}", &e).ends_with("syntax error: bad substitution"));
    assert!(error("${:-a}", &e).ends_with("syntax error: bad substitution"));
    assert!(error("${VAR:-a", &e).ends_with("syntax error: missing '}'"));
    assert!(error("${VAR", &e).ends_with("syntax error: missing '}'"));
    assert!(error("${VAR:=a}", &e).ends_with("unsupported modifier (:=) in substitution"));
    assert!(error("${VAR=a}", &e).ends_with("unsupported modifier (=) in substitution"));
}

#[test]
fn words_split_on_unquoted_space() {
    let e = env(&[("S", "  a  b "), ("E", "")]);
    let lexer = Lexer::new('\\');
    let words = |s: &str| lexer.process_words(s, &e).unwrap();
    assert_eq!(words("x${S}y"), ["x", "a", "b", "y"]);
    assert_eq!(words("x\"${S}\"y"), ["x  a  b y"]);
    assert_eq!(words("a \"\" b"), ["a", "b"]);
    assert_eq!(words("a $E b"), ["a", "b"]);
    assert_eq!(words("  "), Vec::<String>::new());
    assert_eq!(words("한국 어\\ 다"), ["한국", "어 다"]);
}

#[test]
fn unicode_names_and_digits() {
    let e = env(&[("이름", "값"), ("A١", "arabic-indic")]);
    assert_eq!(word("$이름!", &e), "값!");
    assert_eq!(word("${A١}", &e), "arabic-indic");
    assert_eq!(word("$١٢x", &e), "x");
    // A letter-like number is neither a digit nor a letter to Go, so `$` stays literal.
    assert_eq!(word("$Ⅻ", &e), "$Ⅻ");
}

#[test]
fn environments_agree() {
    let pairs: Vec<(String, String)> = vec![
        ("A".into(), "1".into()),
        ("B".into(), "2".into()),
        ("A".into(), "3".into()),
    ];
    let map: HashMap<String, String> = pairs.iter().cloned().collect();
    let lexer = Lexer::new('\\');
    assert_eq!(lexer.process_word("$A$B", &pairs).unwrap(), "32");
    assert_eq!(lexer.process_word("$A$B", &pairs.as_slice()).unwrap(), "32");
    assert_eq!(lexer.process_word("$A$B", &map).unwrap(), "32");
}

#[test]
fn deep_nesting_is_refused_not_a_crash() {
    let e = env(&[]);
    let deep = "${a:-".repeat(100_000);
    assert!(Lexer::new('\\').process_word(&deep, &e).is_err());
    let closed = format!("{}x{}", "${a:-".repeat(150), "}".repeat(150));
    assert_eq!(word(&closed, &e), "x");
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(512))]
    #[test]
    fn never_panics(input in r#"[a-z$#%:/{}"'\\`* ?\-+=한\n]{0,40}"#) {
        let e = env(&[("a", "x y*"), ("b", ""), ("한", "국")]);
        for lexer in [
            Lexer::new('\\'),
            Lexer { raw_quotes: true, raw_escapes: true, ..Lexer::new('`') },
        ] {
            let _ = lexer.process_word(&input, &e);
            let _ = lexer.process_words(&input, &e);
        }
    }
}

#[test]
fn leading_byte_order_mark_is_dropped() {
    let e = env(&[("A", "\u{FEFF}x")]);
    assert_eq!(word("\u{FEFF}$A", &e), "\u{FEFF}x");
    assert_eq!(word("a\u{FEFF}", &e), "a\u{FEFF}");
    assert_eq!(word("${A#\u{FEFF}\u{FEFF}}", &e), "x");
}

#[test]
fn errors_quote_the_word_like_go() {
    assert_eq!(
        go_quote("a\"b\\c\n\t\u{1}한\u{2028}"),
        "\"a\\\"b\\\\c\\n\\t\\x01한\\u2028\""
    );
    let e = env(&[]);
    assert_eq!(
        error("'x\n", &e),
        "failed to process \"'x\\n\": unexpected end of statement while looking for matching \
         single-quote"
    );
}
