//! The agents: each a tokio task with its own connection per leg, sending
//! tasks closed loop (the next when the last is answered) or open loop (at
//! fixed intended times, latency measured from the intended time), until the
//! schedule ends, `--max-requests` is reached, or the run is interrupted.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng as _, SeedableRng as _};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::{Instant, sleep_until, timeout};
use tokio_postgres::Client;
use tokio_postgres::types::Type;
use tokio_postgres_rustls::MakeRustlsConnect;

use crate::grant::Grants;
use crate::ledger::AgentLedger;
use crate::schedule::{Leg, Schedule, Window};
use crate::send::{Sender, denied, lock, point, script, write};
use crate::stats::{Failure, Outcome, Stats, classify, judge_denied};
use crate::workload::{self, Mix, RANGE_SQL, Workload, application_name};

/// How long a connection may take to close at the end.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(5);

/// How long an agent waits after a failed connection attempt (closed
/// loop), so that a refusing gateway is not hammered in a tight loop.
const RECONNECT_PAUSE: Duration = Duration::from_millis(100);

/// Where one leg connects.
#[derive(Clone)]
pub struct Endpoint {
    /// Host, port, database, user, TLS mode, timeouts; the password and
    /// `application_name` are set per connection.
    pub config: tokio_postgres::Config,
    /// The TLS connector.
    pub tls: MakeRustlsConnect,
}

/// What the agents do; fixed for the run.
pub struct Plan {
    /// The run id in tags and application names.
    pub run: String,
    /// How many agents.
    pub agents: u32,
    /// The timeline.
    pub schedule: Schedule,
    /// Open loop: tasks per second in all.
    pub rate: Option<f64>,
    /// Stop after this many measured tasks.
    pub max_requests: Option<u64>,
    /// The longest one task may take.
    pub timeout: Duration,
    /// The workloads.
    pub mix: Mix,
    /// Row ids are `1..=rows`.
    pub rows: u32,
    /// Rows per range read.
    pub range_rows: u32,
    /// Point reads per connect-per-task task.
    pub connect_statements: u32,
    /// `--script` statements.
    pub script: Vec<String>,
    /// `--masked-sql`.
    pub masked_sql: Option<String>,
    /// Seed of the agents' random choices.
    pub seed: u64,
    /// The gateway leg.
    pub gateway: Endpoint,
    /// The direct leg.
    pub direct: Option<Endpoint>,
    /// The agents' grants.
    pub grants: Grants,
}

impl Plan {
    fn endpoint(&self, leg: Leg) -> Option<&Endpoint> {
        match leg {
            Leg::Gateway => Some(&self.gateway),
            Leg::Direct => self.direct.as_ref(),
        }
    }

    /// The config for connection `conn` of `agent` on `leg`.
    fn config(&self, leg: Leg, agent: u32, conn: u32) -> Option<tokio_postgres::Config> {
        let mut config = self.endpoint(leg)?.config.clone();
        config.application_name(application_name(&self.run, leg, agent, conn));
        if leg == Leg::Gateway {
            config.password(self.grants.token(agent));
        }
        Some(config)
    }
}

/// Why the run stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopReason {
    /// The measured duration ended.
    Duration,
    /// `--max-requests` measured tasks were started.
    MaxRequests,
    /// SIGINT or SIGTERM.
    Interrupted,
}

impl StopReason {
    /// The name in the report.
    pub fn name(self) -> &'static str {
        match self {
            StopReason::Duration => "duration",
            StopReason::MaxRequests => "max_requests",
            StopReason::Interrupted => "interrupted",
        }
    }
}

/// Stopping the run early, shared by the agents, the progress line and
/// the signal handler.
pub struct Control {
    stop: watch::Sender<bool>,
    early: Mutex<Option<(StopReason, Instant)>>,
    admitted: AtomicU64,
}

impl Default for Control {
    fn default() -> Self {
        Control {
            stop: watch::channel(false).0,
            early: Mutex::new(None),
            admitted: AtomicU64::new(0),
        }
    }
}

impl Control {
    /// Stops the run now (the first reason wins).
    pub fn stop(&self, reason: StopReason) {
        let mut early = self.early.lock().unwrap_or_else(|e| e.into_inner());
        if early.is_none() {
            *early = Some((reason, Instant::now()));
        }
        self.stop.send_replace(true);
    }

    /// Ends the run's helpers (progress, samplers) once the agents are
    /// done, without counting as an early stop.
    pub fn finish(&self) {
        self.stop.send_replace(true);
    }

    /// Whether the run was stopped early.
    pub fn stopped(&self) -> bool {
        *self.stop.borrow()
    }

    /// A receiver that sees the stop.
    pub fn subscribe(&self) -> watch::Receiver<bool> {
        self.stop.subscribe()
    }

    /// Why and when the run stopped early, if it did.
    pub fn early_stop(&self) -> Option<(StopReason, Instant)> {
        *self.early.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Admits one more measured task, or stops the run when `max` have
    /// been admitted.
    fn admit(&self, max: Option<u64>) -> bool {
        let Some(max) = max else { return true };
        if self.admitted.fetch_add(1, Ordering::Relaxed) < max {
            true
        } else {
            self.stop(StopReason::MaxRequests);
            false
        }
    }
}

/// What the agents leave for the report and the check.
pub struct Finished {
    /// Each agent's ledger, by agent number.
    pub ledgers: Vec<AgentLedger>,
    /// Masked-workload statements answered through the gateway.
    pub masked_answered: u64,
    /// Agents still running at the hard deadline (aborted).
    pub aborted: u32,
}

/// Runs every agent to the end and returns their ledgers.
pub async fn run(plan: Arc<Plan>, stats: Arc<Stats>, control: Arc<Control>) -> Finished {
    let masked = Arc::new(AtomicU64::new(0));
    let mut ledgers = Vec::with_capacity(plan.agents as usize);
    let mut handles = Vec::with_capacity(plan.agents as usize);
    for id in 0..plan.agents {
        let ledger = Arc::new(Mutex::new(AgentLedger::default()));
        ledgers.push(ledger.clone());
        let agent = Agent {
            id,
            rng: StdRng::seed_from_u64(
                plan.seed ^ u64::from(id).wrapping_mul(0x9e37_79b9_7f4a_7c15),
            ),
            plan: plan.clone(),
            stats: stats.clone(),
            control: control.clone(),
            ledger,
            conns: [None, None],
            direct_conns: 0,
            direct_seq: 0,
            connect_failed: false,
            masked: masked.clone(),
        };
        handles.push(tokio::spawn(agent.run()));
    }
    // Each task is bounded by --timeout and closing by CLOSE_TIMEOUT; past
    // that, whatever still runs is aborted so that the harness always ends.
    let deadline = plan.schedule.end() + plan.timeout + CLOSE_TIMEOUT + Duration::from_secs(5);
    let mut aborted = 0;
    for mut handle in handles {
        let result = tokio::select! {
            r = &mut handle => Some(r),
            () = sleep_until(deadline) => None,
        };
        if result.is_none() {
            handle.abort();
            aborted += 1;
        }
    }
    let ledgers = ledgers
        .into_iter()
        .map(|l| std::mem::take(&mut *l.lock().unwrap_or_else(|e| e.into_inner())))
        .collect();
    Finished {
        ledgers,
        masked_answered: masked.load(Ordering::Relaxed),
        aborted,
    }
}

/// Opens one connection through the gateway and closes it without a
/// statement, to fail fast with a clear error before the run; the same
/// for the direct target. The gateway records it as a session of its own.
pub async fn preflight(
    run: &str,
    gateway: &Endpoint,
    direct: Option<&Endpoint>,
    token: &str,
) -> Result<(), (Leg, tokio_postgres::Error)> {
    for (leg, endpoint) in [(Leg::Gateway, Some(gateway)), (Leg::Direct, direct)] {
        let Some(endpoint) = endpoint else {
            continue;
        };
        let mut config = endpoint.config.clone();
        config.application_name(workload::preflight_name(run));
        if leg == Leg::Gateway {
            config.password(token);
        }
        let (client, connection) = config
            .connect(endpoint.tls.clone())
            .await
            .map_err(|e| (leg, e))?;
        let task = tokio::spawn(async move {
            let _ = connection.await;
        });
        close(client, task).await;
    }
    Ok(())
}

struct Conn {
    client: Client,
    num: u32,
    task: JoinHandle<()>,
}

struct Agent {
    id: u32,
    rng: StdRng,
    plan: Arc<Plan>,
    stats: Arc<Stats>,
    control: Arc<Control>,
    ledger: Arc<Mutex<AgentLedger>>,
    /// The persistent connection per leg.
    conns: [Option<Conn>; 2],
    /// Direct connections opened (gateway ones are in the ledger).
    direct_conns: u32,
    /// Direct statements sent (gateway ones are in the ledger).
    direct_seq: u64,
    /// The last connection attempt failed (closed loop pauses).
    connect_failed: bool,
    masked: Arc<AtomicU64>,
}

impl Agent {
    async fn run(mut self) {
        let schedule = self.plan.schedule;
        let end = schedule.end();
        let mut stop = self.control.subscribe();
        let start = schedule.agent_start(self.id, self.plan.agents);
        // Open loop: this agent's share of the rate, its first send spread
        // over one interval so agents do not fire together.
        let interval = self
            .plan
            .rate
            .map(|rate| Duration::from_secs_f64(f64::from(self.plan.agents) / rate));
        let mut next = match interval {
            Some(i) => start + i.mul_f64(f64::from(self.id) / f64::from(self.plan.agents)),
            None => start,
        };
        // Open loop: the first intended send that never went out.
        let mut unsent = None;
        loop {
            if self.control.stopped() {
                unsent = Some(next);
                break;
            }
            let intended = match interval {
                Some(i) => {
                    let t = next;
                    next += i;
                    t
                }
                None => next.max(Instant::now()),
            };
            if intended >= end {
                break;
            }
            if intended > Instant::now() {
                tokio::select! {
                    () = sleep_until(intended) => {}
                    _ = stop.wait_for(|s| *s) => break,
                }
            }
            if Instant::now() >= end || self.control.stopped() {
                unsent = Some(intended);
                break;
            }
            let window = schedule.window_at(intended);
            if window == Window::Measured && !self.control.admit(self.plan.max_requests) {
                break;
            }
            let leg = schedule.leg_at(intended);
            let workload = self.plan.mix.pick(&mut self.rng);
            let outcome = match timeout(self.plan.timeout, self.task(leg, window, workload)).await {
                Ok(outcome) => outcome,
                Err(_) => {
                    // The task's connection was taken out and is dropped
                    // with it: its state is unknown.
                    Outcome::failed(Failure {
                        kind: "timeout".to_owned(),
                        message: format!(
                            "no answer within --timeout {}",
                            humantime::format_duration(self.plan.timeout)
                        ),
                    })
                }
            };
            self.stats
                .record(leg, window, workload, intended.elapsed(), outcome);
            if interval.is_none() && std::mem::take(&mut self.connect_failed) {
                let pause = (Instant::now() + RECONNECT_PAUSE).min(end);
                tokio::select! {
                    () = sleep_until(pause) => {}
                    _ = stop.wait_for(|s| *s) => break,
                }
            }
        }
        if let (Some(interval), Some(first)) = (interval, unsent) {
            // Sends due before the run ended (or was interrupted) that the
            // agent, still busy with earlier ones, could not make. Those
            // cut off by --max-requests were never due.
            let cutoff = match self.control.early_stop() {
                None => Some(end),
                Some((StopReason::Interrupted, at)) => Some(at.min(end)),
                Some((_, _)) => None,
            };
            if let Some(cutoff) = cutoff {
                self.count_not_sent(first, interval, cutoff);
            }
        }
        for conn in self.conns.iter_mut().filter_map(Option::take) {
            close(conn.client, conn.task).await;
        }
    }

    /// Counts the open-loop sends from `first` on, every `interval`, that
    /// fall in the measured window before `cutoff`.
    fn count_not_sent(&self, first: Instant, interval: Duration, cutoff: Instant) {
        let schedule = self.plan.schedule;
        let mut counts = [0u64; 2];
        let mut t = first;
        while t < cutoff {
            if schedule.window_at(t) == Window::Measured {
                counts[schedule.leg_at(t).index()] += 1;
            }
            t += interval;
        }
        for leg in Leg::BOTH {
            if counts[leg.index()] > 0 {
                self.stats.not_sent(leg, counts[leg.index()]);
            }
        }
    }

    /// Opens a connection on `leg`, counting it.
    async fn open(&mut self, leg: Leg, window: Window) -> Result<Conn, Failure> {
        let num = match leg {
            Leg::Gateway => lock(&self.ledger).connect(),
            Leg::Direct => {
                self.direct_conns += 1;
                self.direct_conns - 1
            }
        };
        let (Some(config), Some(endpoint)) =
            (self.plan.config(leg, self.id, num), self.plan.endpoint(leg))
        else {
            return Err(Failure {
                kind: "connect".to_owned(),
                message: "no --direct target".to_owned(),
            });
        };
        match config.connect(endpoint.tls.clone()).await {
            Ok((client, connection)) => {
                if leg == Leg::Gateway {
                    lock(&self.ledger).opened(num);
                }
                self.stats.connected(leg, window, true);
                let task = tokio::spawn(async move {
                    let _ = connection.await;
                });
                Ok(Conn { client, num, task })
            }
            Err(e) => {
                self.stats.connected(leg, window, false);
                self.connect_failed = true;
                Err(classify(&e, true))
            }
        }
    }

    /// Runs one task of `workload` on `leg`.
    async fn task(&mut self, leg: Leg, window: Window, workload: Workload) -> Outcome {
        let conn = if workload == Workload::Connect {
            None
        } else {
            self.conns[leg.index()]
                .take()
                .filter(|c| !c.client.is_closed())
        };
        let conn = match conn {
            Some(conn) => conn,
            None => match self.open(leg, window).await {
                Ok(conn) => conn,
                Err(failure) => return Outcome::failed(failure),
            },
        };
        let id = self.rng.gen_range(1..=self.plan.rows.max(1)) as i32;
        let mut sender = Sender {
            client: &conn.client,
            run: &self.plan.run,
            leg,
            agent: self.id,
            conn: conn.num,
            ledger: &self.ledger,
            direct_seq: &mut self.direct_seq,
            answered: 0,
        };
        let plan = &*self.plan;
        let result = match workload {
            Workload::Point => point(&mut sender, id).await,
            Workload::Range => {
                let n = i64::from(plan.range_rows);
                let first = id.min((plan.rows.saturating_sub(plan.range_rows) as i32).max(1));
                sender
                    .typed(RANGE_SQL, &[(&first, Type::INT4), (&n, Type::INT8)])
                    .await
                    .map(drop)
            }
            Workload::Write => write(&mut sender, id).await,
            Workload::Connect => {
                let mut result = Ok(());
                for _ in 0..plan.connect_statements {
                    let id = self.rng.gen_range(1..=plan.rows.max(1)) as i32;
                    result = point(&mut sender, id).await;
                    if result.is_err() {
                        break;
                    }
                }
                result
            }
            Workload::Masked => {
                let sql = plan.masked_sql.as_deref().unwrap_or("SELECT 1");
                let result = if sql.contains("$1") {
                    sender.typed(sql, &[(&id, Type::INT4)]).await.map(drop)
                } else {
                    sender.typed(sql, &[]).await.map(drop)
                };
                if result.is_ok() && leg == Leg::Gateway {
                    self.masked.fetch_add(1, Ordering::Relaxed);
                }
                result
            }
            Workload::Script => script(&mut sender, &plan.script).await,
            Workload::Denied => denied(&mut sender, id).await.map(drop),
        };
        let statements = sender.answered;
        // The gateway must deny the denied workload; the direct leg runs it.
        let (error, denied) = if workload == Workload::Denied && leg == Leg::Gateway {
            judge_denied(&result)
        } else {
            (result.as_ref().err().map(|e| classify(e, false)), false)
        };
        // A connection that failed below SQL (closed, broken) is not
        // reused; one that answered an SQL error is.
        let healthy = match &result {
            Ok(()) => true,
            Err(e) => e.as_db_error().is_some(),
        } && !conn.client.is_closed();
        if workload == Workload::Connect || !healthy {
            close(conn.client, conn.task).await;
        } else {
            self.conns[leg.index()] = Some(conn);
        }
        Outcome {
            statements,
            error,
            denied,
        }
    }
}

/// Drops the client (tokio-postgres sends Terminate) and waits, bounded,
/// for its connection task to end.
async fn close(client: Client, task: JoinHandle<()>) {
    drop(client);
    let mut task = task;
    if timeout(CLOSE_TIMEOUT, &mut task).await.is_err() {
        task.abort();
    }
}
