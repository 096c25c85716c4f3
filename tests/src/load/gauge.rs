//! What the load run measures besides the kiosks' own clocks: CPU time of the server, of
//! PostgreSQL's processes and of this process (from `/proc`), and the server's own
//! instruments (`GET /v1/admin/metrics`), each read before and after the timed window.

use anyhow::{Context, Result};
use reqwest::Client;
use std::collections::HashMap;

/// Clock ticks per second of `/proc/*/stat` (`getconf CLK_TCK`, 100 if that fails).
fn ticks_per_second() -> f64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100.0)
}

/// `(command name, user + system CPU seconds)` of one `/proc/PID/stat` text.
fn parse_stat(text: &str, tck: f64) -> Option<(&str, f64)> {
    let open = text.find('(')?;
    let close = text.rfind(')')?;
    let name = &text[open + 1..close];
    // After the name: state is field 3; utime and stime are fields 14 and 15.
    let rest: Vec<&str> = text[close + 2..].split_whitespace().collect();
    let utime: f64 = rest.get(11)?.parse().ok()?;
    let stime: f64 = rest.get(12)?.parse().ok()?;
    Some((name, (utime + stime) / tck))
}

/// CPU seconds used so far by process `pid` (all its threads).
pub fn cpu_of(pid: u32) -> Result<f64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    parse_stat(&text, ticks_per_second())
        .map(|(_, s)| s)
        .context("an odd /proc stat line")
}

/// CPU seconds used so far by every process named `postgres` (the server and its backends;
/// backends that exit in between take their time with them, so this is a lower bound).
pub fn postgres_cpu() -> f64 {
    let tck = ticks_per_second();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return 0.0;
    };
    dir.filter_map(|e| std::fs::read_to_string(e.ok()?.path().join("stat")).ok())
        .filter_map(|t| parse_stat(&t, tck).map(|(n, s)| (n == "postgres").then_some(s)))
        .flatten()
        .sum()
}

/// The server's OpenMetrics text as `series → value` (series with their labels).
pub async fn scrape(admin: &Client, base: &str) -> Result<HashMap<String, f64>> {
    let text = admin
        .get(format!("{base}/v1/admin/metrics"))
        .send()
        .await?
        .error_for_status()?
        .text()
        .await?;
    Ok(parse_metrics(&text))
}

pub fn parse_metrics(text: &str) -> HashMap<String, f64> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            Some((series.to_string(), value.parse().ok()?))
        })
        .collect()
}

/// The change of `series` between two scrapes (0 if absent).
pub fn delta(before: &HashMap<String, f64>, after: &HashMap<String, f64>, series: &str) -> f64 {
    let at = |m: &HashMap<String, f64>| m.get(series).copied().unwrap_or(0.0);
    at(after) - at(before)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_lines_give_name_and_cpu_even_with_spaces_in_the_name() {
        let line = "42 (tokio rt) S 1 42 42 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 9 0 1 2 3";
        assert_eq!(parse_stat(line, 100.0), Some(("tokio rt", 3.0)));
    }

    #[test]
    fn metrics_are_read_by_series_and_compared() {
        let before = parse_metrics("# HELP x\nplm_sum 1.5\nplm{route=\"/a b\"} 2\n");
        let after = parse_metrics("plm_sum 4.0\nplm{route=\"/a b\"} 7\n# EOF\n");
        assert_eq!(delta(&before, &after, "plm_sum"), 2.5);
        assert_eq!(delta(&before, &after, "plm{route=\"/a b\"}"), 5.0);
        assert_eq!(delta(&before, &after, "absent"), 0.0);
    }
}
