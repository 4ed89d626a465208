//! ADD of an http(s) URL: the file is named after the URL's path (`__unnamed__` when it has
//! none, as BuildKit's frontend does), gets mode 0600 and the `Last-Modified` time, and is
//! checked against `--checksum` before anything is written to the image.

use super::CopyError;
use sha2::Digest as _;
use std::io::Write;
use std::path::Path;

/// What the download thread reports: Last-Modified, sha256, sha512.
type Downloaded = (Option<String>, Vec<u8>, Vec<u8>);

/// A downloaded file, rewound.
pub(crate) struct Fetched {
    pub file: std::fs::File,
    pub name: String,
    pub mtime: i64,
}

/// The URL without credentials, for messages.
fn redacted(url: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(mut u) => {
            let _ = u.set_username("");
            let _ = u.set_password(None);
            u.to_string()
        }
        Err(_) => "<invalid URL>".to_owned(),
    }
}

/// The file name BuildKit's frontend gives a URL source.
pub(crate) fn file_name(url: &str) -> String {
    reqwest::Url::parse(url)
        .ok()
        .and_then(|u| {
            let path = u.path().to_owned();
            let base = path.rsplit('/').next().unwrap_or("").to_owned();
            let decoded = percent_decode(&base);
            (!decoded.is_empty() && decoded != "." && decoded != "..").then_some(decoded)
        })
        .unwrap_or_else(|| "__unnamed__".to_owned())
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            if let Ok(v) = u8::from_str_radix(&s[i + 1..i + 3], 16) {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Downloads `url` into an unnamed temporary file under `tmp_dir`, verifying `checksum`
/// (`sha256:` or `sha512:` hex). Runs on its own thread with its own runtime, so callers may
/// be inside or outside an async runtime.
pub(crate) fn fetch(
    url: &str,
    checksum: Option<&str>,
    tmp_dir: &Path,
) -> Result<Fetched, CopyError> {
    let shown = redacted(url);
    let fail = |reason: String| CopyError::Download {
        url: shown.clone(),
        reason,
    };
    let expected = match checksum {
        None => None,
        Some(c) => {
            let (alg, hex) = c
                .split_once(':')
                .ok_or_else(|| fail(format!("invalid --checksum {c:?}: expected sha256:<hex>")))?;
            let len = match alg {
                "sha256" => 64,
                "sha512" => 128,
                _ => return Err(fail(format!("unsupported --checksum algorithm {alg:?}"))),
            };
            if hex.len() != len || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(fail(format!("invalid --checksum {c:?}")));
            }
            Some((alg.to_owned(), hex.to_ascii_lowercase()))
        }
    };
    let mut file = tempfile::tempfile_in(tmp_dir).map_err(|e| fail(e.to_string()))?;
    let url_owned = url.to_owned();
    let mut out = file.try_clone().map_err(|e| fail(e.to_string()))?;
    let result = std::thread::spawn(move || -> Result<Downloaded, String> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| e.to_string())?;
        rt.block_on(async move {
            let client = reqwest::Client::builder()
                .build()
                .map_err(|e| e.to_string())?;
            let mut resp = client
                .get(&url_owned)
                .send()
                .await
                .map_err(|e| e.without_url().to_string())?;
            if !resp.status().is_success() {
                return Err(format!("unexpected status {}", resp.status()));
            }
            let last_modified = resp
                .headers()
                .get(reqwest::header::LAST_MODIFIED)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned);
            let mut s256 = sha2::Sha256::new();
            let mut s512 = sha2::Sha512::new();
            while let Some(chunk) = resp
                .chunk()
                .await
                .map_err(|e| e.without_url().to_string())?
            {
                s256.update(&chunk);
                s512.update(&chunk);
                out.write_all(&chunk).map_err(|e| e.to_string())?;
            }
            Ok((
                last_modified,
                s256.finalize().to_vec(),
                s512.finalize().to_vec(),
            ))
        })
    })
    .join()
    .map_err(|_| fail("download thread panicked".into()))?;
    let (last_modified, d256, d512) = result.map_err(fail)?;
    if let Some((alg, want)) = expected {
        let got = if alg == "sha256" { d256 } else { d512 };
        let got: String = got.iter().map(|b| format!("{b:02x}")).collect();
        if got != want {
            return Err(CopyError::Checksum {
                url: shown,
                expected: format!("{alg}:{want}"),
                actual: format!("{alg}:{got}"),
            });
        }
    }
    use std::io::Seek;
    file.rewind().map_err(|e| fail(e.to_string()))?;
    let mtime = last_modified
        .as_deref()
        .and_then(parse_http_date)
        .unwrap_or_else(crate::image::time::now_unix);
    Ok(Fetched {
        file,
        name: file_name(url),
        mtime,
    })
}

/// Parses an IMF-fixdate (`Sun, 06 Nov 1994 08:49:37 GMT`), the form servers send.
pub(crate) fn parse_http_date(s: &str) -> Option<i64> {
    let parts: Vec<&str> = s.split_whitespace().collect();
    if parts.len() != 6 || parts[5] != "GMT" {
        return None;
    }
    let day: i64 = parts[1].parse().ok()?;
    let month = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ]
    .iter()
    .position(|m| *m == parts[2])? as i64
        + 1;
    let year: i64 = parts[3].parse().ok()?;
    let hms: Vec<i64> = parts[4]
        .split(':')
        .map(|x| x.parse().ok())
        .collect::<Option<_>>()?;
    if hms.len() != 3 {
        return None;
    }
    // Days from the civil date (Howard Hinnant's algorithm).
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146097 + doe - 719468;
    Some(days * 86400 + hms[0] * 3600 + hms[1] * 60 + hms[2])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_dates() {
        assert_eq!(file_name("http://h/a/b.tar.gz?x=1"), "b.tar.gz");
        assert_eq!(file_name("http://h/"), "__unnamed__");
        assert_eq!(file_name("http://h"), "__unnamed__");
        assert_eq!(file_name("http://h/a%20b"), "a b");
        assert_eq!(
            parse_http_date("Sun, 06 Nov 1994 08:49:37 GMT"),
            Some(784111777)
        );
        assert_eq!(parse_http_date("Thu, 01 Jan 1970 00:00:00 GMT"), Some(0));
        assert_eq!(parse_http_date("garbage"), None);
        assert_eq!(
            redacted("https://user:secret@h/x"),
            "https://h/x".to_owned()
        );
    }
}
