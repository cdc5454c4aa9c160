//! The raw round trips as levels of a run: every routing in the two-process layout (the
//! responder in a process of its own, the client here), or in the one-process layout (both on
//! one connection in this process).

use super::{RawClient, Responders, Routing};
use crate::cpu::CpuMeter;
use crate::load::closed_loop;
use crate::procs::Process;
use crate::report::Row;
use anyhow::Result;
use lapin::Connection;
use std::time::Duration;

/// The target name of the one-process rows of `routing`.
pub fn one_process_target(routing: Routing) -> String {
    format!("{} (1 process)", routing.target())
}

/// The raw clients of every routing, and where their responders run.
pub struct RawTargets {
    connection: Connection,
    clients: Vec<RawClient>,
    /// The responders' process (two processes), or this process's responders (one).
    responders: Layout,
}

enum Layout {
    TwoProcesses(Process),
    OneProcess(Responders),
}

impl RawTargets {
    /// The responders in a `warren-bench raw-responder` process, the clients here.
    pub async fn two_processes(amqp: &str) -> Result<Self> {
        let run = run_id();
        let responder = Process::bench(&["raw-responder", "--amqp", amqp, "--run", &run])?;
        Self::with_clients(amqp, &run, Layout::TwoProcesses(responder)).await
    }

    /// The responders and the clients on one connection in this process.
    pub async fn one_process(amqp: &str) -> Result<Self> {
        let run = run_id();
        let connection = super::connect(amqp).await?;
        let responders = super::serve_responders(&connection, &run).await?;
        let clients = clients(&connection, &run).await?;
        Ok(Self {
            connection,
            clients,
            responders: Layout::OneProcess(responders),
        })
    }

    async fn with_clients(amqp: &str, run: &str, responders: Layout) -> Result<Self> {
        let connection = super::connect(amqp).await?;
        let clients = clients(&connection, run).await?;
        Ok(Self {
            connection,
            clients,
            responders,
        })
    }

    /// One closed-loop level per routing, `n` round trips in flight, in `round`.
    pub async fn levels(
        &self,
        n: usize,
        warmup: Duration,
        measured: Duration,
        round: usize,
    ) -> Vec<Row> {
        let mut rows = Vec::new();
        for (routing, client) in Routing::ALL.into_iter().zip(&self.clients) {
            let (target, responder_pid) = match &self.responders {
                Layout::TwoProcesses(process) => (routing.target().to_owned(), process.pid()),
                Layout::OneProcess(_) => (one_process_target(routing), std::process::id()),
            };
            let meter = CpuMeter::start(None, responder_pid);
            let client = client.clone();
            let sample = closed_loop(n, warmup, measured, move |_| {
                let client = client.clone();
                async move { client.call().await }
            })
            .await
            .figures(warmup);
            let cpu = meter.stop(sample.requests_in_all);
            rows.push(
                Row::measured(&target, n, &sample, None, None)
                    .with_cpu(cpu)
                    .in_round(round),
            );
        }
        rows
    }

    /// Closes the clients and the connection (and the responders, in one process).
    pub async fn close(self) {
        for client in &self.clients {
            client.close().await;
        }
        if let Layout::OneProcess(responders) = self.responders {
            responders.close().await;
        }
        let _ = self.connection.close(200, "done".into()).await;
    }
}

async fn clients(connection: &Connection, run: &str) -> Result<Vec<RawClient>> {
    let mut clients = Vec::new();
    for routing in Routing::ALL {
        clients.push(RawClient::start(connection, routing, run).await?);
    }
    Ok(clients)
}

/// A name for this run's queues, apart from any other run's on the same broker.
fn run_id() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    format!("{}x{nanos}", std::process::id())
}
