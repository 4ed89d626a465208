//! The standard `process_*` metrics (as Prometheus client libraries export them), read
//! from `/proc/self` at each scrape.

use super::text::Text;

/// This process's resource use; a field is `None` where `/proc` could not tell.
#[derive(Debug, Default, PartialEq)]
struct Snapshot {
    cpu_seconds: Option<f64>,
    resident_bytes: Option<f64>,
    virtual_bytes: Option<f64>,
    start_time_seconds: Option<f64>,
    open_fds: Option<f64>,
    max_fds: Option<f64>,
}

/// Fields of `/proc/self/stat` after the command name (which may hold spaces and
/// parentheses, so the split is at the last `)`), as (utime, stime, starttime, vsize,
/// rss) in ticks, ticks, ticks since boot, bytes and pages.
fn parse_stat(stat: &str) -> Option<(u64, u64, u64, u64, u64)> {
    let rest = &stat[stat.rfind(')')? + 1..];
    // `rest` starts at field 3 (state): field n is at index n - 3.
    let f: Vec<&str> = rest.split_whitespace().collect();
    let n = |i: usize| f.get(i - 3)?.parse::<u64>().ok();
    Some((n(14)?, n(15)?, n(22)?, n(23)?, n(24)?))
}

/// `btime` of `/proc/stat`: the boot time, in seconds since the epoch.
fn parse_btime(stat: &str) -> Option<u64> {
    stat.lines()
        .find_map(|l| l.strip_prefix("btime "))
        .and_then(|v| v.trim().parse().ok())
}

fn snapshot() -> Snapshot {
    let mut s = Snapshot::default();
    let ticks = rustix::param::clock_ticks_per_second() as f64;
    let page = rustix::param::page_size() as f64;
    if let Some((utime, stime, start, vsize, rss)) = std::fs::read_to_string("/proc/self/stat")
        .ok()
        .as_deref()
        .and_then(parse_stat)
    {
        s.cpu_seconds = Some((utime + stime) as f64 / ticks);
        s.virtual_bytes = Some(vsize as f64);
        s.resident_bytes = Some(rss as f64 * page);
        let btime = std::fs::read_to_string("/proc/stat")
            .ok()
            .as_deref()
            .and_then(parse_btime);
        s.start_time_seconds = btime.map(|b| b as f64 + start as f64 / ticks);
    }
    s.open_fds = std::fs::read_dir("/proc/self/fd")
        .ok()
        .map(|d| d.count() as f64);
    s.max_fds = rustix::process::getrlimit(rustix::process::Resource::Nofile)
        .current
        .map(|n| n as f64);
    s
}

/// Writes the `process_*` families this process can report.
pub(super) fn render(t: &mut Text) {
    let s = snapshot();
    let families = [
        (
            "process_cpu_seconds_total",
            "counter",
            "Total user and system CPU time spent in seconds.",
            s.cpu_seconds,
        ),
        (
            "process_resident_memory_bytes",
            "gauge",
            "Resident memory size in bytes.",
            s.resident_bytes,
        ),
        (
            "process_virtual_memory_bytes",
            "gauge",
            "Virtual memory size in bytes.",
            s.virtual_bytes,
        ),
        (
            "process_start_time_seconds",
            "gauge",
            "Start time of the process since unix epoch in seconds.",
            s.start_time_seconds,
        ),
        (
            "process_open_fds",
            "gauge",
            "Number of open file descriptors.",
            s.open_fds,
        ),
        (
            "process_max_fds",
            "gauge",
            "Maximum number of open file descriptors.",
            s.max_fds,
        ),
    ];
    for (name, kind, help, value) in families {
        if let Some(v) = value {
            t.family(name, kind, help);
            t.sample(name, &[], v);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_stat_with_a_tricky_command_name() {
        let stat = "42 (a) b (c) S 1 42 42 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 3 0 \
                    1000 123456789 2048 18446744073709551615";
        assert_eq!(parse_stat(stat), Some((250, 50, 1000, 123456789, 2048)));
        assert_eq!(
            parse_btime("cpu 1 2\nbtime 1700000000\nprocesses 5\n"),
            Some(1700000000)
        );
    }

    #[test]
    fn this_process_is_measured() {
        let s = snapshot();
        assert!(s.resident_bytes.unwrap() > 0.0);
        assert!(s.virtual_bytes.unwrap() >= s.resident_bytes.unwrap());
        assert!(s.open_fds.unwrap() > 0.0);
        assert!(s.max_fds.unwrap() > 0.0);
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs_f64();
        let start = s.start_time_seconds.unwrap();
        assert!(
            start <= now + 1.0 && start > now - 86400.0 * 365.0,
            "{start}"
        );
    }
}
