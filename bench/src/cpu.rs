//! Where the machine's CPU went during a load level, per request: this process (the load
//! generator, or for the ceiling mesh's RPC client), the server under test (the gateway), the
//! service, the broker (every `beam.smp`), the rest of the machine (kernel work not charged to a
//! process, other programs), and how much stayed idle.
//!
//! On two cores the load generator, the gateway, the greeter and RabbitMQ share the same CPU, so
//! a throughput ratio below 1 is the sum of the extra work per request; this split says whose.

use super::procs::{cpu_seconds, cpu_seconds_with_children};
use serde::Serialize;

/// CPU time per request by part, microseconds, and the machine's idle share.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct CpuSplit {
    /// The bench process and its finished children (wrk): the HTTP load generator, or mesh's
    /// RPC client for the ceiling.
    pub bench_us: f64,
    /// The server under test (the gateway or nameko's), when there is one.
    pub server_us: Option<f64>,
    /// The service's process (the greeter).
    pub service_us: f64,
    /// RabbitMQ (all `beam.smp` processes).
    pub broker_us: f64,
    /// The machine's busy time not in the parts above.
    pub rest_us: f64,
    /// The share of the machine's CPU time that was idle, percent.
    pub idle_pct: f64,
}

impl CpuSplit {
    /// The machine's busy CPU per request, all parts together.
    pub fn total_us(&self) -> f64 {
        self.bench_us
            + self.server_us.unwrap_or(0.0)
            + self.service_us
            + self.broker_us
            + self.rest_us
    }
}

/// CPU counters taken at the start of a level.
pub struct CpuMeter {
    server: Option<u32>,
    service: u32,
    brokers: Vec<u32>,
    bench: f64,
    server_before: f64,
    service_before: f64,
    broker_before: f64,
    machine_before: MachineTime,
}

impl CpuMeter {
    /// Starts counting for `service`'s process and, when given, `server`'s.
    pub fn start(server: Option<u32>, service: u32) -> Self {
        let brokers = broker_pids();
        Self {
            server,
            service,
            bench: cpu_seconds_with_children(std::process::id()),
            server_before: server.map_or(0.0, cpu_seconds),
            service_before: cpu_seconds(service),
            broker_before: brokers.iter().copied().map(cpu_seconds).sum(),
            brokers,
            machine_before: MachineTime::now(),
        }
    }

    /// The split since the start, over `requests` requests.
    pub fn stop(self, requests: f64) -> CpuSplit {
        let per = |seconds: f64| seconds / requests.max(1.0) * 1e6;
        let bench = cpu_seconds_with_children(std::process::id()) - self.bench;
        let server = self.server.map(|pid| cpu_seconds(pid) - self.server_before);
        let service = cpu_seconds(self.service) - self.service_before;
        let broker =
            self.brokers.iter().copied().map(cpu_seconds).sum::<f64>() - self.broker_before;
        let machine = MachineTime::now();
        let busy = machine.busy - self.machine_before.busy;
        let total = (machine.total - self.machine_before.total).max(1e-9);
        let named = bench + server.unwrap_or(0.0) + service + broker;
        CpuSplit {
            bench_us: per(bench),
            server_us: server.map(per),
            service_us: per(service),
            broker_us: per(broker),
            rest_us: per((busy - named).max(0.0)),
            idle_pct: 100.0 * (1.0 - busy / total),
        }
    }
}

/// The machine's CPU time from `/proc/stat`, seconds summed over all cores.
#[derive(Debug, Clone, Copy, Default)]
struct MachineTime {
    busy: f64,
    total: f64,
}

impl MachineTime {
    fn now() -> Self {
        let Ok(stat) = std::fs::read_to_string("/proc/stat") else {
            return Self::default();
        };
        let Some(line) = stat.lines().find(|l| l.starts_with("cpu ")) else {
            return Self::default();
        };
        // user nice system idle iowait irq softirq steal (guest time is inside user already).
        let ticks: Vec<f64> = line
            .split_whitespace()
            .skip(1)
            .take(8)
            .filter_map(|v| v.parse().ok())
            .collect();
        let total: f64 = ticks.iter().sum();
        let idle = ticks.get(3).copied().unwrap_or(0.0) + ticks.get(4).copied().unwrap_or(0.0);
        let hz = super::procs::clock_ticks_per_second();
        Self {
            busy: (total - idle) / hz,
            total: total / hz,
        }
    }
}

/// The running RabbitMQ nodes' Erlang VMs.
fn broker_pids() -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/comm"))
                .is_ok_and(|comm| comm.trim() == "beam.smp")
        })
        .collect()
}
