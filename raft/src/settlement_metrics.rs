//! Net settlement's metrics: how long each cycle run held the apply path (observed as it is
//! applied), and what the book holds and the latest run did (read from the applied state at
//! each scrape, so every replica reports the same figures).

use prometheus::{Gauge, Histogram, IntGauge, IntGaugeVec, Registry};
use tally_engine::settlement::SettlementBook;

use crate::metrics::{gauge, gauge_vec, histogram, register};

#[derive(Clone, Debug)]
pub struct SettlementMetrics {
    /// Seconds each entry holding a cycle run took to apply (netting, statuses, postings).
    pub run_seconds: Histogram,
    runs: IntGauge,
    open_instructions: IntGauge,
    last_run_cycle: IntGauge,
    last_run_instructions: IntGaugeVec,
    last_run_short: IntGaugeVec,
    last_run_postings: IntGauge,
    last_run_settled_value: Gauge,
}

const OUTCOMES: [&str; 4] = ["settled", "partly_settled", "failed", "aged_out"];
const LEGS: [&str; 2] = ["securities", "cash"];

impl SettlementMetrics {
    pub fn new() -> SettlementMetrics {
        let last_run_instructions = gauge_vec(
            "tally_settlement_last_run_instructions",
            "Instructions of the latest settlement cycle run, by outcome (aged_out: cancelled \
             at the fail limit in that run).",
            &["outcome"],
        );
        for outcome in OUTCOMES {
            last_run_instructions.with_label_values(&[outcome]);
        }
        let last_run_short = gauge_vec(
            "tally_settlement_last_run_short_instructions",
            "Instructions of the latest run that failed or settled in part, by the leg that \
             was short (securities: the deliverer; cash: the receiver).",
            &["leg"],
        );
        for leg in LEGS {
            last_run_short.with_label_values(&[leg]);
        }
        SettlementMetrics {
            run_seconds: histogram(
                "tally_settlement_run_seconds",
                "How long applying each settlement cycle run took on this replica (the \
                 netting, every instruction's status, the postings), holding the apply path.",
                vec![
                    0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
                ],
            ),
            runs: gauge(
                "tally_settlement_runs",
                "Settlement cycle runs applied in the ledger's history.",
            ),
            open_instructions: gauge(
                "tally_settlement_open_instructions",
                "Settlement instructions neither settled nor cancelled (waiting, held or \
                 carried forward).",
            ),
            last_run_cycle: gauge(
                "tally_settlement_last_run_cycle",
                "The cycle of the latest run (0 before any).",
            ),
            last_run_instructions,
            last_run_short,
            last_run_postings: gauge(
                "tally_settlement_last_run_postings",
                "Transfers the latest run posted: one per participant and asset.",
            ),
            last_run_settled_value: prometheus::Gauge::new(
                "tally_settlement_last_run_settled_value",
                "Units plus cash the latest run settled.",
            )
            .unwrap_or_else(|error| {
                unreachable!("tally_settlement_last_run_settled_value: {error}")
            }),
        }
    }

    pub fn register(&self, registry: &Registry) {
        register(registry, self.run_seconds.clone());
        register(registry, self.runs.clone());
        register(registry, self.open_instructions.clone());
        register(registry, self.last_run_cycle.clone());
        register(registry, self.last_run_instructions.clone());
        register(registry, self.last_run_short.clone());
        register(registry, self.last_run_postings.clone());
        register(registry, self.last_run_settled_value.clone());
    }

    /// The gauges from the applied book (`None` while a snapshot is installed: left as they
    /// were).
    pub fn refresh(&self, book: Option<&SettlementBook>) {
        let Some(book) = book else {
            return;
        };
        let count = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
        self.runs.set(count(book.run_records().len() as u64));
        self.open_instructions
            .set(count(book.open_instructions() as u64));
        let Some(last) = book.run_records().max_by_key(|run| run.timestamp) else {
            return;
        };
        self.last_run_cycle.set(i64::from(last.cycle));
        let outcomes = [
            last.settled,
            last.partly_settled,
            last.failed,
            last.aged_out,
        ];
        for (outcome, n) in OUTCOMES.iter().zip(outcomes) {
            self.last_run_instructions
                .with_label_values(&[outcome])
                .set(count(n));
        }
        for (leg, n) in LEGS.iter().zip(last.short_legs) {
            self.last_run_short.with_label_values(&[leg]).set(count(n));
        }
        self.last_run_postings.set(i64::from(last.postings));
        self.last_run_settled_value.set(last.settled_value as f64);
    }
}

impl Default for SettlementMetrics {
    fn default() -> SettlementMetrics {
        SettlementMetrics::new()
    }
}
