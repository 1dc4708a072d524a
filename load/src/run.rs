//! Running a plan: the open-loop scheduler and the closed-loop workers.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::StatusCode;
use rand::SeedableRng;
use rand::rngs::SmallRng;
use tokio::runtime::Handle;
use tokio::sync::Semaphore;

use super::client::{self, HttpClient};
use super::record::Recorder;
use super::{ClosedLoop, LoadError, Mix, OpenLoop, Record, Report, RequestSpec, RunOptions};

/// Sends load. One generator holds one connection pool; reuse it across runs
/// against the same targets so connections stay warm.
#[derive(Clone)]
pub struct Generator {
    client: HttpClient,
}

impl Generator {
    /// A generator whose pool keeps up to `pool_size` idle connections per
    /// target: at least the closed loop's concurrency or the open loop's
    /// expected in-flight count, or connections get closed and reopened.
    pub fn new(pool_size: usize) -> Self {
        Self {
            client: client::build(pool_size),
        }
    }

    /// Sends `plan.count()` requests drawn from `mix`, request `i` at
    /// `start + i / rate`, each in its own task, and waits for all of them.
    ///
    /// A dedicated thread keeps the schedule with `sleep` (sub-millisecond on
    /// Linux, where the async timer ticks in whole milliseconds) and sends
    /// everything due each time it wakes, waking at most once per
    /// [`OpenLoop::batch_window`]. Send lag is counted in the latency, since
    /// latency runs from the scheduled time.
    pub async fn open_loop(
        &self,
        mix: &Mix,
        plan: &OpenLoop,
        opts: &RunOptions,
    ) -> Result<Report, LoadError> {
        plan.validate()?;
        let cap = plan.max_in_flight;
        let run = Arc::new(Run {
            client: self.client.clone(),
            mix: mix.clone(),
            timeout: opts.timeout,
            start: Instant::now(),
            permits: Arc::new(Semaphore::new(cap)),
            recorder: Mutex::new(Recorder::new(opts.keep_records)?),
            stop: AtomicBool::new(false),
        });
        let _stop_if_cancelled = StopOnDrop(run.clone());
        let scheduler = {
            let (run, plan, seed, rt) = (run.clone(), *plan, opts.seed, Handle::current());
            tokio::task::spawn_blocking(move || run.schedule(&rt, &plan, seed))
        };
        scheduler.await.map_err(worker_error)?;
        // Every task records before it releases its permit: once all permits
        // are back, every record is in.
        let all = u32::try_from(cap).map_err(|_| LoadError::InvalidInFlightCap {
            got: cap,
            max: u32::MAX as usize,
        })?;
        let _all = run
            .permits
            .acquire_many(all)
            .await
            .map_err(|e| LoadError::Worker(e.to_string()))?;
        let wall = run.start.elapsed();
        let recorder = std::mem::replace(&mut *run.lock(), Recorder::new(false)?);
        Ok(recorder.finish(Some(plan.rate), wall))
    }

    /// Runs `plan.concurrency` workers that send back-to-back until
    /// `plan.duration` has passed, and waits for their last answers.
    pub async fn closed_loop(
        &self,
        mix: &Mix,
        plan: &ClosedLoop,
        opts: &RunOptions,
    ) -> Result<Report, LoadError> {
        plan.validate()?;
        let mix = Arc::new(mix.clone());
        let start = Instant::now();
        let deadline = start + plan.duration;
        let mut workers = Vec::with_capacity(plan.concurrency);
        for worker in 0..plan.concurrency {
            let mut recorder = Recorder::new(opts.keep_records)?;
            let mut rng = SmallRng::seed_from_u64(opts.seed.wrapping_add(worker as u64));
            let (client, mix, timeout) = (self.client.clone(), mix.clone(), opts.timeout);
            workers.push(tokio::spawn(async move {
                loop {
                    let due = Instant::now();
                    if due >= deadline {
                        break recorder;
                    }
                    let (index, spec) = mix.pick(&mut rng);
                    let record = client::measure(&client, spec, index, due, start, timeout).await;
                    recorder.record(record);
                }
            }));
        }
        let mut total = Recorder::new(opts.keep_records)?;
        for worker in workers {
            total.merge(worker.await.map_err(worker_error)?)?;
        }
        Ok(total.finish(None, start.elapsed()))
    }

    /// Sends one request and returns its status and body: for the control
    /// calls around a run (configuring a mock, probing readiness).
    pub async fn fetch(
        &self,
        spec: &RequestSpec,
        timeout: Duration,
    ) -> Result<(StatusCode, Bytes), LoadError> {
        client::fetch(&self.client, spec, timeout).await
    }
}

/// State of one open-loop run, shared by its scheduler and request tasks.
struct Run {
    client: HttpClient,
    mix: Mix,
    timeout: Duration,
    start: Instant,
    /// One permit per request in flight.
    permits: Arc<Semaphore>,
    recorder: Mutex<Recorder>,
    /// Set when the caller gave up on the run, so the scheduler stops sending.
    stop: AtomicBool,
}

impl Run {
    /// The scheduler loop, on its own thread: sleeps until each request is
    /// due and hands it to the runtime.
    fn schedule(self: &Arc<Self>, rt: &Handle, plan: &OpenLoop, seed: u64) {
        let mut rng = SmallRng::seed_from_u64(seed);
        for i in 0..plan.count() {
            if self.stop.load(Ordering::Relaxed) {
                return;
            }
            let offset = plan.offset(i);
            let Some(due) = self.start.checked_add(offset) else {
                return;
            };
            let wait = due.saturating_duration_since(Instant::now());
            if !wait.is_zero() {
                std::thread::sleep(wait.max(plan.batch_window));
            }
            let (index, _) = self.mix.pick(&mut rng);
            match self.permits.clone().try_acquire_owned() {
                Ok(permit) => {
                    let run = self.clone();
                    rt.spawn(async move {
                        let Some(spec) = run.mix.get(index) else {
                            return;
                        };
                        let record =
                            client::measure(&run.client, spec, index, due, run.start, run.timeout)
                                .await;
                        run.lock().record(record);
                        drop(permit);
                    });
                }
                Err(_) => self.lock().record(Record::dropped(index, offset)),
            }
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Recorder> {
        self.recorder.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Stops an open-loop scheduler whose run future was dropped.
struct StopOnDrop(Arc<Run>);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.stop.store(true, Ordering::Relaxed);
    }
}

fn worker_error(e: tokio::task::JoinError) -> LoadError {
    LoadError::Worker(e.to_string())
}
