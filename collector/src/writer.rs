//! The single writer: one thread owns the store's write connection and commits whatever batches
//! have queued up in one transaction (group commit), then answers each waiting request.
//!
//! The queue in front of it is bounded; when it is full the HTTP layer answers 503 with
//! `Retry-After` instead of letting memory grow. Closing every sender drains the queue, commits,
//! and ends the thread, which is how graceful shutdown finishes in-flight work.

use crate::store::{BatchWrite, Store};
use std::time::Instant;
use tokio::sync::{mpsc, oneshot};

/// One batch waiting to be stored, and where to say how it went.
pub struct Job {
    pub write: BatchWrite,
    /// `Ok(duplicate)` once durably committed; `Err` when the store failed.
    pub done: oneshot::Sender<Result<bool, String>>,
}

/// Starts the writer thread.
///
/// # Errors
/// The operating system refused a new thread.
pub fn spawn(
    mut store: Box<dyn Store>,
    mut rx: mpsc::Receiver<Job>,
    max_group: usize,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    std::thread::Builder::new()
        .name("waymark-writer".into())
        .spawn(move || {
            let mut jobs = Vec::with_capacity(max_group);
            while let Some(first) = rx.blocking_recv() {
                jobs.push(first);
                while jobs.len() < max_group {
                    match rx.try_recv() {
                        Ok(job) => jobs.push(job),
                        Err(_) => break,
                    }
                }
                let (writes, waiting): (Vec<_>, Vec<_>) =
                    jobs.drain(..).map(|j| (j.write, j.done)).unzip();
                let started = Instant::now();
                let result = store.write(&writes);
                metrics::histogram!("waymark_commit_seconds")
                    .record(started.elapsed().as_secs_f64());
                metrics::histogram!("waymark_commit_batches").record(writes.len() as f64);
                match result {
                    Ok(duplicates) => {
                        for (done, dup) in waiting.into_iter().zip(duplicates) {
                            let _ = done.send(Ok(dup));
                        }
                    }
                    Err(e) => {
                        tracing::error!(error = %e, batches = writes.len(), "commit failed");
                        for done in waiting {
                            let _ = done.send(Err(e.to_string()));
                        }
                    }
                }
            }
            tracing::info!("writer drained and stopped");
        })
}

/// Starts the store's maintenance thread (see [`Store::maintain`]); it stops when the returned
/// sender is dropped.
///
/// # Errors
/// The operating system refused a new thread.
pub fn spawn_maintenance(
    mut store: Box<dyn Store>,
    every: std::time::Duration,
) -> std::io::Result<(std::sync::mpsc::Sender<()>, std::thread::JoinHandle<()>)> {
    let (stop, stopped) = std::sync::mpsc::channel::<()>();
    let handle = std::thread::Builder::new()
        .name("waymark-maintenance".into())
        .spawn(move || {
            while let Err(std::sync::mpsc::RecvTimeoutError::Timeout) = stopped.recv_timeout(every)
            {
                if let Err(e) = store.maintain() {
                    tracing::warn!(error = %e, "store maintenance failed");
                }
            }
            // A last round so a clean stop leaves a checkpointed store.
            let _ = store.maintain();
        })?;
    Ok((stop, handle))
}
