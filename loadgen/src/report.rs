//! Statistics while a run goes (per kind of batch: counts and an HDR histogram of batch
//! latency) and the final report, as a table and as JSON.

use hdrhistogram::Histogram;
use serde_json::json;

use crate::workload::Kind;

/// Latencies are recorded in microseconds, up to an hour, with 3 significant digits.
const LATENCY_US_MAX: u64 = 3_600_000_000;

fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, LATENCY_US_MAX, 3)
        .expect("constant bounds that hdrhistogram accepts (1 ≤ low, 2 × low ≤ high, 3 digits)")
}

/// Counts and latencies of one kind of batch.
#[derive(Clone, Debug)]
pub struct KindStats {
    pub batches: u64,
    /// Events applied (`ok`, or `exists` on a retry).
    pub events_ok: u64,
    /// Events the engine refused that the workload meant to be refused.
    pub rejected: u64,
    /// Events refused that should not have been, and events of batches with no answer or
    /// refused as a whole.
    pub errors: u64,
    pub latency_us: Histogram<u64>,
}

impl Default for KindStats {
    fn default() -> KindStats {
        KindStats {
            batches: 0,
            events_ok: 0,
            rejected: 0,
            errors: 0,
            latency_us: histogram(),
        }
    }
}

/// Statistics of a run, per kind (indexed as `Kind::ALL`).
#[derive(Clone, Debug, Default)]
pub struct Stats {
    pub kinds: [KindStats; 5],
}

impl Stats {
    pub fn kind(&mut self, kind: Kind) -> &mut KindStats {
        let index = Kind::ALL.iter().position(|k| *k == kind).unwrap_or(0);
        &mut self.kinds[index]
    }

    /// Every kind but account creation merged: the workload.
    pub fn workload(&self) -> KindStats {
        let mut total = KindStats::default();
        for (kind, stats) in Kind::ALL.iter().zip(&self.kinds) {
            if *kind != Kind::Accounts {
                total.batches += stats.batches;
                total.events_ok += stats.events_ok;
                total.rejected += stats.rejected;
                total.errors += stats.errors;
                let _ = total.latency_us.add(&stats.latency_us);
            }
        }
        total
    }
}

/// One row of the report.
#[derive(Clone, Debug, PartialEq)]
pub struct Row {
    pub name: String,
    pub batches: u64,
    pub events_ok: u64,
    pub rejected: u64,
    pub errors: u64,
    pub events_per_s: f64,
    pub p50_us: u64,
    pub p90_us: u64,
    pub p99_us: u64,
    pub p999_us: u64,
    pub max_us: u64,
}

impl Row {
    fn new(name: &str, stats: &KindStats, seconds: f64) -> Row {
        let h = &stats.latency_us;
        Row {
            name: name.to_owned(),
            batches: stats.batches,
            events_ok: stats.events_ok,
            rejected: stats.rejected,
            errors: stats.errors,
            events_per_s: stats.events_ok as f64 / seconds.max(1e-9),
            p50_us: h.value_at_quantile(0.5),
            p90_us: h.value_at_quantile(0.9),
            p99_us: h.value_at_quantile(0.99),
            p999_us: h.value_at_quantile(0.999),
            max_us: h.max(),
        }
    }
}

/// The final report of a run.
#[derive(Clone, Debug, PartialEq)]
pub struct Report {
    /// What was run, in words (mode, clients or rate, batch size, mix, skew).
    pub description: String,
    /// Seconds from the first workload batch to the last answer (account setup excluded).
    pub seconds: f64,
    /// One row per kind that ran, then `total` (the workload, accounts excluded).
    pub rows: Vec<Row>,
}

impl Report {
    pub fn new(description: String, stats: &Stats, seconds: f64) -> Report {
        let mut rows: Vec<Row> = Kind::ALL
            .iter()
            .zip(&stats.kinds)
            .filter(|(_, s)| s.batches > 0)
            .map(|(kind, s)| {
                // Accounts are set up before the clock starts: their rate is not meaningful.
                let seconds = if *kind == Kind::Accounts {
                    f64::INFINITY
                } else {
                    seconds
                };
                Row::new(kind.name(), s, seconds)
            })
            .collect();
        rows.push(Row::new("total", &stats.workload(), seconds));
        Report {
            description,
            seconds,
            rows,
        }
    }

    pub fn total(&self) -> Option<&Row> {
        self.rows.last()
    }

    /// The report as a table (latency of batches, submit to answer, in milliseconds).
    pub fn table(&self) -> String {
        let ms = |us: u64| us as f64 / 1e3;
        let mut out = format!("{}\n{:.2} s of load\n", self.description, self.seconds);
        out.push_str(&format!(
            "{:<10} {:>8} {:>12} {:>8} {:>7} {:>12} {:>8} {:>8} {:>8} {:>8} {:>8}\n",
            "operation",
            "batches",
            "events ok",
            "rejected",
            "errors",
            "events/s",
            "p50 ms",
            "p90 ms",
            "p99 ms",
            "p99.9 ms",
            "max ms"
        ));
        for row in &self.rows {
            let rate = if row.events_per_s > 0.0 {
                format!("{:.0}", row.events_per_s)
            } else {
                "-".to_owned()
            };
            out.push_str(&format!(
                "{:<10} {:>8} {:>12} {:>8} {:>7} {:>12} {:>8.2} {:>8.2} {:>8.2} {:>8.2} {:>8.2}\n",
                row.name,
                row.batches,
                row.events_ok,
                row.rejected,
                row.errors,
                rate,
                ms(row.p50_us),
                ms(row.p90_us),
                ms(row.p99_us),
                ms(row.p999_us),
                ms(row.max_us)
            ));
        }
        out
    }

    /// The report as JSON.
    pub fn json(&self) -> serde_json::Value {
        let rows: Vec<serde_json::Value> = self
            .rows
            .iter()
            .map(|row| {
                json!({
                    "operation": row.name,
                    "batches": row.batches,
                    "events_ok": row.events_ok,
                    "rejected": row.rejected,
                    "errors": row.errors,
                    "events_per_s": row.events_per_s,
                    "latency_us": {
                        "p50": row.p50_us,
                        "p90": row.p90_us,
                        "p99": row.p99_us,
                        "p99_9": row.p999_us,
                        "max": row.max_us,
                    },
                })
            })
            .collect();
        json!({
            "description": self.description,
            "seconds": self.seconds,
            "operations": rows,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Proves the report's total merges the workload kinds (not the account setup) and that
    /// table and JSON carry the same figures.
    #[test]
    fn total_excludes_accounts_and_json_matches() {
        let mut stats = Stats::default();
        for (kind, events, latency_us) in [
            (Kind::Accounts, 100, 50_000),
            (Kind::Transfers, 1_000, 2_000),
            (Kind::Trades, 500, 4_000),
        ] {
            let s = stats.kind(kind);
            s.batches += 1;
            s.events_ok += events;
            s.latency_us.record(latency_us).expect("in range");
        }
        let report = Report::new("test".into(), &stats, 2.0);
        let total = report.total().expect("total row");
        assert_eq!(total.events_ok, 1_500);
        assert!((total.events_per_s - 750.0).abs() < 1e-9);
        assert!(total.max_us >= 4_000 && total.max_us < 4_010, "{total:?}");
        let json = report.json();
        assert_eq!(json["operations"][3]["operation"], "total");
        assert_eq!(json["operations"][3]["events_ok"], 1_500);
        assert!(report.table().contains("trades"));
    }
}
