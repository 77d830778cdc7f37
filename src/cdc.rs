//! `tally cdc`: the change feed (`tally client follow`'s events, `query_cli::feed`) published
//! to RabbitMQ, at least once, in position order, resumable from a checkpoint file.
//!
//! Each event is one persistent message (delivery mode 2) on a durable queue, its body the
//! line `follow` prints (`Event::write_json`), its `message_id` the position in decimal and
//! its `position` header the same number. The channel is in publisher-confirm mode: at most
//! `--window` messages are unconfirmed at a time, and the checkpoint (`--state`) advances only
//! over messages the broker confirmed (acked, and routed: messages are `mandatory`), written
//! atomically (a temporary file, fsync, rename). A nack, a returned message, a lost
//! connection or a cluster that does not answer: the session ends, and after a backoff a new
//! one starts from the checkpoint + 1, publishing again whatever was not confirmed. So a
//! consumer may see an event twice (same `message_id`), never a gap; dropping every position
//! at or below the last it processed makes its processing exactly-once (docs/queries.md).

use std::collections::VecDeque;
use std::io::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context as _};
use lapin::options::{
    BasicPublishOptions, ConfirmSelectOptions, ExchangeDeclareOptions, QueueBindOptions,
    QueueDeclareOptions,
};
use lapin::publisher_confirm::{Confirmation, PublisherConfirm};
use lapin::types::{AMQPValue, FieldTable};
use lapin::uri::{AMQPScheme, AMQPUri};
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties, ExchangeKind};
use tally_client::{Client, ClientConfig};

use crate::client_cli::ConnectArgs;
use crate::query_cli::{feed, history_reaches, Event, FeedSink};

/// `tally cdc`'s flags.
#[derive(Debug, clap::Args)]
pub struct CdcArgs {
    #[command(flatten)]
    pub connect: ConnectArgs,
    /// The broker (amqp://user:password@host:port/vhost; the vhost `/` is `%2f`).
    #[arg(
        long,
        env = "TALLY_AMQP",
        hide_env_values = true,
        default_value = "amqp://guest:guest@127.0.0.1:5672/%2f"
    )]
    pub amqp: String,
    /// Publish to this exchange (declared durable, fanout, with --queue bound to it, so other
    /// queues can be bound to the feed too); empty: the default exchange, straight to --queue.
    #[arg(long, default_value = "")]
    pub exchange: String,
    /// The queue the events go to (declared durable).
    #[arg(long, default_value = "tally.feed")]
    pub queue: String,
    /// The checkpoint file: every event at or before the position it holds is confirmed by the
    /// broker. Read at start (resume at one past it), rewritten atomically after confirms.
    #[arg(long)]
    pub state: PathBuf,
    /// The first position to publish when there is no state file yet (default: the start of
    /// the history). Refused when the state file exists: it says where to resume.
    #[arg(long)]
    pub from: Option<u64>,
    /// Serve Prometheus metrics on this address (`GET /metrics`).
    #[arg(long)]
    pub metrics: Option<SocketAddr>,
    /// End (exit 0) once everything the cluster holds is published and confirmed.
    #[arg(long)]
    pub until_caught_up: bool,
    /// Messages published and not yet confirmed at most; half of them are awaited at a time.
    #[arg(long, default_value_t = 4096, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub window: u32,
    /// How often to ask the cluster for new events once caught up (ms).
    #[arg(long, default_value_t = 100)]
    pub poll_ms: u64,
}

/// How long a confirm may take before the session is given up as stuck (and started again).
const CONFIRM_TIMEOUT: Duration = Duration::from_secs(30);
/// How long the client keeps trying a cluster that does not answer (a request, or the
/// connection).
const CLUSTER_DEADLINE: Duration = Duration::from_secs(15);
/// How long connecting to the broker may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// The first wait before a new session, doubled after each failure up to the most.
const BACKOFF_FIRST: Duration = Duration::from_millis(100);
const BACKOFF_MOST: Duration = Duration::from_secs(5);

/// The checkpoint could not be written: no retry helps, and going on would publish what the
/// file cannot record (exit 1).
#[derive(Debug, thiserror::Error)]
#[error("cannot write the checkpoint {}: {error}", path.display())]
struct CheckpointError {
    path: PathBuf,
    error: std::io::Error,
}

/// The last position the broker confirmed (with everything before it), and its file.
struct Checkpoint {
    path: PathBuf,
    position: u64,
}

impl Checkpoint {
    /// The file's position, or one before `from` when there is no file (bad input: an error).
    fn load(path: &Path, from: Option<u64>) -> anyhow::Result<Checkpoint> {
        let position = match std::fs::read_to_string(path) {
            Ok(text) => {
                if let Some(from) = from {
                    bail!(
                        "--from {from} with a state file ({}): the file says where to resume; \
                         remove it to start from --from",
                        path.display()
                    );
                }
                text.trim().parse::<u64>().with_context(|| {
                    format!("{} does not hold a position: {text:?}", path.display())
                })?
            }
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
                from.unwrap_or(0).saturating_sub(1)
            }
            Err(error) => bail!("cannot read the state file {}: {error}", path.display()),
        };
        Ok(Checkpoint {
            path: path.to_owned(),
            position,
        })
    }

    /// Record `position` durably: a temporary file beside it, fsync, rename, fsync the
    /// directory. A crash leaves the old file or the new one, never a torn one.
    fn save(&mut self, position: u64) -> Result<(), CheckpointError> {
        let error = |error| CheckpointError {
            path: self.path.clone(),
            error,
        };
        let mut temporary = self.path.clone().into_os_string();
        temporary.push(".tmp");
        let temporary = PathBuf::from(temporary);
        let mut file = std::fs::File::create(&temporary).map_err(error)?;
        writeln!(file, "{position}").map_err(error)?;
        file.sync_all().map_err(error)?;
        std::fs::rename(&temporary, &self.path).map_err(error)?;
        let directory = match self.path.parent() {
            Some(parent) if !parent.as_os_str().is_empty() => parent,
            _ => Path::new("."),
        };
        std::fs::File::open(directory)
            .and_then(|directory| directory.sync_all())
            .map_err(error)?;
        self.position = position;
        Ok(())
    }
}

/// `tally cdc`'s metrics, in a registry of its own.
struct Metrics {
    registry: prometheus::Registry,
    published: prometheus::IntCounter,
    confirmed: prometheus::IntGauge,
    lag: prometheus::Gauge,
    reconnects: prometheus::IntCounter,
}

impl Metrics {
    fn new() -> anyhow::Result<Metrics> {
        let registry = prometheus::Registry::new();
        let published = prometheus::IntCounter::new(
            "tally_cdc_published_total",
            "Messages published to the broker (a message published again after a reconnect \
             counts again).",
        )?;
        let confirmed = prometheus::IntGauge::new(
            "tally_cdc_confirmed_position",
            "The checkpoint: every event at or before this position (ns timestamp) is \
             confirmed by the broker.",
        )?;
        let lag = prometheus::Gauge::new(
            "tally_cdc_lag_seconds",
            "The newest record the cluster holds minus the confirmed position, in seconds.",
        )?;
        let reconnects = prometheus::IntCounter::new(
            "tally_cdc_reconnects_total",
            "Sessions (broker and cluster connections) started again after a failure.",
        )?;
        registry.register(Box::new(published.clone()))?;
        registry.register(Box::new(confirmed.clone()))?;
        registry.register(Box::new(lag.clone()))?;
        registry.register(Box::new(reconnects.clone()))?;
        Ok(Metrics {
            registry,
            published,
            confirmed,
            lag,
            reconnects,
        })
    }

    /// The checkpoint at `confirmed` while the history reaches `reaches`.
    fn observe(&self, confirmed: u64, reaches: u64) {
        self.confirmed
            .set(i64::try_from(confirmed).unwrap_or(i64::MAX));
        self.lag.set(reaches.saturating_sub(confirmed) as f64 / 1e9);
    }
}

/// The broker's address without its credentials, for messages.
fn broker_name(uri: &AMQPUri) -> String {
    format!(
        "{}:{} (vhost {})",
        uri.authority.host, uri.authority.port, uri.vhost
    )
}

/// One connection and confirm-mode channel to the broker, the exchange and queue declared.
struct Broker {
    connection: Connection,
    channel: Channel,
}

impl Broker {
    async fn connect(uri: &AMQPUri, exchange: &str, queue: &str) -> anyhow::Result<Broker> {
        let properties = ConnectionProperties::default()
            .with_executor(tokio_executor_trait::Tokio::current())
            .with_reactor(tokio_reactor_trait::Tokio);
        let connection = tokio::time::timeout(
            CONNECT_TIMEOUT,
            Connection::connect_uri(uri.clone(), properties),
        )
        .await
        .map_err(|_| anyhow::anyhow!("no connection within {CONNECT_TIMEOUT:?}"))??;
        let channel = connection.create_channel().await?;
        channel
            .confirm_select(ConfirmSelectOptions::default())
            .await?;
        let durable = QueueDeclareOptions {
            durable: true,
            ..QueueDeclareOptions::default()
        };
        channel
            .queue_declare(queue, durable, FieldTable::default())
            .await
            .with_context(|| format!("declaring the queue {queue:?}"))?;
        if !exchange.is_empty() {
            let durable = ExchangeDeclareOptions {
                durable: true,
                ..ExchangeDeclareOptions::default()
            };
            channel
                .exchange_declare(
                    exchange,
                    ExchangeKind::Fanout,
                    durable,
                    FieldTable::default(),
                )
                .await
                .with_context(|| format!("declaring the exchange {exchange:?}"))?;
            channel
                .queue_bind(
                    queue,
                    exchange,
                    queue,
                    QueueBindOptions::default(),
                    FieldTable::default(),
                )
                .await?;
        }
        Ok(Broker {
            connection,
            channel,
        })
    }
}

/// The feed's sink for a session: publishes each event, awaits confirms a half window at a
/// time, and advances the checkpoint over what was confirmed.
struct Publisher<'a> {
    broker: &'a Broker,
    exchange: &'a str,
    queue: &'a str,
    window: usize,
    in_flight: VecDeque<(u64, PublisherConfirm)>,
    body: Vec<u8>,
    checkpoint: &'a mut Checkpoint,
    metrics: &'a Metrics,
    /// The history's newest record, as the feed last asked.
    reaches: u64,
}

impl Publisher<'_> {
    /// Await confirms, oldest first, until at most `keep` messages are unconfirmed; the
    /// checkpoint then moves to the last confirmed. A nack, a returned message or no answer
    /// ends the session (after recording what was confirmed before it).
    async fn settle(&mut self, keep: usize) -> anyhow::Result<()> {
        let mut confirmed = None;
        let mut failed = None;
        while self.in_flight.len() > keep {
            let (position, confirm) = self.in_flight.pop_front().expect("not empty");
            let outcome = match tokio::time::timeout(CONFIRM_TIMEOUT, confirm).await {
                Err(_) => Err(anyhow::anyhow!(
                    "no confirm for position {position} within {CONFIRM_TIMEOUT:?}"
                )),
                Ok(Err(error)) => Err(anyhow::anyhow!(
                    "position {position} not confirmed: {error}"
                )),
                Ok(Ok(Confirmation::Ack(None))) => Ok(position),
                Ok(Ok(Confirmation::Ack(Some(returned)))) => Err(anyhow::anyhow!(
                    "the broker returned position {position} ({} {}): nothing routes it to \
                     the queue {:?}",
                    returned.reply_code,
                    returned.reply_text,
                    self.queue
                )),
                Ok(Ok(Confirmation::Nack(_))) => Err(anyhow::anyhow!(
                    "the broker refused position {position} (nack)"
                )),
                Ok(Ok(Confirmation::NotRequested)) => {
                    Err(anyhow::anyhow!("the channel is not in confirm mode"))
                }
            };
            match outcome {
                Ok(position) => confirmed = Some(position),
                Err(error) => {
                    failed = Some(error);
                    break;
                }
            }
        }
        if let Some(position) = confirmed {
            self.checkpoint.save(position)?;
            self.metrics.observe(position, self.reaches);
        }
        match failed {
            Some(error) => Err(error),
            None => Ok(()),
        }
    }
}

impl FeedSink for Publisher<'_> {
    async fn reading(&mut self, reaches: u64) -> anyhow::Result<()> {
        self.reaches = reaches;
        self.metrics.observe(self.checkpoint.position, reaches);
        Ok(())
    }

    async fn event(&mut self, event: Event) -> anyhow::Result<()> {
        let position = event.position();
        self.body.clear();
        event.write_json(&mut self.body)?;
        let mut headers = FieldTable::default();
        let signed = i64::try_from(position).context("a position beyond 2^63 ns")?;
        headers.insert("position".into(), AMQPValue::LongLongInt(signed));
        let properties = BasicProperties::default()
            .with_delivery_mode(2)
            .with_message_id(position.to_string().into())
            .with_content_type("application/json".into())
            .with_timestamp(position / 1_000_000_000)
            .with_headers(headers);
        let mandatory = BasicPublishOptions {
            mandatory: true,
            ..BasicPublishOptions::default()
        };
        let confirm = self
            .broker
            .channel
            .basic_publish(self.exchange, self.queue, mandatory, &self.body, properties)
            .await?;
        self.metrics.published.inc();
        self.in_flight.push_back((position, confirm));
        if self.in_flight.len() >= self.window {
            self.settle(self.window / 2).await?;
        }
        Ok(())
    }

    async fn reached(&mut self, reaches: u64) -> anyhow::Result<()> {
        self.settle(0).await?;
        // Every event up to `reaches` is confirmed: the feed resumes after it.
        if reaches > self.checkpoint.position {
            self.checkpoint.save(reaches)?;
        }
        self.metrics
            .observe(self.checkpoint.position, self.reaches.max(reaches));
        if !self.broker.connection.status().connected() {
            bail!("the broker connection is closed");
        }
        Ok(())
    }
}

/// What a session needs that outlives it.
struct Cdc {
    args: CdcArgs,
    config: ClientConfig,
    uri: AMQPUri,
    checkpoint: Checkpoint,
    metrics: Metrics,
}

impl Cdc {
    /// One session: the cluster, the broker, then the feed from the checkpoint + 1. Returns
    /// when caught up (`--until-caught-up`); any failure is the caller's to retry.
    async fn session(&mut self, client: &Client) -> anyhow::Result<()> {
        let broker = match Broker::connect(&self.uri, &self.args.exchange, &self.args.queue).await {
            Ok(broker) => broker,
            Err(error) => {
                // The lag still says how far behind the feed is while the broker is away.
                if let Ok(reaches) = history_reaches(client).await {
                    self.metrics.observe(self.checkpoint.position, reaches);
                }
                return Err(error.context(format!("the broker {}", broker_name(&self.uri))));
            }
        };
        let from = self.checkpoint.position + 1;
        tracing::info!(
            from,
            queue = %self.args.queue,
            exchange = %self.args.exchange,
            broker = %broker_name(&self.uri),
            "cdc: publishing"
        );
        let mut publisher = Publisher {
            broker: &broker,
            exchange: &self.args.exchange,
            queue: &self.args.queue,
            window: self.args.window as usize,
            in_flight: VecDeque::new(),
            body: Vec::with_capacity(512),
            checkpoint: &mut self.checkpoint,
            metrics: &self.metrics,
            reaches: 0,
        };
        let poll = Duration::from_millis(self.args.poll_ms);
        let fed = feed(
            client,
            from,
            poll,
            self.args.until_caught_up,
            &mut publisher,
        )
        .await;
        if fed.is_ok() {
            let _ = broker.channel.close(200, "caught up").await;
            let _ = broker.connection.close(200, "caught up").await;
        }
        fed
    }

    /// Sessions until caught up (or for ever), each failure logged and retried after a
    /// backoff; only a checkpoint that cannot be written ends it.
    async fn run(&mut self) -> anyhow::Result<()> {
        let mut backoff = BACKOFF_FIRST;
        let mut attempt = 0u64;
        loop {
            let started_at = self.checkpoint.position;
            let outcome = match Client::connect(self.config.clone()).await {
                Ok(client) => {
                    let outcome = self.session(&client).await;
                    client.close().await;
                    outcome
                }
                Err(error) => Err(anyhow::Error::new(error).context("the cluster")),
            };
            let error = match outcome {
                Ok(()) => return Ok(()),
                Err(error) if error.is::<CheckpointError>() => return Err(error),
                Err(error) => error,
            };
            if self.checkpoint.position > started_at {
                // The session made progress: the next failure starts the backoff again.
                backoff = BACKOFF_FIRST;
            }
            attempt += 1;
            self.metrics.reconnects.inc();
            tracing::warn!(
                "cdc: session {attempt} failed at checkpoint {}: {error:#}; again in {backoff:?}",
                self.checkpoint.position
            );
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(BACKOFF_MOST);
        }
    }
}

/// Checks the flags before connecting anywhere (bad input: an error, exit 2).
fn prepare(args: CdcArgs) -> anyhow::Result<Cdc> {
    let mut config = args.connect.config()?;
    // A cluster that does not answer is a failed session (logged, retried) after this long,
    // not after the library's minute: ample for an election, and the log says so sooner.
    config.deadline = CLUSTER_DEADLINE;
    let uri: AMQPUri = args
        .amqp
        .parse()
        .map_err(|error| anyhow::anyhow!("--amqp: {error}"))?;
    if uri.scheme == AMQPScheme::AMQPS {
        bail!(
            "--amqp: amqps:// is not supported (tally is built without AMQP over TLS); use amqp://"
        );
    }
    if args.queue.is_empty() {
        bail!("--queue must name a queue");
    }
    let checkpoint = Checkpoint::load(&args.state, args.from)?;
    let metrics = Metrics::new()?;
    // The checkpoint is known from the start; the lag once the cluster first answers.
    metrics
        .confirmed
        .set(i64::try_from(checkpoint.position).unwrap_or(i64::MAX));
    Ok(Cdc {
        args,
        config,
        uri,
        checkpoint,
        metrics,
    })
}

/// `tally cdc`: 0 caught up (`--until-caught-up`) or stopped by SIGTERM/SIGINT, 1 the
/// checkpoint could not be written, 2 bad input.
pub async fn run(args: CdcArgs) -> u8 {
    let mut cdc = match prepare(args) {
        Ok(cdc) => cdc,
        Err(error) => {
            eprintln!("tally cdc: {error:#}");
            return 2;
        }
    };
    let (stop_metrics, metrics_stopped) = tokio::sync::watch::channel(false);
    let mut served = None;
    if let Some(addr) = cdc.args.metrics {
        let listener = match crate::admin_http::bind(addr).await {
            Ok(listener) => listener,
            Err(error) => {
                eprintln!("tally cdc: --metrics: {error:#}");
                return 2;
            }
        };
        let text = cdc.metrics.registry.clone();
        let routes = axum::Router::new().route(
            "/metrics",
            axum::routing::get(move || {
                let families = text.gather();
                async move {
                    let mut out = String::new();
                    let _ = prometheus::TextEncoder::new().encode_utf8(&families, &mut out);
                    (
                        [(
                            axum::http::header::CONTENT_TYPE,
                            crate::admin_http::METRICS_CONTENT_TYPE,
                        )],
                        out,
                    )
                }
            }),
        );
        tracing::info!(%addr, "cdc: metrics on /metrics");
        served = Some(crate::admin_http::serve_router(
            listener,
            routes,
            metrics_stopped,
        ));
    }
    let mut terminate =
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(signal) => signal,
            Err(error) => {
                eprintln!("tally cdc: cannot watch for SIGTERM: {error}");
                return 1;
            }
        };
    let ended = tokio::select! {
        ended = cdc.run() => ended,
        _ = terminate.recv() => { tracing::info!("cdc: SIGTERM"); Ok(()) }
        _ = tokio::signal::ctrl_c() => { tracing::info!("cdc: SIGINT"); Ok(()) }
    };
    let _ = stop_metrics.send(true);
    if let Some(served) = served {
        let _ = served.await;
    }
    match ended {
        Ok(()) => {
            eprintln!(
                "tally cdc: stopped at checkpoint {} ({} messages published, {} reconnects)",
                cdc.checkpoint.position,
                cdc.metrics.published.get(),
                cdc.metrics.reconnects.get()
            );
            0
        }
        Err(error) => {
            eprintln!("tally cdc: {error:#}");
            1
        }
    }
}
