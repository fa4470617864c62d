//! Runs the Scalingo simulator by hand: `cargo run --example scalingo_sim -- [LINES]`.
//! Prints the options to put in a ferry `scalingo` source, then serves app `my-app`
//! with `LINES` lines of history (default 1000) on `web-1`, `web-2` and `router`, and
//! a new line every second from `web-1` and `worker-1`, until Ctrl-C.

#[path = "../tests/support/scalingo_sim.rs"]
mod scalingo_sim;

use std::time::Duration;

use scalingo_sim::{ScalingoSim, SimConfig, message};

#[tokio::main]
async fn main() {
    let lines: usize = std::env::args()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or(1000);
    let sim = ScalingoSim::start(SimConfig::default()).await;
    for n in 0..lines {
        let container = ["web-1", "web-2", "router"][n % 3];
        sim.publish(container, [message(container, n, 120)]);
    }
    let config = sim.config();
    println!("endpoint      = \"{}\"", sim.url());
    println!("auth_endpoint = \"{}\"", sim.url());
    println!("api_token     = \"{}\"", config.api_token);
    println!("app           = \"{}\"", config.app);
    let mut n = lines;
    loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => break,
            () = tokio::time::sleep(Duration::from_secs(1)) => {
                sim.publish("web-1", [message("web-1", n, 120)]);
                sim.publish("worker-1", [message("worker-1", n, 120)]);
                n += 1;
            }
        }
    }
}
