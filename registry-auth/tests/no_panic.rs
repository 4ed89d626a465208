//! Parsers see untrusted input (server headers, config files, helper
//! output): they must return errors, never panic, and round-trip what they print.

use kiln_registry_auth::{
    normalize_host, parse_www_authenticate, Challenge, DockerConfig, Scope, ScopeSet,
};
use proptest::prelude::*;

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn challenge_parser_never_panics(s in "\\PC{0,80}") {
        let _ = parse_www_authenticate(&s);
    }

    #[test]
    fn challenge_parser_never_panics_on_header_like_input(
        s in "(Basic|Bearer|bearer|X)( |,)?([a-z]{1,6}=(\"([^\"\\\\]|\\\\.){0,10}\"|[a-z0-9:/]{0,8})(, ?)?){0,4}"
    ) {
        let _ = parse_www_authenticate(&s);
    }

    #[test]
    fn quoted_values_round_trip(realm in "[ -~]{0,40}", service in "[a-z.]{1,20}") {
        let escaped = realm.replace('\\', "\\\\").replace('"', "\\\"");
        let header = format!(r#"Bearer realm="{escaped}",service={service}"#);
        let cs = parse_www_authenticate(&header).unwrap();
        prop_assert_eq!(cs.len(), 1);
        prop_assert_eq!(cs[0].realm(), Some(realm.as_str()));
        prop_assert_eq!(cs[0].service(), Some(service.as_str()));
    }

    #[test]
    fn host_normalisation_never_panics_and_is_idempotent(s in "\\PC{0,60}") {
        let once = normalize_host(&s);
        prop_assert_eq!(normalize_host(&once), once.clone());
    }

    #[test]
    fn scope_display_parses_back(
        name in "[a-z0-9]{1,8}(/[a-z0-9._-]{1,8}){0,2}",
        actions in proptest::collection::btree_set("(pull|push|delete|\\*)", 1..4),
    ) {
        let scope = Scope::new("repository", name, actions);
        let back: Scope = scope.to_string().parse().unwrap();
        prop_assert_eq!(&back, &scope);
        let set = ScopeSet::new().with(scope);
        prop_assert_eq!(ScopeSet::parse(&set.to_string()).unwrap(), set);
    }

    #[test]
    fn scope_and_config_parsers_never_panic(s in "\\PC{0,80}") {
        let _ = s.parse::<Scope>();
        let _ = ScopeSet::parse(&s);
        if let Ok(cfg) = DockerConfig::parse(&s, "prop") {
            let _ = cfg.lookup("h", "prop");
        }
        let _ = Challenge::new("Bearer", [("scope", s.as_str())]).scope_set();
    }
}
