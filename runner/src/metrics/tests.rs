use super::*;
use crate::job::plan::StageName;
use crate::job::steps::Progress;

fn config(text: &str) -> Config {
    toml::from_str(text).unwrap()
}

#[test]
fn runner_label_is_gitlab_runners_short_token() {
    assert_eq!(runner_label("glrt-abcdefghijkl"), "abcdefghi");
    assert_eq!(runner_label("glrt-t2_abcdefghijkl"), "abcdefghi");
    assert_eq!(runner_label("t1_abcdefghijkl"), "abcdefghi");
    assert_eq!(runner_label("glrtr-abcdefghijkl"), "abcdefghi");
    assert_eq!(runner_label("GR1348941abcdefghijkl"), "abcdefghi");
    assert_eq!(runner_label("GRnothexabcdefghijkl"), "GRnothexa");
    assert_eq!(runner_label("short"), "short");
}

#[test]
fn a_job_moves_through_the_stages_then_counts() {
    let m = Arc::new(Metrics::default());
    m.set_system_id("s_1");
    m.set_config(&config(
        "concurrent = 4\n[[runners]]\nname = \"a\"\nurl = \"http://x\"\ntoken = \"glrt-aaaaaaaaaaaa\"\nlimit = 2\n",
    ));
    let j = m.job_received("glrt-aaaaaaaaaaaa");
    j.running();
    j.progress(Progress::Preparing);
    j.progress(Progress::Stage(StageName::StepScript));
    let t = m.render();
    assert!(t.contains("gitlab_runner_concurrent 4\n"), "{t}");
    assert!(t.contains("gitlab_runner_limit{runner=\"aaaaaaaaa\",system_id=\"s_1\"} 2\n"));
    assert!(t.contains(
        "gitlab_runner_jobs{runner=\"aaaaaaaaa\",system_id=\"s_1\",state=\"running\",stage=\"step_script\",executor_stage=\"prepare\"} 1\n"
    ), "{t}");
    assert!(t.contains(
        "gitlab_runner_jobs{runner=\"aaaaaaaaa\",system_id=\"s_1\",state=\"idle\",stage=\"idle\",executor_stage=\"idle\"} 0\n"
    ));
    j.progress(Progress::CleaningUp);
    j.ended(RunState::Finished);
    j.failed("script_failure");
    drop(j);
    let t = m.render();
    assert!(!t.contains("state=\"running\""), "{t}");
    assert!(t.contains("gitlab_runner_jobs_total{runner=\"aaaaaaaaa\",system_id=\"s_1\"} 1\n"));
    assert!(t.contains(
        "gitlab_runner_failed_jobs_total{runner=\"aaaaaaaaa\",system_id=\"s_1\",failure_reason=\"script_failure\"} 1\n"
    ));
    assert!(t.contains(
        "gitlab_runner_job_duration_seconds_bucket{runner=\"aaaaaaaaa\",system_id=\"s_1\",le=\"30\"} 1\n"
    ));
    assert!(t.contains(
        "gitlab_runner_job_duration_seconds_bucket{runner=\"aaaaaaaaa\",system_id=\"s_1\",le=\"+Inf\"} 1\n"
    ));
    assert!(t.contains(
        "gitlab_runner_job_duration_seconds_count{runner=\"aaaaaaaaa\",system_id=\"s_1\"} 1\n"
    ));
}

#[test]
fn requests_and_api_statuses_are_counted() {
    let m = Arc::new(Metrics::default());
    m.set_config(&config(
        "[[runners]]\nname = \"a\"\nurl = \"http://x\"\ntoken = \"glrt-bbbbbbbbbbbb\"\n",
    ));
    let g = m.request_started("glrt-bbbbbbbbbbbb");
    assert!(m
        .render()
        .contains("gitlab_runner_request_concurrency{runner=\"bbbbbbbbb\",system_id=\"\"} 1\n"));
    drop(g);
    m.api_request("glrt-bbbbbbbbbbbb", "request_job", "POST", Some(204));
    m.api_request("glrt-bbbbbbbbbbbb", "request_job", "POST", Some(204));
    m.api_request("glrt-bbbbbbbbbbbb", "update_job", "PUT", None);
    m.logged(tracing::Level::WARN);
    let t = m.render();
    assert!(
        t.contains("gitlab_runner_request_concurrency{runner=\"bbbbbbbbb\",system_id=\"\"} 0\n")
    );
    assert!(t.contains(
        "gitlab_runner_api_request_statuses_total{runner=\"bbbbbbbbb\",system_id=\"\",endpoint=\"request_job\",status=\"204\",method=\"POST\"} 2\n"
    ), "{t}");
    assert!(t.contains("endpoint=\"update_job\",status=\"-100\",method=\"PUT\"} 1\n"));
    assert!(t.contains("gitlab_runner_errors_total{level=\"warning\"} 1\n"));
    assert!(t.contains("process_resident_memory_bytes "));
}
