//! A strict reader of the Prometheus text exposition format (0.0.4), for checking what
//! `/metrics` serves parses as Prometheus would parse it.

use std::collections::{BTreeMap, HashMap, HashSet};

/// One sample line.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// The metric name (with any `_bucket`/`_sum`/`_count` suffix).
    pub name: String,
    /// Labels, in the order written.
    pub labels: Labels,
    /// The value.
    pub value: f64,
}

impl Sample {
    /// The value of label `k`.
    pub fn label(&self, k: &str) -> Option<&str> {
        self.labels
            .iter()
            .find(|(n, _)| n == k)
            .map(|(_, v)| v.as_str())
    }
}

fn valid_name(n: &str, metric: bool) -> bool {
    let mut cs = n.chars();
    let first_ok = |c: char| c.is_ascii_alphabetic() || c == '_' || (metric && c == ':');
    matches!(cs.next(), Some(c) if first_ok(c))
        && cs.all(|c| c.is_ascii_alphanumeric() || c == '_' || (metric && c == ':'))
}

fn parse_value(v: &str) -> Result<f64, String> {
    match v {
        "+Inf" => Ok(f64::INFINITY),
        "-Inf" => Ok(f64::NEG_INFINITY),
        "NaN" => Ok(f64::NAN),
        _ => v.parse().map_err(|_| format!("bad value {v:?}")),
    }
}

/// Label names and values, in the order written.
type Labels = Vec<(String, String)>;

/// Parses `{a="b",...}` at the start of `s`; returns the labels and the rest.
fn parse_labels(s: &str) -> Result<(Labels, &str), String> {
    let mut rest = s.strip_prefix('{').ok_or("no {")?;
    let mut labels = Vec::new();
    loop {
        if let Some(r) = rest.strip_prefix('}') {
            return Ok((labels, r));
        }
        let eq = rest.find('=').ok_or("label without =")?;
        let name = &rest[..eq];
        if !valid_name(name, false) {
            return Err(format!("bad label name {name:?}"));
        }
        rest = rest[eq + 1..]
            .strip_prefix('"')
            .ok_or("label value not quoted")?;
        let mut value = String::new();
        let mut chars = rest.char_indices();
        let end = loop {
            match chars.next().ok_or("unterminated label value")? {
                (i, '"') => break i,
                (_, '\\') => match chars.next().ok_or("dangling escape")?.1 {
                    '\\' => value.push('\\'),
                    '"' => value.push('"'),
                    'n' => value.push('\n'),
                    c => return Err(format!("bad escape \\{c}")),
                },
                (_, '\n') => return Err("newline in label value".into()),
                (_, c) => value.push(c),
            }
        };
        labels.push((name.to_owned(), value));
        rest = &rest[end + 1..];
        if let Some(r) = rest.strip_prefix(',') {
            rest = r;
        } else if !rest.starts_with('}') {
            return Err("labels not separated by ,".into());
        }
    }
}

/// The family a sample belongs to, given the declared types.
fn family_of<'a>(name: &'a str, types: &HashMap<String, String>) -> &'a str {
    if types.contains_key(name) {
        return name;
    }
    for suffix in ["_bucket", "_sum", "_count"] {
        if let Some(base) = name.strip_suffix(suffix) {
            if matches!(
                types.get(base).map(String::as_str),
                Some("histogram" | "summary")
            ) {
                return base;
            }
        }
    }
    name
}

/// Checks `text` and returns its samples; panics naming the first problem.
pub fn parse(text: &str) -> Vec<Sample> {
    assert!(text.ends_with('\n'), "exposition must end with a newline");
    let mut types: HashMap<String, String> = HashMap::new();
    let mut helps: HashSet<String> = HashSet::new();
    let mut finished: HashSet<String> = HashSet::new();
    let mut current: Option<String> = None;
    let mut seen: HashSet<String> = HashSet::new();
    let mut samples = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let fail = |why: &str| -> ! { panic!("line {}: {why}: {line:?}", n + 1) };
        if line.is_empty() {
            continue;
        }
        if let Some(c) = line.strip_prefix('#') {
            let mut parts = c.trim_start().splitn(3, ' ');
            match parts.next() {
                Some("HELP") => {
                    let name = parts.next().unwrap_or_else(|| fail("HELP without name"));
                    if !helps.insert(name.to_owned()) {
                        fail("second HELP");
                    }
                }
                Some("TYPE") => {
                    let name = parts.next().unwrap_or_else(|| fail("TYPE without name"));
                    let kind = parts.next().unwrap_or_else(|| fail("TYPE without type"));
                    if !["counter", "gauge", "histogram", "summary", "untyped"].contains(&kind) {
                        fail("unknown type");
                    }
                    if !valid_name(name, true) {
                        fail("bad metric name");
                    }
                    if seen.iter().any(|s| family_of(s, &types) == name) {
                        fail("TYPE after the family's samples");
                    }
                    if types.insert(name.to_owned(), kind.to_owned()).is_some() {
                        fail("second TYPE");
                    }
                }
                _ => {}
            }
            continue;
        }
        let name_end = line.find(['{', ' ']).unwrap_or_else(|| fail("no value"));
        let name = &line[..name_end];
        if !valid_name(name, true) {
            fail("bad metric name");
        }
        let (labels, rest) = if line[name_end..].starts_with('{') {
            parse_labels(&line[name_end..]).unwrap_or_else(|e| fail(&e))
        } else {
            (Vec::new(), &line[name_end..])
        };
        let mut fields = rest
            .strip_prefix(' ')
            .unwrap_or_else(|| fail("no space before value"))
            .split(' ');
        let value = parse_value(fields.next().unwrap_or_default()).unwrap_or_else(|e| fail(&e));
        if let Some(ts) = fields.next() {
            ts.parse::<i64>().unwrap_or_else(|_| fail("bad timestamp"));
        }
        let mut names = HashSet::new();
        if !labels.iter().all(|(k, _)| names.insert(k.as_str())) {
            fail("repeated label");
        }
        let family = family_of(name, &types).to_owned();
        if current.as_deref() != Some(family.as_str()) {
            if finished.contains(&family) {
                fail("family's samples not together");
            }
            if let Some(prev) = current.replace(family.clone()) {
                finished.insert(prev);
            }
        }
        let mut key: Vec<_> = labels.clone();
        key.sort();
        if !seen.insert(format!("{name}{key:?}")) {
            fail("duplicate series");
        }
        samples.push(Sample {
            name: name.to_owned(),
            labels,
            value,
        });
    }
    check_histograms(&samples, &types);
    samples
}

/// Buckets grow with `le`, and the `+Inf` bucket is the count.
fn check_histograms(samples: &[Sample], types: &HashMap<String, String>) {
    for (family, _) in types.iter().filter(|(_, k)| *k == "histogram") {
        let mut series: BTreeMap<String, Vec<(f64, f64)>> = BTreeMap::new();
        let mut counts: BTreeMap<String, f64> = BTreeMap::new();
        let key = |s: &Sample| {
            let mut l: Vec<_> = s.labels.iter().filter(|(k, _)| k != "le").collect();
            l.sort();
            format!("{l:?}")
        };
        for s in samples {
            if s.name == format!("{family}_bucket") {
                let le = parse_value(s.label("le").expect("bucket without le")).unwrap();
                series.entry(key(s)).or_default().push((le, s.value));
            } else if s.name == format!("{family}_count") {
                counts.insert(key(s), s.value);
            }
        }
        for (k, buckets) in &series {
            assert!(
                buckets
                    .windows(2)
                    .all(|w| w[0].0 < w[1].0 && w[0].1 <= w[1].1),
                "{family}{k}: buckets out of order"
            );
            let last = buckets.last().unwrap();
            assert!(last.0.is_infinite(), "{family}{k}: no +Inf bucket");
            assert_eq!(
                Some(&last.1),
                counts.get(k),
                "{family}{k}: +Inf bucket != count"
            );
        }
    }
}
