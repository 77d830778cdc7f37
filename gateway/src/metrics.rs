//! The gateway's metrics (catalog: docs/operations.md, "Metrics"), registered in the node's
//! registry next to the replica's: what the batcher decides (events by operation and result,
//! batch sizes, commit latency, queue) and what the server answers (requests by kind and
//! status, open sessions). Refusals before the ledger are counted in the node's
//! `tally_rejects_total`, which the replica's server shares. Conventions as in
//! `tally_raft::metrics`: names `tally_*`, base units, counters end in `_total`; updating one
//! is an atomic add.

use std::collections::BTreeMap;

use prometheus::{Histogram, HistogramOpts, HistogramVec, IntCounterVec, IntGauge};
use tally_client::protocol::{
    decode_reply, Status, KIND_ADMIN, KIND_BALANCES_AS_OF, KIND_CHECKPOINT, KIND_CONSISTENCY,
    KIND_COSIGN, KIND_CREATE_ACCOUNTS, KIND_CREATE_SETTLEMENTS, KIND_CREATE_TRADES,
    KIND_CREATE_TRANSFERS, KIND_END_SESSION, KIND_HEARTBEAT, KIND_LOOKUP_ACCOUNTS,
    KIND_LOOKUP_TRADES, KIND_LOOKUP_TRANSFERS, KIND_NODE_STATE, KIND_PROVE, KIND_REGISTER,
    KIND_STATEMENT,
};
use tally_raft::metrics::{
    batch_size_buckets, counter_vec, gauge, histogram, latency_buckets, operation_label, register,
    NodeMetrics, Reject,
};

/// The metrics the batcher and the gateway's server update.
#[derive(Clone, Debug)]
pub struct GatewayMetrics {
    /// Events decided while this node led, by operation and result (`ok`, the failure's
    /// snake_case name, or `batch_invalid` for a batch refused as a whole).
    pub events: IntCounterVec,
    pub batch_events: HistogramVec,
    pub commit_seconds: Histogram,
    pub batcher_queued: IntGauge,
    pub requests: IntCounterVec,
    pub sessions: IntGauge,
    /// The node's `tally_rejects_total` (shared with the replica's server).
    rejects: IntCounterVec,
}

impl GatewayMetrics {
    /// The gateway's metrics, registered in `node`'s registry.
    pub fn new(node: &NodeMetrics) -> GatewayMetrics {
        let events = counter_vec(
            "tally_events_total",
            "Events decided while this node led, by operation and result.",
            &["operation", "result"],
        );
        let batch_events = HistogramVec::new(
            HistogramOpts::new(
                "tally_batch_events",
                "Events per client batch committed while this node led.",
            )
            .buckets(batch_size_buckets()),
            &["operation"],
        )
        .unwrap_or_else(|error| unreachable!("tally_batch_events: {error}"));
        for operation in [
            tally_engine::Operation::CreateAccounts,
            tally_engine::Operation::CreateTransfers,
            tally_engine::Operation::CreateTrades,
            tally_engine::Operation::CreateSettlements,
            tally_engine::Operation::CreateInstructions,
            tally_engine::Operation::SettlementCommands,
        ] {
            events.with_label_values(&[operation_label(operation), "ok"]);
            batch_events.with_label_values(&[operation_label(operation)]);
        }
        let metrics = GatewayMetrics {
            events,
            batch_events,
            commit_seconds: histogram(
                "tally_commit_latency_seconds",
                "Leader: a client batch from queued to committed on a quorum (fsync'd) and \
                 applied, in seconds.",
                latency_buckets(),
            ),
            batcher_queued: gauge(
                "tally_batcher_queued_batches",
                "Client batches waiting for a Raft entry on this node.",
            ),
            requests: counter_vec(
                "tally_requests_total",
                "Client and operator requests answered, by protocol, request kind and status.",
                &["protocol", "kind", "status"],
            ),
            sessions: gauge("tally_gateway_sessions", "Open gateway client sessions."),
            rejects: node.rejects.clone(),
        };
        let registry = node.registry();
        register(registry, metrics.events.clone());
        register(registry, metrics.batch_events.clone());
        register(registry, metrics.commit_seconds.clone());
        register(registry, metrics.batcher_queued.clone());
        register(registry, metrics.requests.clone());
        register(registry, metrics.sessions.clone());
        metrics
    }

    /// Count a refused request.
    pub fn reject(&self, reason: Reject) {
        self.rejects.with_label_values(&[reason.label()]).inc();
    }

    /// Count an answered request.
    pub fn request(&self, protocol: &str, kind: &str, status: &str) {
        self.requests
            .with_label_values(&[protocol, kind, status])
            .inc();
    }

    /// Count the events of one committed client batch: `count` events, `failures` of them
    /// failed with the given results (`Err` for a batch refused as a whole).
    pub fn batch_decided(
        &self,
        operation: tally_engine::Operation,
        count: u64,
        outcome: &Result<tally_engine::BatchOutcome, tally_engine::BatchError>,
    ) {
        let operation = operation_label(operation);
        self.batch_events
            .with_label_values(&[operation])
            .observe(count as f64);
        let outcome = match outcome {
            Ok(outcome) => outcome,
            Err(_) => {
                self.events
                    .with_label_values(&[operation, "batch_invalid"])
                    .inc_by(count);
                return;
            }
        };
        let failed = outcome.failures.len() as u64;
        self.events
            .with_label_values(&[operation, "ok"])
            .inc_by(count.saturating_sub(failed));
        // Failures are few and often of one kind: count runs of equal results.
        let mut tally: BTreeMap<tally_engine::EventResult, u64> = BTreeMap::new();
        for (_, result) in &outcome.failures {
            *tally.entry(*result).or_default() += 1;
        }
        for (result, count) in tally {
            self.events
                // The result's Display is its documented snake_case name.
                .with_label_values(&[operation, &result.to_string()])
                .inc_by(count);
        }
    }
}

impl GatewayMetrics {
    /// Count a reply in `tally_requests_total` and, for a refusal before the ledger, in
    /// `tally_rejects_total`.
    pub(crate) fn count_reply(&self, kind: u8, payload: &[u8]) {
        let Ok((header, _)) = decode_reply(payload) else {
            return;
        };
        let reject = match header.status {
            Status::NotLeader => Some(Reject::NotLeader),
            Status::Busy => Some(Reject::Busy),
            Status::BadRequest => Some(Reject::Malformed),
            Status::Unauthenticated | Status::Forbidden | Status::WrongCluster => {
                Some(Reject::Auth)
            }
            Status::OutOfScope => Some(Reject::OutOfScope),
            Status::RequestNumberReused => Some(Reject::RequestNumberReused),
            _ => None,
        };
        if let Some(reject) = reject {
            self.reject(reject);
        }
        self.request("gateway", kind_label(kind), status_label(header.status));
    }
}

/// A request kind's name for metrics (the reply kind names its request).
fn kind_label(kind: u8) -> &'static str {
    match kind & !1 {
        KIND_REGISTER => "register",
        KIND_HEARTBEAT => "heartbeat",
        KIND_CREATE_ACCOUNTS => "create_accounts",
        KIND_CREATE_TRANSFERS => "create_transfers",
        KIND_CREATE_TRADES => "create_trades",
        KIND_LOOKUP_ACCOUNTS => "lookup_accounts",
        KIND_LOOKUP_TRANSFERS => "lookup_transfers",
        KIND_LOOKUP_TRADES => "lookup_trades",
        KIND_STATEMENT => "statement",
        KIND_BALANCES_AS_OF => "balances_as_of",
        KIND_NODE_STATE => "node_state",
        KIND_ADMIN => "admin",
        KIND_END_SESSION => "end_session",
        KIND_CREATE_SETTLEMENTS => "create_settlements",
        KIND_CHECKPOINT => "checkpoint",
        KIND_PROVE => "prove",
        KIND_CONSISTENCY => "consistency",
        KIND_COSIGN => "cosign",
        _ => "unknown",
    }
}

fn status_label(status: Status) -> &'static str {
    match status {
        Status::Ok => "ok",
        Status::NotLeader => "not_leader",
        Status::Busy => "busy",
        Status::BadRequest => "bad_request",
        Status::Unauthenticated => "unauthenticated",
        Status::Forbidden => "forbidden",
        Status::SessionUnknown => "session_unknown",
        Status::WrongCluster => "wrong_cluster",
        Status::Unavailable => "unavailable",
        Status::BatchRefused => "batch_refused",
        Status::NotFound => "not_found",
        Status::Internal => "internal",
        Status::OutOfScope => "out_of_scope",
        Status::RequestNumberReused => "request_number_reused",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Proves a batch's events are counted once each under their result, in the node's
    /// registry next to the replica's metrics.
    #[test]
    fn batch_outcomes_are_counted_by_result() {
        let node = NodeMetrics::unregistered();
        let metrics = GatewayMetrics::new(&node);
        let outcome = Ok(tally_engine::BatchOutcome {
            failures: vec![
                (1, tally_engine::EventResult::Exists),
                (4, tally_engine::EventResult::ExceedsCredits),
                (5, tally_engine::EventResult::Exists),
            ],
            timestamp_first: 1,
            timestamp_last: 10,
        });
        metrics.batch_decided(tally_engine::Operation::CreateTransfers, 10, &outcome);
        let count = |result: &str| {
            metrics
                .events
                .with_label_values(&["create_transfers", result])
                .get()
        };
        assert_eq!(count("ok"), 7);
        assert_eq!(count("exists"), 2);
        assert_eq!(count("exceeds_credits"), 1);
        let text = node.encode();
        assert!(text.contains("tally_events_total{operation=\"create_transfers\",result=\"ok\"} 7"));
        assert!(text.contains("tally_batch_events_count{operation=\"create_transfers\"} 1"));
        assert!(text.contains("tally_wal_backend_info{backend=\"none\"} 1"));
    }
}
