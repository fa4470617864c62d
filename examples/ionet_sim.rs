//! Runs the io.net simulator by hand: `cargo run --example ionet_sim -- [LINES]`.
//! Prints the endpoint, API key and deployment id to put in a ferry `ionet`
//! source, then serves two containers (`c1` with `LINES` stdout lines, default
//! 1000, and a new line every second on both; `c2` stderr only) until Ctrl-C.

#[path = "../tests/support/ionet_sim.rs"]
mod ionet_sim;

use std::time::Duration;

use ionet_sim::{IonetSim, SimConfig, line};

#[tokio::main]
async fn main() {
    let lines: usize = std::env::args()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or(1000);
    let sim = IonetSim::start(SimConfig::default()).await;
    sim.add_container("c1", "running", "device-1");
    sim.add_container("c2", "running", "device-2");
    sim.add_event("c1", "2026-11-20T09:00:01Z", "Image pulled");
    sim.add_event("c1", "2026-11-20T09:00:03Z", "Container started");
    sim.append("c1", "stdout", (0..lines).map(|n| line("c1", n, 200)));
    let config = sim.config();
    println!("endpoint      = \"{}\"", sim.url());
    println!("api_key       = \"{}\"", config.api_key);
    println!("deployment_id = \"{}\"", config.deployment_id);
    let mut n = lines;
    loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => break,
            () = tokio::time::sleep(Duration::from_secs(1)) => {
                sim.append("c1", "stdout", [line("c1", n, 120)]);
                sim.append("c2", "stderr", [line("c2", n, 120)]);
                n += 1;
            }
        }
    }
}
